//! Tickets: `<prefix>.events.ticket.<ticket_id>`. The domain's pure
//! `decide`/`evolve` ([`closeloop_domain::ticket`]) and the protobuf codec
//! (payload `closeloop.v1.TicketEvent` + envelope headers).

use std::time::SystemTime;

use bytes::Bytes;
pub use closeloop_domain::ticket::TicketAggregate;
use closeloop_domain::{Aggregate, RecordedEvent, TicketEvent, TicketId, Timestamp};
use closeloop_eventstore::{Contract, Envelope, EventContext, StoredEvent};
use closeloop_proto::{convert, v1};
use prost::Message;

/// Aggregate type name: subjects are `<prefix>.events.ticket.<ticket_id>`.
pub const AGGREGATE: &str = TicketAggregate::TYPE;

pub fn encode(
    ticket_id: TicketId,
    event_id: &str,
    request_id: &str,
    at: SystemTime,
    ctx: &EventContext,
    event: &TicketEvent,
) -> (Envelope, Bytes) {
    crate::codec::encode::<v1::TicketEvent>(
        &ticket_id.to_string(),
        event_id,
        convert::event_type_name(event),
        request_id,
        at,
        ctx,
        convert::event_body(event),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is not a closeloop.v1.TicketEvent: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("event type {0:?} is unknown to this version (written by a newer closeloop?)")]
    UnknownType(String),
    #[error("ticket id {0:?} in payload is not a UUID")]
    BadTicketId(String),
}

pub fn decode(ev: &StoredEvent) -> Result<RecordedEvent, DecodeError> {
    let msg = v1::TicketEvent::decode(ev.payload.as_ref())?;
    let ticket_id = TicketId::parse("ticket_id", &msg.ticket_id)
        .map_err(|_| DecodeError::BadTicketId(msg.ticket_id.clone()))?;
    let event = msg
        .event
        .as_ref()
        .and_then(convert::from_event_body)
        .ok_or_else(|| {
            DecodeError::UnknownType(
                ev.envelope
                    .as_ref()
                    .map(|e| e.event_type.clone())
                    .unwrap_or_default(),
            )
        })?;
    let occurred_at = msg
        .occurred_at
        .as_ref()
        .map(convert::from_timestamp)
        .or_else(|| {
            ev.envelope
                .as_ref()
                .map(|e| Timestamp::from_system_time(e.occurred_at))
        })
        .unwrap_or_default();
    Ok(RecordedEvent {
        ticket_id,
        sequence: ev.sequence,
        occurred_at,
        request_id: msg.request_id,
        actor: msg.actor,
        event,
    })
}

/// The wire contract of [`TicketAggregate`]: payload `closeloop.v1.TicketEvent`.
pub struct TicketContract;

impl Contract for TicketContract {
    type Aggregate = TicketAggregate;

    fn encode(
        id: TicketId,
        event_id: &str,
        request_id: &str,
        at: SystemTime,
        ctx: &EventContext,
        event: &TicketEvent,
    ) -> (Envelope, Bytes) {
        encode(id, event_id, request_id, at, ctx, event)
    }

    fn decode(stored: &StoredEvent) -> Result<RecordedEvent, closeloop_eventstore::DecodeError> {
        decode(stored).map_err(|e| e.to_string().into())
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
            occurred_at: Timestamp::from_system_time(at),
            request_id: request_id.to_string(),
            actor: ctx.actor.clone(),
            event: event.clone(),
        }
    }
}
