//! The due-work worker: fires the SLA timers whose time has come.
//!
//! `sla_timers` (projected from the SLA events, indexed on `due_at`) holds
//! every timer not fired yet. The worker reads the ones due now, soonest
//! first and at most [`BATCH`] at a time, fires each as an
//! [`SlaCommand::Fire`] on the ticket's SLA with request id
//! `timer/<key>`, and otherwise sleeps until the earliest due time, a new
//! timer (the view moved), a move of a simulated clock, or shutdown. A
//! tick costs what is due, never what is open.
//!
//! A timer fires only once the ticket's SLA has seen every event of the
//! ticket in the stream (the `escalation` observer's ack floor is past the
//! ticket's last event, or the observer is idle): a contact logged before
//! the due time but still on its way through the observer is not mistaken
//! for silence. Until then the timer waits (`deferred`) and is retried on
//! the next sweep.
//!
//! Firing is exactly once in effect: the key names the timer within its
//! ticket, the SLA refuses a key that is no longer pending, and optimistic
//! concurrency on the ticket's SLA subject makes two replicas (or a replica
//! and its restarted self) agree on who wrote the event.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use closeloop_contracts::sla::SlaContract;
use closeloop_directory::lookup::DirectoryLookup;
use closeloop_domain::sla::{Calendars, EscalationTarget, SlaCommand, SlaRequest, SlaRule};
use closeloop_domain::{TicketId, Timestamp};
use closeloop_eventstore::{
    Clock, ConsumerPosition, EventContext, EventStore, ExecuteError, Executor,
};
use closeloop_programs::Catalog;
use closeloop_readmodel::{Db, Progress};
use futures::StreamExt;
use sqlx::Row as _;
use tracing::Instrument;

/// Timers read per tick.
pub const BATCH: i64 = 512;
/// Timers fired concurrently.
const CONCURRENCY: usize = 64;
/// Longest sleep between looks at the table (a safety net: wake-ups come
/// from the view and the clock).
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// `/metrics` of the worker.
pub struct TimerMetrics {
    pub fired: AtomicU64,
    /// Timers found no longer pending (fired by another replica, or their
    /// clock stopped before the view caught up).
    pub stale: AtomicU64,
    pub failed: AtomicU64,
    /// Timers held back because the observer had not yet handled every
    /// event of their ticket.
    pub deferred: AtomicU64,
    pub ticks: AtomicU64,
    /// From a timer's due time to its event, in seconds of the clock.
    pub delay: prometheus_client::metrics::histogram::Histogram,
}

impl Default for TimerMetrics {
    fn default() -> Self {
        TimerMetrics {
            fired: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            deferred: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            delay: prometheus_client::metrics::histogram::Histogram::new([
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0,
            ]),
        }
    }
}

impl closeloop_runtime::MetricsSource for TimerMetrics {
    fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        let timers = Family::<Vec<(String, String)>, Counter>::default();
        for (outcome, c) in [
            ("fired", &self.fired),
            ("stale", &self.stale),
            ("failed", &self.failed),
            ("deferred", &self.deferred),
        ] {
            timers
                .get_or_create(&vec![("outcome".to_string(), outcome.to_string())])
                .inc_by(c.load(Ordering::Relaxed));
        }
        registry.register(
            "closeloop_sla_timers",
            "SLA timers by outcome: fired (an event written), stale (no longer pending), failed (retried), deferred (the ticket's latest events not yet seen by its SLA; retried).",
            timers,
        );
        let ticks = Counter::<u64>::default();
        ticks.inc_by(self.ticks.load(Ordering::Relaxed));
        registry.register(
            "closeloop_sla_timer_ticks",
            "Looks the timer worker took at the due table.",
            ticks,
        );
        registry.register(
            "closeloop_sla_timer_delay_seconds",
            "From an SLA timer's due time to its event.",
            self.delay.clone(),
        );
    }
}

/// Whether an observer at `observer` has handled a ticket whose last
/// event is at stream sequence `last` (`None`: no event).
fn seen_by(observer: Option<ConsumerPosition>, last: Option<u64>) -> bool {
    match observer {
        None => false,
        Some(at) => at.idle || last.unwrap_or(0) <= at.ack_floor,
    }
}

/// One due row.
#[derive(Debug, Clone)]
pub struct Due {
    pub ticket_id: String,
    pub key: String,
    pub due_at: i64,
    pub owner: String,
    pub program_id: String,
    pub level: u32,
}

fn micros(t: SystemTime) -> i64 {
    Timestamp::from_system_time(t).as_micros()
}

/// Timers due at `now`, soonest first (at most `limit`).
pub async fn due(db: &Db, now: i64, limit: i64) -> Result<Vec<Due>, sqlx::Error> {
    due_after(db, now, None, limit).await
}

/// Where a sweep of the due timers stands: the last row it took.
pub type Cursor = (i64, String, String);

/// Timers due at `now` after `after` in (due time, ticket, key) order, at
/// most `limit`: a sweep pages through what is due without waiting for the
/// view to drop what it fired.
pub async fn due_after(
    db: &Db,
    now: i64,
    after: Option<&Cursor>,
    limit: i64,
) -> Result<Vec<Due>, sqlx::Error> {
    const COLUMNS: &str = "SELECT ticket_id, timer_key, due_at, owner_email, program_id, level \
                           FROM sla_timers WHERE due_at <= $1";
    let rows = match after {
        None => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "{COLUMNS} ORDER BY due_at, ticket_id, timer_key LIMIT $2"
            )))
            .bind(now)
            .bind(limit)
            .fetch_all(db.pool())
            .await?
        }
        Some((at, ticket, key)) => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "{COLUMNS} AND (due_at, ticket_id, timer_key) > ($2, $3, $4) \
                 ORDER BY due_at, ticket_id, timer_key LIMIT $5"
            )))
            .bind(now)
            .bind(*at)
            .bind(ticket.as_str())
            .bind(key.as_str())
            .bind(limit)
            .fetch_all(db.pool())
            .await?
        }
    };
    rows.iter()
        .map(|r| {
            Ok(Due {
                ticket_id: r.try_get(0)?,
                key: r.try_get(1)?,
                due_at: r.try_get(2)?,
                owner: r.try_get(3)?,
                program_id: r.try_get(4)?,
                level: r.try_get::<i64, _>(5)?.clamp(0, i64::from(u32::MAX)) as u32,
            })
        })
        .collect()
}

/// The earliest due time of all timers.
pub async fn earliest(db: &Db) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query("SELECT MIN(due_at) FROM sla_timers")
        .fetch_one(db.pool())
        .await?
        .try_get::<Option<i64>, _>(0)
}

/// The worker. Cheap to clone.
#[derive(Clone)]
pub struct Worker {
    pub db: Db,
    /// The event store: where the observer stands, and each ticket's last event.
    pub store: EventStore,
    pub slas: Executor<SlaContract>,
    pub directory: DirectoryLookup,
    pub catalog: Option<Arc<Catalog>>,
    pub clock: Clock,
    /// The timer view's progress: moves when timers change.
    pub view: Progress,
    pub metrics: Arc<TimerMetrics>,
}

impl Worker {
    fn calendars(&self) -> Arc<Calendars> {
        self.catalog
            .as_ref()
            .map(|c| c.calendars.clone())
            .unwrap_or_default()
    }

    /// Who escalation level `level` of a ticket owned by `owner` goes to:
    /// the manager `level` steps up, else the program's fallback owner
    /// (flagged with why).
    pub async fn target(
        &self,
        owner: &str,
        program_id: &str,
        level: u32,
    ) -> Result<EscalationTarget, String> {
        let mut person = owner.to_string();
        for step in 1..=level {
            let manager = self
                .directory
                .person(&person)
                .await
                .map_err(|e| format!("directory: {e}"))?
                .and_then(|p| p.manager);
            match manager {
                Some(m) => person = m.to_string(),
                None => {
                    let why = if step == 1 {
                        format!("{person} has no manager in the directory")
                    } else {
                        format!(
                            "level {level}: {person} (level {}) has no manager in the directory",
                            step - 1
                        )
                    };
                    let fallback = self
                        .catalog
                        .as_ref()
                        .and_then(|c| c.program(program_id))
                        .map(|p| p.fallback_owner.clone())
                        .unwrap_or_default();
                    let why = if fallback.is_empty() {
                        format!("{why}, and program {program_id:?} has no fallback owner")
                    } else {
                        format!("{why}; told the program's fallback owner")
                    };
                    return Ok(EscalationTarget {
                        to: fallback,
                        fallback_reason: why,
                    });
                }
            }
        }
        Ok(EscalationTarget {
            to: person,
            fallback_reason: String::new(),
        })
    }

    /// Whether the ticket's SLA has seen every event of ticket `id` in the
    /// stream, with the observer at `observer` (`None`: unknown).
    async fn observed(&self, id: &TicketId, observer: Option<ConsumerPosition>) -> bool {
        match observer {
            None => return false,
            Some(at) if at.idle => return true,
            Some(_) => {}
        }
        let subject = self
            .store
            .prefix()
            .aggregate_subject(closeloop_contracts::ticket::AGGREGATE, &id.to_string());
        match self.store.last_sequence(&subject).await {
            Ok(last) => seen_by(observer, last),
            Err(e) => {
                tracing::warn!(ticket = %id, error = %e, "cannot read the ticket's last event");
                false
            }
        }
    }

    /// Fires one timer, the observer being at `observer` (read before this
    /// page of due timers); the stream sequence of the event it wrote.
    pub async fn fire(&self, d: &Due, observer: Option<ConsumerPosition>) -> Option<u64> {
        let Ok(id) = TicketId::parse("ticket_id", &d.ticket_id) else {
            self.metrics.failed.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        if !self.observed(&id, observer).await {
            tracing::debug!(ticket = %id, key = %d.key, "the ticket's latest events are not observed yet; deferred");
            self.metrics.deferred.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let target = if d.level > 0 {
            match self.target(&d.owner, &d.program_id, d.level).await {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(ticket = %id, key = %d.key, error = %e, "cannot resolve escalation target; will retry");
                    self.metrics.failed.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
        } else {
            None
        };
        let ctx = EventContext {
            actor: crate::observer::ACTOR.to_string(),
            correlation_id: d.ticket_id.clone(),
            causation_id: format!("timer/{}", d.key),
            traceparent: None,
        };
        let cmd = SlaRequest {
            command: SlaCommand::Fire {
                key: d.key.clone(),
                target,
            },
            calendars: self.calendars(),
        };
        match self
            .slas
            .execute(id, &format!("timer/{}", d.key), &ctx, &cmd)
            .await
        {
            Ok(done) => {
                if done.replayed {
                    self.metrics.stale.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.metrics.fired.fetch_add(1, Ordering::Relaxed);
                    let late = micros(self.clock.now()) - d.due_at;
                    self.metrics.delay.observe(late.max(0) as f64 / 1e6);
                }
                Some(done.sequence)
            }
            Err(ExecuteError::Rule(SlaRule::NotPending(_))) => {
                self.metrics.stale.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => {
                tracing::warn!(ticket = %id, key = %d.key, error = %e, "firing a timer failed; will retry");
                self.metrics.failed.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Runs until `stopped` resolves.
    ///
    /// A sweep pages through the due timers (keyset order), firing each
    /// page concurrently; when it reaches the end it waits for the view to
    /// drop what it fired, then looks again from the start (a timer that
    /// could not fire is retried there).
    pub async fn run(mut self, stopped: impl std::future::Future<Output = ()> + Send) {
        tokio::pin!(stopped);
        let mut cursor: Option<Cursor> = None;
        let mut swept: Vec<u64> = Vec::new();
        let mut failed_sweep = true;
        loop {
            self.metrics.ticks.fetch_add(1, Ordering::Relaxed);
            let now = micros(self.clock.now());
            let batch = match due_after(&self.db, now, cursor.as_ref(), BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "reading due timers failed");
                    tokio::select! {
                        _ = &mut stopped => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            if let Some(last) = batch.last() {
                cursor = Some((last.due_at, last.ticket_id.clone(), last.key.clone()));
                // Read after the page: every ticket event appended before
                // `now` is in the stream by now.
                let observer = match self
                    .store
                    .consumer_position(crate::observer::CONSUMER)
                    .await
                {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read where the observer stands; timers wait");
                        None
                    }
                };
                let worker = self.clone();
                let written: Vec<u64> = futures::stream::iter(batch)
                    .map(move |d| {
                        let w = worker.clone();
                        async move { w.fire(&d, observer).await }
                    })
                    .buffer_unordered(CONCURRENCY)
                    .filter_map(|s| async move { s })
                    .collect()
                    .await;
                failed_sweep &= written.is_empty();
                swept.extend(written);
                continue;
            }
            if cursor.take().is_some() {
                // The end of a sweep: wait for the view to drop what fired,
                // then sweep again from the start.
                if let Some(max) = swept.iter().max() {
                    let _ = closeloop_readmodel::wait_for(
                        &self.db,
                        crate::view::NAME,
                        &mut self.view,
                        *max,
                        Duration::from_secs(5),
                    )
                    .await;
                }
                swept.clear();
                if !std::mem::replace(&mut failed_sweep, true) {
                    continue;
                }
                tracing::debug!("no due timer could fire; backing off");
                // Nothing could fire (stale rows, the view behind, the
                // broker away): back off a little before the next sweep.
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
            let next = earliest(&self.db).await.ok().flatten();
            if next.is_some_and(|n| n <= micros(self.clock.now())) {
                continue;
            }
            self.view.borrow_and_update();
            let clock = self.clock.clone();
            let until_due = async move {
                match next {
                    Some(m) => {
                        clock
                            .sleep_until(Timestamp::from_micros(m).to_system_time())
                            .await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut stopped => return,
                _ = until_due => {}
                _ = self.view.changed() => {}
                _ = self.clock.moved() => {}
                _ = tokio::time::sleep(MAX_SLEEP) => {}
            }
        }
    }

    /// [`Worker::run`] in its own span.
    pub async fn spawn_run(self, stopped: impl std::future::Future<Output = ()> + Send) {
        self.run(stopped)
            .instrument(tracing::info_span!("sla_timers"))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timer_waits_until_the_observer_has_handled_the_tickets_last_event() {
        let at = |ack_floor, idle| Some(ConsumerPosition { ack_floor, idle });
        // Busy observer: the ticket's last event decides.
        assert!(seen_by(at(100, false), Some(100)));
        assert!(seen_by(at(100, false), Some(42)));
        assert!(!seen_by(at(100, false), Some(101)));
        // Idle observer: everything in the stream was handled.
        assert!(seen_by(at(100, true), Some(250)));
        // Unknown position: wait.
        assert!(!seen_by(None, Some(1)));
        assert!(!seen_by(None, None));
        // No event on the ticket's subject (history gone): nothing to wait for.
        assert!(seen_by(at(0, false), None));
    }
}
