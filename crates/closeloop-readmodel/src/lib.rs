//! SQL read models.
//!
//! * [`Db`]: one connection pool over SQLite (the embedded default) or
//!   PostgreSQL (production, several replicas), chosen by URL; each crate
//!   that owns tables embeds its migrations, and [`Db::migrate`] applies
//!   them safely under concurrent starts ([`MIGRATOR`] is this crate's own).
//! * [`Projection`] and [`run_projector`]: a projector follows one aggregate
//!   type on the event stream and applies events in batches; the checkpoint
//!   is written in the same transaction as the view rows, so a view never
//!   misses or double-applies an event, and an empty database rebuilds every
//!   view from the stream.
//! * [`Fanout`]: several projections fed by one reader of a wider filter
//!   (the server walks the stream once, not once per projection).
//! * [`Insert`]: a batch's rows for one table in few multi-row statements.

mod db;
mod fanout;
mod insert;
mod projector;

pub use db::{Backend, Db, DbError, MIGRATOR, Writer};
pub use fanout::{Fanout, subject_matches};
pub use insert::{Insert, Val, chunks, values_sql};
pub use projector::{
    Pending, Prepared, Progress, Projection, ProjectionError, run_projector, wait_for,
};
