//! The ticketing service.
//!
//! * [`commands::TicketCommands`]: the single writer of the ticket aggregate.
//!   Loads a ticket's events, runs the pure `decide`, appends with optimistic
//!   concurrency and retries on conflicts; request ids make retries idempotent.
//! * [`projection::TicketStateProjection`]: builds the `tickets` and
//!   `ticket_activity` views.
//! * [`notifications::TicketNotifications`]: the `ticket_notifications`
//!   view (who was told about each ticket), from the notification events.
//! * [`sla::TicketSla`]: each ticket's SLA events (the escalation role's),
//!   folded on read into its clocks and escalations.
//! * [`queries`]: reads over those views.
//! * [`grpc::TicketGrpc`] serves `closeloop.v1.TicketService`; [`http`]
//!   the same commands as `POST /v1/tickets/{id}:<command>` for connectors.
//! * [`routes::RouteOpener`] opens the tickets routing decided and attaches
//!   revised feedback to them.

pub mod commands;
pub mod errors;
pub mod grpc;
pub mod http;
pub mod notifications;
pub mod plan_json;
pub mod projection;
pub mod queries;
pub mod role;
pub mod routes;
pub mod sla;

/// Aggregate type name: subjects are `<prefix>.events.ticket.<ticket_id>`.
pub use closeloop_contracts::ticket::AGGREGATE;

/// The migrations of the tables this crate owns (versions unique across
/// crates; see `closeloop_runtime::MigrationSet`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
