//! The event store: immutable events on NATS JetStream.
//!
//! * One stream per install, `<PREFIX>_EVENTS`, over `<prefix>.events.>`,
//!   provisioned idempotently and verified at start ([`EventStore::provision`]).
//! * One subject per aggregate instance, `<prefix>.events.<type>.<id>`, so
//!   optimistic concurrency uses `Nats-Expected-Last-Subject-Sequence`, which
//!   every server since 2.9 supports ([`EventStore::append`]).
//! * Every event carries an [`Envelope`] in headers: a deterministic event id
//!   (also `Nats-Msg-Id`, so a retried publish is de-duplicated), type,
//!   schema version, occurred-at, correlation/causation ids and W3C `traceparent`.
//! * Readers replay one aggregate ([`EventStore::read_aggregate`]) or follow a
//!   whole aggregate type from a checkpoint ([`EventStore::follow`]) with
//!   ordered consumers, which keep no state on the server: the checkpoint
//!   lives with the reader (in its SQL transaction).
//! * [`Executor`] runs commands on any [`Aggregate`] through its wire
//!   [`Contract`]: the one writer of its type, with optimistic concurrency,
//!   retries and idempotent request ids.

pub mod aggregate;
pub mod clock;
pub mod consumer;
pub mod dlq;
mod envelope;
mod prefix;
mod store;
pub mod trace;

pub use aggregate::{
    Aggregate, Carried, Contract, Decision, DecodeError, EventContext, ExecuteError, Executed,
    Executor, ExecutorMetrics, event_id,
};
pub use clock::{Clock, ClockError};
pub use envelope::{Envelope, headers};
pub use prefix::{Prefix, PrefixError};
pub use store::{
    AppendError, AppendOutcome, ConsumerPosition, EventStore, PROVISION_PATIENCE, StoreConfig,
    StoreError, StoredEvent, ensure_stream,
};
