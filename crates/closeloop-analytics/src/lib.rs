//! Analytics: the numbers that prove the loop works.
//!
//! * [`view`]: SQL projections of ticket, SLA, feedback and account events
//!   into fact tables (SQLite or PostgreSQL), each row stamped with when
//!   its event was recorded;
//! * [`facts`]: the facts as of a time (each ticket folded from its events
//!   by then, each response's latest revision, each account's version);
//! * [`report`]: the views computed from facts, as defined in
//!   `docs/metrics.md`, and the items behind any row;
//! * [`grpc::AnalyticsGrpc`] serves `closeloop.v1.AnalyticsService`;
//! * [`role::Analytics`] is the role.

pub mod facts;
pub mod grpc;
pub mod query;
pub mod report;
pub mod role;
pub mod view;

/// The migrations of the tables this crate owns (versions 5000-5999).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
