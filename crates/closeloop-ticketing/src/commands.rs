//! The single writer of the ticket aggregate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use closeloop_domain::ticket::Decision;
use closeloop_domain::{RequestId, Ticket, TicketCommand, TicketId, decide, evolve};
use closeloop_eventstore::{AppendError, EventStore};

use crate::codec::{self, EventContext};
use crate::errors::TicketError;

/// How often a command is re-decided after losing a race before `ABORTED`.
pub const MAX_ATTEMPTS: u32 = 8;
/// Tickets kept in memory between commands (a cache: the stream is the truth).
const CACHE_CAPACITY: usize = 10_000;

/// What a command produced.
#[derive(Debug, Clone)]
pub struct CommandResult {
    pub ticket: Ticket,
    /// Stream sequence of the event written by this request (now or earlier).
    pub sequence: u64,
    /// True when the request id had already been applied and nothing was written.
    pub replayed: bool,
}

/// Executes ticket commands. Cheap to clone.
#[derive(Clone)]
pub struct TicketCommands {
    store: EventStore,
    cache: Arc<Mutex<HashMap<TicketId, Ticket>>>,
    /// One lock per ticket with commands in flight: commands on one ticket in
    /// this process queue instead of racing; optimistic concurrency still
    /// settles races between replicas.
    locks: Arc<Mutex<HashMap<TicketId, Arc<tokio::sync::Mutex<()>>>>>,
    metrics: Arc<CommandMetrics>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct CommandMetrics {
    /// Commands that wrote an event.
    pub written: AtomicU64,
    /// Commands answered from an earlier identical request.
    pub replayed: AtomicU64,
    /// Appends that lost an optimistic-concurrency race and were re-decided.
    pub conflicts: AtomicU64,
    /// Commands that gave up after [`MAX_ATTEMPTS`] (answered `ABORTED`).
    pub aborted: AtomicU64,
}

impl TicketCommands {
    pub fn new(store: EventStore) -> Self {
        TicketCommands {
            store,
            cache: Arc::default(),
            locks: Arc::default(),
            metrics: Arc::default(),
        }
    }

    pub fn metrics(&self) -> Arc<CommandMetrics> {
        self.metrics.clone()
    }

    fn subject(&self, id: TicketId) -> String {
        self.store
            .prefix()
            .aggregate_subject(crate::AGGREGATE, &id.to_string())
    }

    /// Rebuilds a ticket from its events (`None`: no events yet).
    pub async fn load(&self, id: TicketId) -> Result<Option<Ticket>, TicketError> {
        let events = self
            .store
            .read_aggregate(&self.subject(id))
            .await
            .map_err(|e| TicketError::Unavailable(e.to_string()))?;
        let mut state = None;
        for ev in &events {
            let rec = codec::decode(ev).map_err(|e| TicketError::Corrupt {
                sequence: ev.sequence,
                reason: e.to_string(),
            })?;
            state = evolve(state, &rec);
        }
        Ok(state)
    }

    fn cached(&self, id: TicketId) -> Option<Ticket> {
        self.cache.lock().expect("cache lock").get(&id).cloned()
    }

    fn remember(&self, t: &Ticket) {
        let mut c = self.cache.lock().expect("cache lock");
        if c.len() >= CACHE_CAPACITY && !c.contains_key(&t.id) {
            c.clear();
        }
        match c.get(&t.id) {
            Some(old) if old.sequence >= t.sequence => {}
            _ => {
                c.insert(t.id, t.clone());
            }
        }
    }

    fn forget(&self, id: TicketId) {
        self.cache.lock().expect("cache lock").remove(&id);
    }

    /// Decides and appends `command` on ticket `id`. Retries when another
    /// writer got there first; a repeated `request_id` returns the original
    /// result without writing.
    pub async fn execute(
        &self,
        id: TicketId,
        request_id: &RequestId,
        ctx: &EventContext,
        command: &TicketCommand,
    ) -> Result<CommandResult, TicketError> {
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
        id: TicketId,
        request_id: &RequestId,
        ctx: &EventContext,
        command: &TicketCommand,
    ) -> Result<CommandResult, TicketError> {
        let subject = self.subject(id);
        let event_id = id.event_id(request_id);
        let mut state = match self.cached(id) {
            Some(t) => Some(t),
            None => self.load(id).await?,
        };
        for attempt in 1..=MAX_ATTEMPTS {
            match decide(id, state.as_ref(), request_id, command)? {
                Decision::AlreadyApplied { sequence } => {
                    self.metrics.replayed.fetch_add(1, Ordering::Relaxed);
                    let ticket = state.expect("a request was applied to an existing ticket");
                    return Ok(CommandResult {
                        ticket,
                        sequence,
                        replayed: true,
                    });
                }
                Decision::Append(event) => {
                    let now = SystemTime::now();
                    let (env, payload) =
                        codec::encode(id, &event_id, request_id.as_str(), now, ctx, &event);
                    let expected = state.as_ref().map_or(0, |t| t.sequence);
                    match self
                        .store
                        .append(&subject, expected, &env, payload.clone())
                        .await
                    {
                        Ok(ack) if !ack.duplicate => {
                            let rec = codec::decode(&closeloop_eventstore::StoredEvent {
                                subject: subject.clone(),
                                sequence: ack.sequence,
                                envelope: Some(env),
                                payload,
                            })
                            .map_err(|e| TicketError::Corrupt {
                                sequence: ack.sequence,
                                reason: e.to_string(),
                            })?;
                            let ticket = evolve(state, &rec).expect("evolve after append");
                            self.remember(&ticket);
                            self.metrics.written.fetch_add(1, Ordering::Relaxed);
                            return Ok(CommandResult {
                                ticket,
                                sequence: ack.sequence,
                                replayed: false,
                            });
                        }
                        // The broker already holds this event id (an earlier
                        // attempt of this request landed): reload and replay.
                        Ok(_) | Err(AppendError::Conflict { .. }) => {
                            tracing::debug!(%id, attempt, "ticket changed concurrently; reloading");
                            self.metrics.conflicts.fetch_add(1, Ordering::Relaxed);
                            self.forget(id);
                            if attempt > 2 {
                                // Spread racing writers apart a little.
                                let jitter = (uuid::Uuid::new_v4().as_u128() % 20) as u64;
                                tokio::time::sleep(Duration::from_millis(jitter * attempt as u64))
                                    .await;
                            }
                            state = self.load(id).await?;
                        }
                        Err(AppendError::Unavailable(e)) => {
                            self.forget(id);
                            return Err(TicketError::Unavailable(e));
                        }
                    }
                }
            }
        }
        self.metrics.aborted.fetch_add(1, Ordering::Relaxed);
        Err(TicketError::Contention(MAX_ATTEMPTS))
    }
}
