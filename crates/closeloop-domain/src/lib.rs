//! Pure domain model of closeloop.
//!
//! Nothing here does I/O or knows about NATS, SQL or gRPC: values are parsed
//! into newtypes at the edge ([`values`]), and each aggregate is a pair of
//! pure functions, `decide` (command + state → event or rule violation) and
//! `evolve` (state + event → state), behind one [`Aggregate`] trait: tickets
//! ([`ticket`]), survey responses and their revisions ([`feedback`]), routing
//! decisions ([`routing`]), team rotations ([`rotation`]), directory
//! records ([`directory`]), ticket SLAs ([`sla`], counting in the time
//! bases of [`calendar`]) and notifications ([`notification`], with the
//! pure decision of who hears what). The clock is an argument, so every decision is
//! reproducible in tests. Wire formats are `closeloop-contracts`' business.

pub mod aggregate;
pub mod calendar;
pub mod directory;
pub mod feedback;
pub mod notification;
pub mod report;
pub mod rotation;
pub mod routing;
pub mod sla;
pub mod ticket;
pub mod time;
pub mod values;
pub mod webhook;

pub use aggregate::{Aggregate, Digested};
pub use ticket::{
    Closure, Guide, Plan, RecordedEvent, ResponseTemplate, RuleViolation, SlaPolicy, Status,
    Ticket, TicketCommand, TicketEvent, decide, evolve,
};
pub use time::Timestamp;
pub use values::{
    AccountId, Channel, Email, FieldViolation, OpportunityKind, ProgramId, RequestId,
    RootCauseCategory, Text, TicketId,
};

/// What a command means for an aggregate in its current state.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision<E> {
    /// Append this event.
    Append(E),
    /// The request was applied before, at this stream sequence: write nothing.
    AlreadyApplied { sequence: u64 },
}
