//! The projector loop: follow events, apply them in batched transactions,
//! checkpoint in the same transaction.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use closeloop_eventstore::{EventStore, Prefix, StoredEvent};
use futures::{FutureExt, StreamExt};
use sqlx::{AnyConnection, Connection, Row};
use tokio::sync::watch;

use crate::db::{Backend, Db, DbError};

/// Most events applied in one transaction.
pub(crate) const MAX_BATCH: usize = 4096;

/// How long a projector that is behind waits for more events to fill its
/// batch before applying what it has.
pub(crate) const FILL_WAIT: Duration = Duration::from_millis(5);

/// Events pending on the server from which a projector is behind (is
/// catching up, not following live) and fills its batches.
pub(crate) const FILL_FROM: u64 = 256;

/// How often a projector checks whether NATS has reconnected under it.
pub(crate) const RECONNECT_CHECK: Duration = Duration::from_secs(1);

/// Receives the last sequence a projector has committed.
pub type Progress = watch::Receiver<u64>;

/// Events of a projector's filter on the stream that it has not applied yet
/// (as of the last event it received): its lag, for `/metrics`.
pub type Pending = std::sync::Arc<std::sync::atomic::AtomicU64>;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// A database failure: the batch is rolled back and retried.
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    /// The event cannot be applied (undecodable, unknown type): it is recorded
    /// in `projection_errors` with this reason and skipped.
    #[error("{0}")]
    Poison(String),
}

/// A view built from one aggregate type's events.
pub trait Projection: Send + Sync + 'static {
    /// Checkpoint name; unique per projection.
    fn name(&self) -> &'static str;

    /// The subjects to follow, e.g. `<prefix>.events.ticket.*`.
    fn filter(&self, prefix: &Prefix) -> String;

    /// Applies one event inside the batch's transaction. Must tolerate being
    /// called again for an event already applied (after a crash between the
    /// broker delivering and the commit, nothing was committed, so this only
    /// matters for concurrent replicas; the checkpoint lock prevents it too).
    fn apply<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        event: &'a StoredEvent,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send + 'a;

    /// Applies a batch of events (in stream order) inside the batch's
    /// transaction, and returns those it could not apply with the reason
    /// (they are recorded in `projection_errors` and skipped). The default
    /// applies them one by one; a projection may write a batch's rows in
    /// fewer statements.
    fn apply_batch<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        events: &'a [StoredEvent],
    ) -> impl Future<Output = Result<Vec<(u64, String)>, sqlx::Error>> + Send + 'a {
        async move {
            let mut poisoned = Vec::new();
            for ev in events {
                match self.apply(conn, ev).await {
                    Ok(()) => {}
                    Err(ProjectionError::Sql(e)) => return Err(e),
                    Err(ProjectionError::Poison(reason)) => poisoned.push((ev.sequence, reason)),
                }
            }
            Ok(poisoned)
        }
    }

    /// Work on a whole batch that needs no database (decoding, building
    /// rows), done before the batch's transaction, so that the writer (one
    /// connection on SQLite, shared by every projection of the process) is
    /// held only for the writes. `None`, the default: the batch goes to
    /// [`Projection::apply_batch`] inside the transaction instead, as it
    /// also does when part of the batch turns out to be applied already.
    fn prepare(&self, _events: &[StoredEvent]) -> Option<Prepared> {
        None
    }

    /// Writes what [`Projection::prepare`] built for a whole batch, inside
    /// its transaction, and returns the events it could not apply with the
    /// reason. Must be provided by a projection that prepares.
    fn apply_prepared<'a>(
        &'a self,
        _conn: &'a mut AnyConnection,
        _prepared: Prepared,
    ) -> impl Future<Output = Result<Vec<(u64, String)>, sqlx::Error>> + Send + 'a {
        // A projection that prepares without applying is a programming
        // error: the batch fails (logged, retried) instead of being lost.
        async {
            Err(sqlx::Error::Configuration(
                "a projection that prepares batches must apply them (apply_prepared)".into(),
            ))
        }
    }
}

/// What [`Projection::prepare`] built for a batch.
pub type Prepared = Box<dyn std::any::Any + Send>;

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

/// Runs `projection` until `shutdown` resolves. Failures (broker or database
/// down) are logged and retried from the committed checkpoint with backoff.
pub async fn run_projector<P: Projection>(
    db: Db,
    store: EventStore,
    projection: P,
    progress: watch::Sender<u64>,
    pending: Pending,
    shutdown: impl Future<Output = ()> + Send,
) {
    let name = projection.name();
    let filter = projection.filter(store.prefix());
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = Duration::from_millis(100);
    loop {
        let result = tokio::select! {
            _ = &mut shutdown => return,
            r = follow_once(&db, &store, &projection, &filter, &progress, &pending) => r,
        };
        match result {
            // Resubscribing on purpose (reconnect): start over promptly.
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => tracing::error!(projector = name, error = %e, "projector failed; retrying"),
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Moves `progress` up to `to` (never down), waking its watchers only
/// when it moved.
pub(crate) fn raise(progress: &watch::Sender<u64>, to: u64) {
    progress.send_if_modified(|p| {
        let changed = *p < to;
        *p = (*p).max(to);
        changed
    });
}

/// Projection `name`'s checkpoint: where it starts. Creates the row (at 0)
/// if it has none, so that from there on a batch only locks it.
pub(crate) async fn start_position(db: &Db, name: &str) -> Result<u64, FollowError> {
    sqlx::query(
        "INSERT INTO projector_checkpoints (name, sequence, updated_at) VALUES ($1, 0, $2) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(now_micros())
    .execute(db.pool())
    .await?;
    Ok(db.checkpoint(name).await?)
}

/// Why following the stream stopped (the caller retries with backoff).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FollowError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] closeloop_eventstore::StoreError),
}

async fn follow_once<P: Projection>(
    db: &Db,
    store: &EventStore,
    projection: &P,
    filter: &str,
    progress: &watch::Sender<u64>,
    pending: &Pending,
) -> Result<(), FollowError> {
    let name = projection.name();
    let start = start_position(db, name).await?;
    raise(progress, start);
    tracing::info!(
        projector = name,
        from = start,
        filter,
        "projector following"
    );
    let connects = store.connects();
    let mut events = std::pin::pin!(store.follow(filter, start).await?);
    let mut watchdog = tokio::time::interval(RECONNECT_CHECK);
    loop {
        let first = tokio::select! {
            ev = events.next() => match ev {
                Some(ev) => ev,
                None => return Ok(()),
            },
            _ = watchdog.tick() => {
                if store.connects() != connects {
                    tracing::info!(projector = name, "NATS reconnected; resubscribing from the checkpoint");
                    return Ok(());
                }
                continue;
            }
        };
        let mut batch = vec![first?];
        loop {
            while batch.len() < MAX_BATCH {
                match events.next().now_or_never() {
                    Some(Some(ev)) => batch.push(ev?),
                    _ => break,
                }
            }
            // Catching up (the server holds many more events of the filter
            // than have arrived): wait briefly for more, so a catch-up or a
            // rebuild commits few, full batches (each commit rewrites every
            // page it touched into the WAL: 512-event batches made a
            // rebuild take 1.5 times as long). Following live, few events
            // are pending and none is held back for others.
            let behind = batch.last().is_some_and(|e| e.pending >= FILL_FROM);
            if batch.len() >= MAX_BATCH || !behind {
                break;
            }
            match tokio::time::timeout(FILL_WAIT, events.next()).await {
                Ok(Some(ev)) => batch.push(ev?),
                _ => break,
            }
        }
        let behind = batch.last().map_or(0, |e| e.pending);
        let span = tracing::info_span!(
            "project",
            projector = name,
            events = batch.len(),
            first = batch[0].sequence
        );
        let last =
            tracing::Instrument::instrument(apply_batch(db, projection, &batch), span).await?;
        pending.store(behind, std::sync::atomic::Ordering::Relaxed);
        raise(progress, last);
    }
}

/// Applies a batch in one transaction and returns the committed checkpoint.
pub(crate) async fn apply_batch<P: Projection>(
    db: &Db,
    projection: &P,
    batch: &[StoredEvent],
) -> Result<u64, sqlx::Error> {
    let prepared = projection.prepare(batch);
    let mut writer = db.writer().await?;
    let applied = apply_on(&mut writer, db.backend(), projection, batch, prepared).await;
    if let Err(e) = &applied
        && connection_lost(e)
    {
        // Opened again for the next batch.
        writer.discard();
    }
    applied
}

/// Whether `e` says the connection itself is gone (not a refused statement).
fn connection_lost(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed | sqlx::Error::Protocol(_)
    )
}

async fn apply_on<P: Projection>(
    conn: &mut AnyConnection,
    backend: Backend,
    projection: &P,
    batch: &[StoredEvent],
    prepared: Option<Prepared>,
) -> Result<u64, sqlx::Error> {
    let name = projection.name();
    let (Some(first), Some(last_in_batch)) = (batch.first(), batch.last()) else {
        unreachable!("a batch holds at least one event");
    };
    let mut tx = conn.begin().await?;
    // The common case in one statement: nobody has applied any of the batch
    // (the checkpoint is below its first event), so move the checkpoint to
    // its end now. The update also locks the row, so concurrent replicas
    // (PostgreSQL) apply each event once.
    let claimed = sqlx::query(
        "UPDATE projector_checkpoints SET sequence = $1, updated_at = $2 \
         WHERE name = $3 AND sequence < $4",
    )
    .bind(last_in_batch.sequence as i64)
    .bind(now_micros())
    .bind(name)
    .bind(first.sequence as i64)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    let committed = if claimed {
        0
    } else {
        // Someone (another replica, or this projector before a restart)
        // applied part of it: lock the row, read how far, apply the rest.
        let lock = match backend {
            Backend::Postgres => {
                "SELECT sequence FROM projector_checkpoints WHERE name = $1 FOR UPDATE"
            }
            Backend::Sqlite => "SELECT sequence FROM projector_checkpoints WHERE name = $1",
        };
        let committed: i64 = sqlx::query(lock)
            .bind(name)
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        committed as u64
    };
    // The batch is in stream order: what is new is a suffix.
    let new = &batch[batch.partition_point(|e| e.sequence <= committed)..];
    let last = new.last().map_or(committed, |e| e.sequence);
    let poisoned = match prepared {
        Some(p) if claimed => projection.apply_prepared(&mut tx, p).await?,
        _ => projection.apply_batch(&mut tx, new).await?,
    };
    for (sequence, reason) in poisoned {
        let subject = new
            .iter()
            .find(|e| e.sequence == sequence)
            .map(|e| e.subject.as_str())
            .unwrap_or_default();
        tracing::error!(projector = name, sequence, subject, %reason, "skipping event the projection cannot apply");
        sqlx::query(
            "INSERT INTO projection_errors (projector, sequence, subject, reason, recorded_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (projector, sequence) DO NOTHING",
        )
        .bind(name)
        .bind(sequence as i64)
        .bind(subject)
        .bind(reason.as_str())
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
    }
    if !claimed && last > committed {
        sqlx::query(
            "UPDATE projector_checkpoints SET sequence = $1, updated_at = $2 WHERE name = $3",
        )
        .bind(last as i64)
        .bind(now_micros())
        .bind(name)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(last)
}

/// How long a read-your-writes query waits on the local projector before it
/// also asks the shared checkpoint (another replica may be the one that
/// projected the event, on PostgreSQL), and then how often it asks again.
const SHARED_CHECK: Duration = Duration::from_millis(20);

/// Waits until projection `name` has applied stream sequence `seq`, for read-
/// your-writes queries. Returns the checkpoint reached, `Err` with it on timeout.
///
/// The local projector usually commits an event a millisecond or two after
/// it was appended and says so on `progress`, so that is awaited first with
/// no I/O; the database's checkpoint is read only when the local projector is
/// slower than [`SHARED_CHECK`] or absent.
pub async fn wait_for(
    db: &Db,
    name: &str,
    progress: &mut Progress,
    seq: u64,
    timeout: Duration,
) -> Result<u64, u64> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut shared = 0;
    let mut local_gone = false;
    loop {
        let local = *progress.borrow_and_update();
        if local >= seq {
            return Ok(local);
        }
        let woke_by_progress = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return Err(local.max(shared)),
            changed = progress.changed(), if !local_gone => {
                local_gone = changed.is_err();
                !local_gone
            }
            _ = tokio::time::sleep(SHARED_CHECK) => false,
        };
        if !woke_by_progress {
            shared = db.checkpoint(name).await.unwrap_or(shared);
            if shared >= seq {
                return Ok(shared);
            }
        }
    }
}
