//! The escalation service: tickets do not fall through the cracks.
//!
//! * [`observer::Observer`] watches every ticket event and tells the
//!   ticket's SLA (the domain's [`closeloop_domain::sla`] aggregate, whose
//!   single writer this role is): clocks start, stop, pause and resume.
//! * [`view::SlaView`] projects the SLA events into `sla_timers` (the due
//!   work, indexed on due time) and `sla_tickets`.
//! * [`timers::Worker`] fires due timers: warnings, breaches, and
//!   escalations to the owner's manager (or further up, or the program's
//!   fallback, flagged), exactly once in effect.
//! * [`grpc::EscalationGrpc`] serves `closeloop.v1.EscalationService`:
//!   `sla recompute`, the weekly report ([`report`]) and the timers.
//! * [`schedule::Scheduler`] generates each region's weekly report at the
//!   times of its cron schedule (the report aggregate, e-mailed by the
//!   notification role).

pub mod grpc;
pub mod observer;
pub mod report;
pub mod role;
pub mod schedule;
pub mod timers;
pub mod view;

/// The migrations of the tables this crate owns (versions 3000-3999).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
