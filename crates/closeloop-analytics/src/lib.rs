//! Analytics: the numbers that prove the loop works.
//!
//! * [`view`]: SQL projections of ticket, SLA, feedback, routing and account events
//!   into fact tables (SQLite or PostgreSQL), each row stamped with when
//!   its event was recorded;
//! * [`facts`]: the facts as of a time (each ticket folded from its events
//!   by then, each response's latest revision, each account's version);
//! * [`report`]: closure, first contact and NPS computed from facts, as
//!   defined in `docs/metrics.md`, and the items behind any row; beside it
//!   [`escalations`], [`uplift`], [`quality`], [`leaderboard`] and
//!   [`journey`], the other views;
//! * [`grpc::AnalyticsGrpc`] serves `closeloop.v1.AnalyticsService`;
//! * [`role::Analytics`] is the role.

pub mod cache;
pub mod escalations;
pub mod facts;
pub mod generations;
pub mod grpc;
pub mod journey;
pub mod leaderboard;
pub mod quality;
pub mod query;
pub mod report;
pub mod role;
pub mod tables;
pub mod uplift;
pub mod view;

/// The migrations of the tables this crate owns (versions 5000-5999).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
