//! The single-writer command loop, generic over an aggregate type.
//!
//! [`Executor::execute`] loads an aggregate (from a bounded cache, else by
//! replaying its subject), asks the aggregate's pure `decide` what a command
//! means, appends the resulting event with optimistic concurrency and a
//! deterministic `Nats-Msg-Id`, and folds it in with `evolve`. It retries when
//! another writer appended first and answers a repeated request id with the
//! original sequence. Commands on one aggregate instance inside one process
//! queue on a per-instance lock, so conflicts only arise between replicas.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::{AppendError, Envelope, EventStore, StoredEvent};

/// What a command means for an aggregate in its current state (the
/// domain's type: its pure `decide` functions return it).
pub use closeloop_domain::Decision;

/// Metadata a command passes down to the events it writes.
#[derive(Debug, Clone, Default)]
pub struct EventContext {
    pub actor: String,
    pub correlation_id: String,
    pub causation_id: String,
    pub traceparent: Option<String>,
}

impl EventContext {
    /// The context of an event written in reaction to the stored event with
    /// envelope `cause` (by a consumer acting as `actor`): same correlation,
    /// caused by that event, continuing its trace.
    pub fn caused_by(cause: Option<&crate::Envelope>, actor: &str) -> EventContext {
        EventContext {
            actor: actor.to_string(),
            correlation_id: cause.map(|e| e.correlation_id.clone()).unwrap_or_default(),
            causation_id: cause.map(|e| e.event_id.clone()).unwrap_or_default(),
            traceparent: Some(crate::trace::for_event(
                &tracing::Span::current(),
                cause.and_then(|e| e.traceparent.as_deref()),
            )),
        }
    }
}

/// Request metadata a caller passes on to the events its request writes:
/// `traceparent` and `x-correlation-id`, read once from whatever carries them
/// (HTTP headers, gRPC metadata, NATS headers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried {
    traceparent: Option<String>,
    correlation_id: Option<String>,
}

impl Carried {
    /// Reads the carried values with `get` (header name → value).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Carried {
        Carried {
            traceparent: get("traceparent"),
            correlation_id: get("x-correlation-id").filter(|c| !c.is_empty() && c.len() <= 128),
        }
    }

    /// The context of request `request_id` by `actor`: correlation id from
    /// `x-correlation-id` (else the request id), causation = the request id,
    /// `traceparent` continuing the caller's trace or starting a new one.
    pub fn context(&self, request_id: &str, actor: String) -> EventContext {
        EventContext {
            actor,
            correlation_id: self
                .correlation_id
                .clone()
                .unwrap_or_else(|| request_id.to_string()),
            causation_id: request_id.to_string(),
            traceparent: Some(crate::trace::for_event(
                &tracing::Span::current(),
                self.traceparent.as_deref(),
            )),
        }
    }
}

/// The domain's aggregate trait: pure `decide`/`evolve`.
pub use closeloop_domain::Aggregate;

/// The `Aggregate` of contract `C`.
pub type Of<C> = <C as Contract>::Aggregate;

/// Why a stored event cannot be read (a damaged payload, or a type or body
/// this version does not know: written by a newer closeloop).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

impl From<String> for DecodeError {
    fn from(s: String) -> Self {
        DecodeError(s)
    }
}

impl From<&str> for DecodeError {
    fn from(s: &str) -> Self {
        DecodeError(s.to_string())
    }
}

/// The wire contract of an aggregate type: how its events are encoded as
/// stored messages (envelope headers and payload) and decoded back. The
/// aggregate says what happens; the contract only how it is written down.
/// Event ids and the metadata every event carries are built by the
/// executor and the shared codec, not here.
pub trait Contract: Send + Sync + 'static {
    type Aggregate: Aggregate;

    /// The stored form of `event` on instance `id`, written by request
    /// `request_id` at `at` in context `ctx`, with id `event_id`.
    fn encode(
        id: <Self::Aggregate as Aggregate>::Id,
        event_id: &str,
        request_id: &str,
        at: SystemTime,
        ctx: &EventContext,
        event: &<Self::Aggregate as Aggregate>::Event,
    ) -> (Envelope, Bytes);

    fn decode(
        stored: &StoredEvent,
    ) -> Result<<Self::Aggregate as Aggregate>::Recorded, DecodeError>;

    /// What [`Contract::decode`] would return for `event` as just written
    /// at `sequence` (with `request_id`, at `at`, by `ctx`): the executor
    /// folds its own writes in without decoding what it just encoded.
    fn recorded(
        id: <Self::Aggregate as Aggregate>::Id,
        event: &<Self::Aggregate as Aggregate>::Event,
        sequence: u64,
        request_id: &str,
        at: SystemTime,
        ctx: &EventContext,
    ) -> <Self::Aggregate as Aggregate>::Recorded;
}

/// What a command produced.
#[derive(Debug, Clone)]
pub struct Executed<S> {
    /// The aggregate after the command (shared with the executor's cache).
    pub state: Arc<S>,
    /// Stream sequence of the event written by this request (now or earlier).
    pub sequence: u64,
    /// True when the request id had already been applied and nothing was written.
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<R> {
    #[error("command refused")]
    Rule(R),
    #[error(
        "gave up after {0} attempts: the aggregate kept changing under concurrent writers; retry"
    )]
    Contention(u32),
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    #[error("stored event {sequence} cannot be decoded: {reason}")]
    Corrupt { sequence: u64, reason: String },
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ExecutorMetrics {
    /// Commands that wrote an event.
    pub written: AtomicU64,
    /// Commands answered from an earlier identical request.
    pub replayed: AtomicU64,
    /// Appends that lost an optimistic-concurrency race and were re-decided.
    pub conflicts: AtomicU64,
    /// Commands that gave up after [`MAX_ATTEMPTS`] (answered `ABORTED`).
    pub aborted: AtomicU64,
}

/// Namespace of event ids (UUIDv5).
const EVENT_NS: uuid::Uuid = uuid::Uuid::from_u128(0x6c0e_1f0b_5d3a_4b7e_9a51_7f3c_2e8d_00e0);

/// The id of the event that request `request_id` appends to aggregate `id`
/// of type `kind` right after the subject's stream sequence `after` (0: the
/// aggregate's first event). Sent as `Nats-Msg-Id` and `Closeloop-Event-Id`.
///
/// Unique per event forever: one event is appended after any one sequence of
/// a subject, and the type and id name the subject. Deterministic per
/// request: a retried command whose append had not landed writes the same id
/// (the broker drops a second copy); one whose append had landed is answered
/// by the aggregate's own record of the request and writes nothing. Never
/// derived from content alone, so content that returns to an earlier version
/// is a new event with a new id.
pub fn event_id(kind: &str, id: &dyn Display, after: u64, request_id: &str) -> String {
    uuid::Uuid::new_v5(
        &EVENT_NS,
        format!("{kind}/{id}/{after}/{request_id}").as_bytes(),
    )
    .to_string()
}

/// How often a command is re-decided after losing a race.
pub const MAX_ATTEMPTS: u32 = 8;
/// Aggregates kept in memory between commands (a cache: the stream is the truth).
const CACHE_CAPACITY: usize = 10_000;

type Locks<Id> = Arc<Mutex<HashMap<Id, Arc<tokio::sync::Mutex<()>>>>>;
type Cache<Id, S> = Arc<Mutex<HashMap<Id, Arc<S>>>>;

type Id<C> = <Of<C> as Aggregate>::Id;
type State<C> = <Of<C> as Aggregate>::State;
type Rule<C> = <Of<C> as Aggregate>::Rule;
type Event<C> = <Of<C> as Aggregate>::Event;
type Command<C> = <Of<C> as Aggregate>::Command;

/// Executes commands on one aggregate type, through its contract. Cheap to clone.
pub struct Executor<C: Contract> {
    store: EventStore,
    cache: Cache<Id<C>, State<C>>,
    locks: Locks<Id<C>>,
    metrics: Arc<ExecutorMetrics>,
}

impl<C: Contract> Clone for Executor<C> {
    fn clone(&self) -> Self {
        Executor {
            store: self.store.clone(),
            cache: self.cache.clone(),
            locks: self.locks.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<C: Contract> Executor<C> {
    pub fn new(store: EventStore) -> Self {
        Executor {
            store,
            cache: Arc::default(),
            locks: Arc::default(),
            metrics: Arc::default(),
        }
    }

    pub fn metrics(&self) -> Arc<ExecutorMetrics> {
        self.metrics.clone()
    }

    pub fn subject(&self, id: Id<C>) -> String {
        self.store
            .prefix()
            .aggregate_subject(Of::<C>::TYPE, &id.to_string())
    }

    /// Rebuilds an aggregate from its events (`None`: no events yet).
    pub async fn load(&self, id: Id<C>) -> Result<Option<State<C>>, ExecuteError<Rule<C>>> {
        let events = self
            .store
            .read_aggregate(&self.subject(id))
            .await
            .map_err(|e| ExecuteError::Unavailable(e.to_string()))?;
        let mut state = None;
        for ev in &events {
            let rec = C::decode(ev).map_err(|e| ExecuteError::Corrupt {
                sequence: ev.sequence,
                reason: e.0,
            })?;
            state = Of::<C>::evolve(state, &rec);
        }
        Ok(state)
    }

    /// Takes the cached state out for a command (the caller holds the
    /// instance's lock). Copied only if a caller still holds the previous
    /// result, so large aggregates are not cloned on every command.
    fn take_cached(&self, id: Id<C>) -> Option<State<C>> {
        let arc = self.cache.lock().expect("cache lock").remove(&id)?;
        Some(Arc::try_unwrap(arc).unwrap_or_else(|shared| (*shared).clone()))
    }

    fn remember(&self, id: Id<C>, s: &Arc<State<C>>) {
        let mut c = self.cache.lock().expect("cache lock");
        if c.len() >= CACHE_CAPACITY && !c.contains_key(&id) {
            c.clear();
        }
        match c.get(&id) {
            Some(old) if Of::<C>::sequence(old) >= Of::<C>::sequence(s) => {}
            _ => {
                c.insert(id, s.clone());
            }
        }
    }

    fn forget(&self, id: Id<C>) {
        self.cache.lock().expect("cache lock").remove(&id);
    }

    /// Appends `event` on top of `state` (expected last sequence: the
    /// state's, 0 for a new aggregate) and folds it in; `None` when another
    /// writer appended first or the broker already holds this event id.
    async fn try_append(
        &self,
        id: Id<C>,
        subject: &str,
        state: Option<State<C>>,
        request_id: &str,
        ctx: &EventContext,
        event: &Event<C>,
    ) -> Result<Option<Executed<State<C>>>, ExecuteError<Rule<C>>> {
        let at = self.store.clock().now();
        let expected = state.as_ref().map_or(0, Of::<C>::sequence);
        let event_id = event_id(Of::<C>::TYPE, &id, expected, request_id);
        let (env, payload) = C::encode(id, &event_id, request_id, at, ctx, event);
        match self.store.append(subject, expected, &env, payload).await {
            Ok(ack) if !ack.duplicate => {
                let rec = C::recorded(id, event, ack.sequence, request_id, at, ctx);
                let state = Arc::new(Of::<C>::evolve(state, &rec).expect("evolve after append"));
                self.remember(id, &state);
                self.metrics.written.fetch_add(1, Ordering::Relaxed);
                Ok(Some(Executed {
                    state,
                    sequence: ack.sequence,
                    replayed: false,
                }))
            }
            Ok(_) | Err(AppendError::Conflict { .. }) => Ok(None),
            Err(AppendError::Unavailable(e)) => {
                self.forget(id);
                Err(ExecuteError::Unavailable(e))
            }
        }
    }

    /// Decides and appends `command` on aggregate `id`.
    pub async fn execute(
        &self,
        id: Id<C>,
        request_id: &str,
        ctx: &EventContext,
        command: &Command<C>,
    ) -> Result<Executed<State<C>>, ExecuteError<Rule<C>>> {
        let lock = self
            .locks
            .lock()
            .expect("locks")
            .entry(id)
            .or_default()
            .clone();
        let result = {
            let _guard = lock.lock().await;
            self.execute_locked(id, request_id, ctx, command).await
        };
        drop(lock);
        let mut locks = self.locks.lock().expect("locks");
        if locks.get(&id).is_some_and(|l| Arc::strong_count(l) == 1) {
            locks.remove(&id);
        }
        result
    }

    async fn execute_locked(
        &self,
        id: Id<C>,
        request_id: &str,
        ctx: &EventContext,
        command: &Command<C>,
    ) -> Result<Executed<State<C>>, ExecuteError<Rule<C>>> {
        let subject = self.subject(id);
        let mut state = match self.take_cached(id) {
            Some(s) => Some(s),
            // Not in memory. A command that would create the aggregate is
            // first tried as a creation (expected last sequence 0): for a new
            // aggregate that saves the read before the write; if the subject
            // has events after all, the broker refuses and we load below.
            None => match Of::<C>::decide(id, None, request_id, command) {
                Ok(Decision::Append(event)) => {
                    match self
                        .try_append(id, &subject, None, request_id, ctx, &event)
                        .await?
                    {
                        Some(done) => return Ok(done),
                        None => self.load(id).await?,
                    }
                }
                _ => self.load(id).await?,
            },
        };
        for attempt in 1..=MAX_ATTEMPTS {
            let decision = match Of::<C>::decide(id, state.as_ref(), request_id, command) {
                Ok(d) => d,
                Err(rule) => {
                    // Refused: the state is unchanged; keep it cached.
                    if let Some(s) = state {
                        self.remember(id, &Arc::new(s));
                    }
                    return Err(ExecuteError::Rule(rule));
                }
            };
            let event = match decision {
                Decision::AlreadyApplied { sequence } => {
                    self.metrics.replayed.fetch_add(1, Ordering::Relaxed);
                    let state =
                        Arc::new(state.expect("a request was applied to an existing aggregate"));
                    self.remember(id, &state);
                    return Ok(Executed {
                        state,
                        sequence,
                        replayed: true,
                    });
                }
                Decision::Append(event) => event,
            };
            match self
                .try_append(id, &subject, state, request_id, ctx, &event)
                .await?
            {
                Some(done) => return Ok(done),
                // Another writer appended first, or the broker already holds
                // this event id (an earlier attempt landed): reload, decide again.
                None => {
                    tracing::debug!(%id, attempt, kind = Of::<C>::TYPE, "aggregate changed concurrently; reloading");
                    self.metrics.conflicts.fetch_add(1, Ordering::Relaxed);
                    self.forget(id);
                    if attempt > 2 {
                        // Spread racing writers apart a little.
                        let jitter = (uuid::Uuid::new_v4().as_u128() % 20) as u64;
                        tokio::time::sleep(Duration::from_millis(jitter * u64::from(attempt)))
                            .await;
                    }
                    state = self.load(id).await?;
                }
            }
        }
        self.metrics.aborted.fetch_add(1, Ordering::Relaxed);
        Err(ExecuteError::Contention(MAX_ATTEMPTS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carried_metadata_becomes_the_event_context() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = Carried::from_lookup(|k| match k {
            "traceparent" => Some(parent.to_string()),
            "x-correlation-id" => Some("case-9".to_string()),
            _ => None,
        });
        let ctx = c.context("req-1", "a@b.io".into());
        assert_eq!(
            (ctx.correlation_id.as_str(), ctx.causation_id.as_str()),
            ("case-9", "req-1")
        );
        let tp = ctx.traceparent.unwrap();
        assert_eq!(&tp[..35], &parent[..35]);
        assert_ne!(tp, parent);

        // Nothing carried (or an unusable correlation id): the request id
        // correlates and a new trace starts.
        let none = Carried::from_lookup(|k| (k == "x-correlation-id").then(|| "x".repeat(129)));
        let ctx = none.context("req-2", String::new());
        assert_eq!(ctx.correlation_id, "req-2");
        assert!(crate::trace::parse(ctx.traceparent.as_deref().unwrap()).is_some());
    }
}
