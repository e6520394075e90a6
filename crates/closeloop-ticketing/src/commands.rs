//! The ticket aggregate on the event store: the single writer of tickets is
//! an [`Executor`] over [`TicketAggregate`].

use std::time::SystemTime;

use bytes::Bytes;
use closeloop_domain::ticket::{self, Decision as DomainDecision};
use closeloop_domain::{
    RecordedEvent, RuleViolation, Ticket, TicketCommand, TicketEvent, TicketId,
};
use closeloop_eventstore::{Aggregate, Decision, Envelope, EventContext, Executor, StoredEvent};

use crate::codec;

/// Runs ticket commands. See [`Executor`].
pub type TicketCommands = Executor<TicketAggregate>;

/// Tickets as an [`Aggregate`]: the domain's pure `decide`/`evolve` and the
/// protobuf codec.
pub struct TicketAggregate;

impl Aggregate for TicketAggregate {
    type Id = TicketId;
    type State = Ticket;
    type Command = TicketCommand;
    type Event = TicketEvent;
    type Rule = RuleViolation;
    type Recorded = RecordedEvent;

    const TYPE: &'static str = crate::AGGREGATE;

    fn decide(
        id: TicketId,
        state: Option<&Ticket>,
        request_id: &str,
        command: &TicketCommand,
    ) -> Result<Decision<TicketEvent>, RuleViolation> {
        Ok(match ticket::decide(id, state, request_id, command)? {
            DomainDecision::Append(e) => Decision::Append(e),
            DomainDecision::AlreadyApplied { sequence } => Decision::AlreadyApplied { sequence },
        })
    }

    fn evolve(state: Option<Ticket>, event: &RecordedEvent) -> Option<Ticket> {
        ticket::evolve(state, event)
    }

    fn sequence(state: &Ticket) -> u64 {
        state.sequence
    }

    fn encode(
        id: TicketId,
        event_id: &str,
        request_id: &str,
        at: SystemTime,
        ctx: &EventContext,
        event: &TicketEvent,
    ) -> (Envelope, Bytes) {
        codec::encode(id, event_id, request_id, at, ctx, event)
    }

    fn decode(stored: &StoredEvent) -> Result<RecordedEvent, String> {
        codec::decode(stored).map_err(|e| e.to_string())
    }

    fn recorded(
        id: TicketId,
        event: &TicketEvent,
        sequence: u64,
        request_id: &str,
        at: SystemTime,
        ctx: &EventContext,
    ) -> RecordedEvent {
        RecordedEvent {
            ticket_id: id,
            sequence,
            occurred_at: closeloop_domain::Timestamp::from_system_time(at),
            request_id: request_id.to_string(),
            actor: ctx.actor.clone(),
            event: event.clone(),
        }
    }
}
