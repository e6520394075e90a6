//! The event contracts: for every aggregate type of closeloop, its subject
//! token and the wire codec of its events (a protobuf payload with metadata,
//! and the envelope headers): a [`closeloop_eventstore::Contract`] for each
//! of the domain's aggregates, whose `decide`/`evolve` stay in
//! `closeloop-domain`.
//!
//! Every role crate reads and writes events through these contracts and
//! never through another role's crate: routing reads feedback events,
//! ticketing reads routing decisions, and the coming escalation, notification
//! and analytics roles read tickets, all from here. `docs/events.md` is the
//! public description of the same contracts.
//!
//! * [`ticket`]: `closeloop.v1.TicketEvent`, one aggregate per ticket.
//! * [`feedback`]: `closeloop.v1.FeedbackEvent`, one per survey response.
//! * [`routing`]: `closeloop.v1.RoutingEvent`, the routing decision of one
//!   response and the revisions attached to its tickets.
//! * [`rotation`]: `closeloop.v1.RotationEvent`, one per team in rotation.
//! * [`directory`]: `closeloop.v1.DirectoryEvent`, one aggregate per
//!   account, person and team record.
//! * [`notification`]: `closeloop.v1.NotificationEvent`, one per
//!   notification (recipient and channel of one ticket event).
//! * [`webhook`]: `closeloop.v1.WebhookEvent`, one per outbound webhook
//!   endpoint.

pub mod codec;
pub mod directory;
pub mod feedback;
pub mod notification;
pub mod report;
pub mod rotation;
pub mod routing;
pub mod sla;
pub mod ticket;
pub mod webhook;
