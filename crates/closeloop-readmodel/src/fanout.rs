//! Several projections fed by one reader of the stream.
//!
//! NATS 2.9 gives a consumer one subject filter, so [`run_projector`]
//! opens one consumer per projection, and the server walks the stream once
//! for each. A role with several projections over the same events (the
//! analytics facts: tickets, SLA, responses, accounts, routing) makes one
//! [`Fanout`] instead: one ordered consumer over a wider filter, whose
//! events the process hands to each projection whose filter they match
//! (client-side selection). Each projection keeps its own task, batches,
//! transaction and checkpoint exactly as under [`run_projector`]; only the
//! source of its events changes.
//!
//! * The reader starts after the lowest checkpoint of its members, and each
//!   member skips what its own checkpoint already holds.
//! * Every chunk the reader takes from the consumer goes to every member,
//!   empty for those it holds nothing for, so each member knows how far
//!   the reader is and what is still to come: its `pending` is the stream's
//!   events after the reader's position when the member had applied all it
//!   was given, an upper bound of its own filter's (0 once caught up).
//! * Channels are bounded: the slowest member holds the reader back, and
//!   nothing read is dropped. A member whose transaction fails retries the
//!   same batch; the reader resubscribes after the last event it handed
//!   out when NATS reconnects or the consumer fails.
//!
//! [`run_projector`]: crate::run_projector

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use closeloop_eventstore::{EventStore, StoredEvent};
use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, watch};

use crate::db::Db;
use crate::projector::{
    FILL_FROM, FILL_WAIT, FollowError, MAX_BATCH, Pending, Projection, RECONNECT_CHECK,
    apply_batch, raise, start_position,
};

/// Most events the reader takes from the consumer before handing them out.
const CHUNK: usize = 512;

/// Chunks queued per member before the reader waits for it.
const QUEUED: usize = 16;

/// What the reader hands a member: the member's events of one chunk (in
/// stream order, maybe none) and the stream's events after the chunk.
struct Chunk {
    events: Vec<StoredEvent>,
    pending: u64,
}

/// One member as the reader sees it.
struct Route {
    name: &'static str,
    filter: String,
    tx: mpsc::Sender<Chunk>,
}

/// The projections of one reader, built with [`Fanout::member`] and run by
/// [`Fanout::reader`].
pub struct Fanout {
    db: Db,
    store: EventStore,
    filter: String,
    routes: Vec<Route>,
}

impl Fanout {
    /// A reader of `filter` (which must cover every member's filter, e.g.
    /// the stream's `<prefix>.events.>`).
    pub fn new(db: Db, store: EventStore, filter: String) -> Fanout {
        Fanout {
            db,
            store,
            filter,
            routes: Vec::new(),
        }
    }

    /// Adds `projection`; returns its task, to be spawned beside
    /// [`Fanout::reader`]'s. It ends when `shutdown` resolves or the reader
    /// ends.
    pub fn member<P: Projection, S: Future<Output = ()> + Send>(
        &mut self,
        projection: P,
        progress: watch::Sender<u64>,
        pending: Pending,
        shutdown: S,
    ) -> impl Future<Output = ()> + Send + use<P, S> {
        let (tx, rx) = mpsc::channel(QUEUED);
        self.routes.push(Route {
            name: projection.name(),
            filter: projection.filter(self.store.prefix()),
            tx,
        });
        let db = self.db.clone();
        async move {
            tokio::select! {
                _ = shutdown => {}
                _ = member(db, projection, rx, progress, pending) => {}
            }
        }
    }

    /// The reader's task: follows the filter from the lowest checkpoint of
    /// the members and hands each its events until `shutdown` resolves.
    pub async fn reader(self, shutdown: impl Future<Output = ()> + Send) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut backoff = Duration::from_millis(100);
        // The last event handed out: the reader resumes after it.
        let mut after: Option<u64> = None;
        loop {
            let result = tokio::select! {
                _ = &mut shutdown => return,
                r = self.read_once(&mut after) => r,
            };
            match result {
                Ok(true) => backoff = Duration::from_millis(100),
                // Every member has stopped.
                Ok(false) => return,
                Err(e) => {
                    tracing::error!(filter = %self.filter, error = %e, "projection reader failed; retrying")
                }
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Reads until NATS reconnects (`Ok(true)`: resubscribe), every member
    /// has gone (`Ok(false)`) or the consumer fails.
    async fn read_once(&self, after: &mut Option<u64>) -> Result<bool, FollowError> {
        let start = match *after {
            Some(seq) => seq,
            None => {
                let mut lowest = u64::MAX;
                for r in &self.routes {
                    lowest = lowest.min(start_position(&self.db, r.name).await?);
                }
                if lowest == u64::MAX { 0 } else { lowest }
            }
        };
        tracing::info!(filter = %self.filter, from = start, members = self.routes.len(), "projection reader following");
        let connects = self.store.connects();
        let mut events = std::pin::pin!(self.store.follow(&self.filter, start).await?);
        let mut watchdog = tokio::time::interval(RECONNECT_CHECK);
        let mut chunk = Vec::with_capacity(CHUNK);
        loop {
            let first = tokio::select! {
                ev = events.next() => match ev {
                    Some(ev) => ev?,
                    None => return Ok(true),
                },
                _ = watchdog.tick() => {
                    if self.store.connects() != connects {
                        tracing::info!(filter = %self.filter, "NATS reconnected; resubscribing");
                        return Ok(true);
                    }
                    continue;
                }
            };
            chunk.push(first);
            while chunk.len() < CHUNK {
                match events.next().now_or_never() {
                    Some(Some(ev)) => chunk.push(ev?),
                    _ => break,
                }
            }
            let last = chunk.last().map_or(start, |e| e.sequence);
            let pending = chunk.last().map_or(0, |e| e.pending);
            // Each event moves to the last member it matches (a copy to
            // any other: the analytics projections' filters are disjoint).
            let mut mine: Vec<Vec<StoredEvent>> = self.routes.iter().map(|_| Vec::new()).collect();
            for ev in chunk.drain(..) {
                let mut matches = self
                    .routes
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| subject_matches(&r.filter, &ev.subject))
                    .map(|(i, _)| i)
                    .peekable();
                while let Some(i) = matches.next() {
                    if matches.peek().is_some() {
                        mine[i].push(ev.clone());
                    } else {
                        mine[i].push(ev);
                        break;
                    }
                }
            }
            let mut alive = 0;
            for (r, events) in self.routes.iter().zip(mine) {
                let sent = r.tx.send(Chunk { events, pending }).await;
                alive += usize::from(sent.is_ok());
            }
            *after = Some(last);
            if alive == 0 {
                return Ok(false);
            }
        }
    }
}

/// One member: gathers its events into batches as [`run_projector`] does
/// and applies them, each in one transaction with its checkpoint.
///
/// [`run_projector`]: crate::run_projector
async fn member<P: Projection>(
    db: Db,
    projection: P,
    mut rx: mpsc::Receiver<Chunk>,
    progress: watch::Sender<u64>,
    pending: Pending,
) {
    let name = projection.name();
    // Where this projection's checkpoint is: what the reader hands it up to
    // there is applied already. Read until the database answers.
    let mut backoff = Duration::from_millis(100);
    let mut committed = loop {
        match start_position(&db, name).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::error!(projector = name, error = %e, "reading the checkpoint failed; retrying")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    };
    raise(&progress, committed);
    tracing::info!(
        projector = name,
        from = committed,
        "projector following (shared reader)"
    );
    let mut batch: Vec<StoredEvent> = Vec::new();
    let mut behind = 0;
    loop {
        // Wait for a chunk with events of this projection, noting how far
        // the reader is from the stream's end meanwhile.
        while batch.is_empty() {
            let Some(c) = rx.recv().await else { return };
            behind = c.pending;
            batch.extend(c.events.into_iter().filter(|e| e.sequence > committed));
            if batch.is_empty() {
                pending.store(behind, Ordering::Relaxed);
            }
        }
        // Fill the batch: what is queued now, and while the reader is far
        // behind the stream's end, what comes within FILL_WAIT of the last
        // chunk that held events of this projection.
        let mut deadline = tokio::time::Instant::now() + FILL_WAIT;
        while batch.len() < MAX_BATCH {
            let next = match rx.try_recv() {
                Ok(c) => Some(c),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) if behind >= FILL_FROM => {
                    tokio::time::timeout_at(deadline, rx.recv())
                        .await
                        .ok()
                        .flatten()
                }
                Err(mpsc::error::TryRecvError::Empty) => None,
            };
            let Some(c) = next else { break };
            behind = c.pending;
            if !c.events.is_empty() {
                batch.extend(c.events.into_iter().filter(|e| e.sequence > committed));
                deadline = tokio::time::Instant::now() + FILL_WAIT;
            }
        }
        let span = tracing::info_span!(
            "project",
            projector = name,
            events = batch.len(),
            first = batch[0].sequence
        );
        // A failed transaction is retried with the same events: they are
        // not read again.
        let mut backoff = Duration::from_millis(100);
        let last = loop {
            match tracing::Instrument::instrument(
                apply_batch(&db, &projection, &batch),
                span.clone(),
            )
            .await
            {
                Ok(last) => break last,
                Err(e) => {
                    tracing::error!(projector = name, error = %e, "projector failed; retrying the batch");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        batch.clear();
        committed = committed.max(last);
        pending.store(behind, Ordering::Relaxed);
        raise(&progress, last);
    }
}

/// Whether `subject` matches NATS subject filter `filter` (`*` matches one
/// token, a final `>` one or more).
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut s = subject.split('.');
    for f in filter.split('.') {
        match (f, s.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (f, Some(t)) if f == t => {}
            _ => return false,
        }
    }
    s.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::subject_matches;

    #[test]
    fn subjects_match_as_nats_matches_them() {
        assert!(subject_matches("p.events.ticket.*", "p.events.ticket.abc"));
        assert!(!subject_matches(
            "p.events.ticket.*",
            "p.events.ticket.abc.d"
        ));
        assert!(!subject_matches("p.events.ticket.*", "p.events.ticket"));
        assert!(!subject_matches(
            "p.events.ticket.*",
            "p.events.tickets.abc"
        ));
        assert!(!subject_matches("p.events.ticket.*", "q.events.ticket.abc"));
        assert!(subject_matches("p.events.>", "p.events.ticket.abc"));
        assert!(subject_matches("p.events.>", "p.events.x"));
        assert!(!subject_matches("p.events.>", "p.events"));
        assert!(subject_matches("p.*.ticket.a", "p.events.ticket.a"));
        assert!(subject_matches("a", "a"));
        assert!(!subject_matches("a", "a.b"));
    }
}
