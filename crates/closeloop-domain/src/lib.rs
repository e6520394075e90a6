//! Pure domain model of closeloop.
//!
//! Nothing here does I/O or knows about NATS, SQL or gRPC: values are parsed
//! into newtypes at the edge ([`values`]), and the ticket aggregate
//! ([`ticket`]) is a pair of pure functions, `decide` (command + state →
//! event or rule violation) and `evolve` (state + event → state). The clock
//! is an argument, so every decision is reproducible in tests.

pub mod directory;
pub mod ticket;
pub mod time;
pub mod values;

pub use ticket::{
    Closure, Guide, Plan, RecordedEvent, ResponseTemplate, RuleViolation, SlaPolicy, Status,
    Ticket, TicketCommand, TicketEvent, decide, evolve,
};
pub use time::Timestamp;
pub use values::{
    AccountId, Channel, Email, FieldViolation, OpportunityKind, ProgramId, RequestId,
    RootCauseCategory, Text, TicketId,
};
