//! Connection and migrations.

use std::path::Path;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyConnection, AnyPool, Connection, Row};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("cannot create directory {path} for the SQLite database: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot lock {path} to migrate the SQLite database: {source}")]
    MigrationLock {
        path: String,
        source: std::io::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

/// A read-model database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    /// Where projectors write. SQLite: one connection of its own (SQLite
    /// has one writer at a time anyway), so a projector never queues for a
    /// connection behind readers; PostgreSQL: `None`, the shared pool.
    writer: Option<OwnWriter>,
    backend: Backend,
    /// SQLite: the file that serialises migrations of processes sharing it.
    migration_lock: Option<String>,
    /// SQLite: the WAL checkpoint task, stopped with the last clone.
    _checkpointer: Option<std::sync::Arc<AbortOnDrop>>,
}

/// SQLite's writer: one connection, taken in turn, opened again after a
/// failure. Not a pool of one: a pool pings a connection (a round trip to
/// its thread, in a task of its own) every time it is given back, and the
/// next batch waited for that (about 0.15 ms of each batch under load).
#[derive(Clone)]
struct OwnWriter {
    conn: std::sync::Arc<tokio::sync::Mutex<Option<AnyConnection>>>,
    url: String,
}

impl std::fmt::Debug for OwnWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnWriter")
            .field("url", &redact(&self.url))
            .finish()
    }
}

impl OwnWriter {
    async fn open(url: &str) -> Result<AnyConnection, sqlx::Error> {
        let mut conn = AnyConnection::connect(url).await?;
        for pragma in SQLITE_PRAGMAS.into_iter().chain([WAL_AUTOCHECKPOINT]) {
            sqlx::query(pragma).execute(&mut conn).await?;
        }
        Ok(conn)
    }
}

/// The writer connection, held until dropped (see [`Db::writer`]).
pub struct Writer<'a> {
    held: Held<'a>,
}

enum Held<'a> {
    Own(tokio::sync::MutexGuard<'a, Option<AnyConnection>>),
    Pooled(sqlx::pool::PoolConnection<sqlx::Any>),
}

impl Writer<'_> {
    /// Gives the connection up after a failure of the connection itself
    /// (I/O, its thread gone) or one that left it in a state nobody should
    /// write on after (a transaction begun and not ended): SQLite's writer
    /// is closed (which rolls back) and opened again on next use; a pooled
    /// connection is closed instead of going back to the pool. (A failed
    /// statement inside a sqlx `Transaction` needs none of this: dropping
    /// the transaction queues its rollback ahead of the connection's next
    /// command.)
    pub fn discard(mut self) {
        match &mut self.held {
            Held::Own(guard) => {
                if let Some(conn) = guard.take() {
                    // Closing is a message to the connection's thread; it
                    // need not be awaited here.
                    tokio::spawn(async move {
                        let _ = conn.close().await;
                    });
                }
            }
            Held::Pooled(conn) => conn.close_on_drop(),
        }
    }
}

impl std::ops::Deref for Writer<'_> {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match &self.held {
            Held::Own(guard) => guard.as_ref().expect("the writer is open while held"),
            Held::Pooled(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for Writer<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.held {
            Held::Own(guard) => guard.as_mut().expect("the writer is open while held"),
            Held::Pooled(conn) => conn,
        }
    }
}

/// Aborts its task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Every SQLite connection's settings: WAL (readers beside the one
/// writer), patience with a busy file, no fsync per commit (the WAL is
/// synced at checkpoints), and statement journals and temporary b-trees in
/// memory rather than temporary files.
const SQLITE_PRAGMAS: [&str; 4] = [
    "PRAGMA journal_mode=WAL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA temp_store=MEMORY",
];

/// The writer's own checkpoint threshold, in pages (4 KiB): see
/// [`Db::connect`].
const WAL_AUTOCHECKPOINT: &str = "PRAGMA wal_autocheckpoint=16384";

/// The page cache of each pooled (reading) SQLite connection: 512 KiB
/// instead of SQLite's 2 MiB. The pages are in the kernel's page cache as
/// well (a miss costs a `pread`, not a disk read), and eight connections
/// would otherwise hold up to 16 MiB of them; the writer keeps the default.
const READER_CACHE: &str = "PRAGMA cache_size=-512";

/// How often the WAL is checkpointed into the database file.
const WAL_CHECKPOINT: std::time::Duration = std::time::Duration::from_secs(1);

/// Checkpoints a SQLite WAL now and then, off the projectors' commit path
/// (a `PASSIVE` checkpoint never blocks the writer or readers; pages still
/// in use are copied on a later round).
async fn checkpoint_wal(pool: AnyPool) {
    let mut tick = tokio::time::interval(WAL_CHECKPOINT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_all(&pool)
            .await
        {
            tracing::debug!(error = %e, "WAL checkpoint failed; retrying on the next round");
        }
    }
}

/// The read-model machinery's own tables (projector checkpoints, projection
/// errors). Its one migration, version 1, predates per-service migrations
/// and also created the first ticket tables; services' migrations live in
/// their crates (`closeloop-directory`, `closeloop-ticketing`, ...).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a server that does not answer yet (refused, unreachable: a
/// database still starting) is tried again before [`Db::connect`] fails.
const CONNECT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);
/// How long one connection attempt may take.
const CONNECT_ATTEMPT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens and closes one connection to `url`, trying again every second
/// for up to [`CONNECT_PATIENCE`] while the server does not answer (I/O
/// errors), and failing at once on anything else (authentication, no
/// such database), with that error.
async fn first_connection(url: &str) -> Result<(), sqlx::Error> {
    let deadline = tokio::time::Instant::now() + CONNECT_PATIENCE;
    loop {
        let error = match tokio::time::timeout(CONNECT_ATTEMPT, AnyConnection::connect(url)).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                return Ok(());
            }
            Ok(Err(e @ sqlx::Error::Io(_))) => e,
            Ok(Err(e)) => return Err(e),
            Err(_) => sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", CONNECT_ATTEMPT.as_secs()),
            )),
        };
        if tokio::time::Instant::now() + std::time::Duration::from_secs(1) >= deadline {
            return Err(error);
        }
        tracing::warn!(url = %redact(url), error = %error, "database not reachable yet; trying again");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

impl Db {
    /// Connects, creating a SQLite file (and its directory) if needed.
    /// Apply the schema with [`Db::migrate`].
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(DbError::UnsupportedUrl(url.to_string()));
        };
        let mut connect_url = url.to_string();
        let mut opts = AnyPoolOptions::new();
        let mut migration_lock = None;
        let mut own_writer = false;
        if backend == Backend::Sqlite {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or_default();
            if path != ":memory:" {
                migration_lock = Some(format!("{path}.migrate-lock"));
                own_writer = true;
            }
            if path != ":memory:"
                && let Some(dir) = Path::new(path).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|source| DbError::CreateDir {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            if !url.contains('?') {
                connect_url.push_str("?mode=rwc");
            }
            // SQLite has one writer at a time; WAL lets readers run beside it.
            // A connection to a local file does not go stale: no ping (a
            // round trip to the connection's thread) before each use.
            opts = opts
                .max_connections(8)
                .test_before_acquire(false)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        for pragma in SQLITE_PRAGMAS.into_iter().chain([READER_CACHE]) {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                        Ok(())
                    })
                });
        } else {
            opts = opts.max_connections(10);
        }
        let connect = |opts: AnyPoolOptions| {
            let connect_url = connect_url.clone();
            async move {
                opts.connect(&connect_url)
                    .await
                    .map_err(|source| DbError::Connect {
                        url: redact(url),
                        source,
                    })
            }
        };
        if backend == Backend::Postgres {
            // The pool retries a failing connection until its acquire
            // timeout and then reports only that it timed out; one
            // connection made first reports why (refused, unknown host,
            // authentication, no such database).
            first_connection(&connect_url)
                .await
                .map_err(|source| DbError::Connect {
                    url: redact(url),
                    source,
                })?;
        }
        // The WAL is checkpointed by a background task (a checkpoint is
        // what fsyncs; on the writer it would stall the commit that crossed
        // the threshold). But only a checkpoint between the writer's
        // transactions lets the WAL start over: under a steady stream of
        // commits the background one never catches the writer, and the WAL
        // would grow without bound (every frame then lands on a newly
        // allocated block, which the kernel zeroes first). So the writer
        // also checkpoints, rarely: when the WAL reaches
        // `WAL_AUTOCHECKPOINT` pages, and then it only copies what the
        // background task has not.
        let pool = connect(opts).await?;
        let (writer, checkpointer) = if own_writer {
            let conn = OwnWriter::open(&connect_url)
                .await
                .map_err(|source| DbError::Connect {
                    url: redact(url),
                    source,
                })?;
            let writer = OwnWriter {
                conn: std::sync::Arc::new(tokio::sync::Mutex::new(Some(conn))),
                url: connect_url.clone(),
            };
            let task = tokio::spawn(checkpoint_wal(pool.clone()));
            (Some(writer), Some(std::sync::Arc::new(AbortOnDrop(task))))
        } else {
            (None, None)
        };
        Ok(Db {
            pool,
            writer,
            backend,
            migration_lock,
            _checkpointer: checkpointer,
        })
    }

    /// Applies `migrator`'s pending migrations (with [`MIGRATOR`], the
    /// read-model machinery's own). Safe when several processes start at
    /// once on one database.
    pub async fn migrate(&self, migrator: &sqlx::migrate::Migrator) -> Result<(), DbError> {
        match &self.migration_lock {
            // SQLite has no advisory locks (sqlx's migrator lock is a no-op
            // there): processes sharing the file take turns through an
            // exclusive lock on a file beside it. PostgreSQL: sqlx takes
            // an advisory lock per database.
            Some(lock) => {
                let guard = lock_file(lock).await?;
                let migrated = migrator.run(&self.pool).await;
                drop(guard);
                migrated?;
            }
            None => migrator.run(&self.pool).await?,
        }
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The connection projectors write through, held until the returned
    /// [`Writer`] is dropped: SQLite's own writer (callers take turns),
    /// else a connection of the pool.
    pub async fn writer(&self) -> Result<Writer<'_>, sqlx::Error> {
        let held = match &self.writer {
            Some(own) => {
                let mut guard = own.conn.lock().await;
                if guard.is_none() {
                    *guard = Some(OwnWriter::open(&own.url).await?);
                }
                Held::Own(guard)
            }
            None => Held::Pooled(self.pool.acquire().await?),
        };
        Ok(Writer { held })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The last stream sequence projector `name` has applied (0: none).
    pub async fn checkpoint(&self, name: &str) -> Result<u64, DbError> {
        let row = sqlx::query("SELECT sequence FROM projector_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get::<i64, _>(0) as u64).unwrap_or(0))
    }

    /// Liveness of the database connection (for `/readyz`).
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// Waits for an exclusive lock on file `path` (created if missing); held
/// until the returned file is dropped. Several processes starting on one
/// SQLite file migrate it one after the other.
async fn lock_file(path: &str) -> Result<std::fs::File, DbError> {
    let path = path.to_string();
    let io = |source: std::io::Error, path: &str| DbError::MigrationLock {
        path: path.to_string(),
        source,
    };
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io(e, &path))?;
        file.lock().map_err(|e| io(e, &path))?;
        Ok(file)
    })
    .await
    .expect("lock task")
}

/// Drops the password from a URL before it goes into an error message.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***@{}", &url[..s], &url[at + 1..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }

    #[tokio::test]
    async fn sqlite_file_is_created_and_migrated_twice_idempotently() {
        let dir = std::env::temp_dir().join(format!("cl-db-{}", std::process::id()));
        let url = format!("sqlite://{}/sub/rm.db", dir.display());
        let db = Db::connect(&url).await.unwrap();
        db.migrate(&MIGRATOR).await.unwrap();
        assert_eq!(db.checkpoint("x").await.unwrap(), 0);
        drop(db);
        let db = Db::connect(&url).await.unwrap();
        db.migrate(&MIGRATOR).await.unwrap();
        db.ping().await.unwrap();
        std::fs::remove_dir_all(dir).ok();
        assert!(matches!(
            Db::connect("mysql://x").await,
            Err(DbError::UnsupportedUrl(_))
        ));
    }

    /// A SQLite file `rm.db` in a directory of its own (named after `tag`
    /// and this process), with one table made by `create`.
    async fn file_db(tag: &str, create: &'static str) -> (std::path::PathBuf, Db) {
        let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        let db = Db::connect(&format!("sqlite://{}", dir.join("rm.db").display()))
            .await
            .unwrap();
        sqlx::query(create)
            .execute(&mut *db.writer().await.unwrap())
            .await
            .unwrap();
        (dir, db)
    }

    /// SQLite's writer is one connection taken in turn; a writer given up
    /// after a failure (left mid-transaction here) is opened again, and
    /// what the abandoned transaction wrote is gone.
    #[tokio::test]
    async fn the_writer_is_taken_in_turn_and_opened_again_after_a_failure() {
        let (dir, db) = file_db("cl-writer", "CREATE TABLE t (id INTEGER PRIMARY KEY)").await;

        let held = db.writer().await.unwrap();
        let second = tokio::spawn({
            let db = db.clone();
            async move {
                let mut w = db.writer().await.unwrap();
                sqlx::query("INSERT INTO t (id) VALUES (2)")
                    .execute(&mut *w)
                    .await
                    .unwrap();
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "a second writer waits for the first");
        drop(held);
        second.await.unwrap();

        let mut w = db.writer().await.unwrap();
        sqlx::query("BEGIN").execute(&mut *w).await.unwrap();
        sqlx::query("INSERT INTO t (id) VALUES (3)")
            .execute(&mut *w)
            .await
            .unwrap();
        w.discard();
        let mut w = db.writer().await.unwrap();
        sqlx::query("INSERT INTO t (id) VALUES (4)")
            .execute(&mut *w)
            .await
            .unwrap();
        drop(w);
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM t ORDER BY id")
            .fetch_all(db.pool())
            .await
            .unwrap();
        assert_eq!(ids, [2, 4]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Under a steady stream of commits the WAL still starts over: it stays
    /// near the writer's checkpoint threshold instead of growing with what
    /// was written.
    #[tokio::test]
    async fn the_wal_stays_bounded_under_steady_writes() {
        let (dir, db) = file_db(
            "cl-wal",
            "CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB NOT NULL)",
        )
        .await;
        let blob = vec![7u8; 4000];
        let mut largest = 0;
        // 3200 transactions of 16 new rows of 4 KB each: 200 MiB through
        // the WAL, with the background checkpoint running beside the writer.
        for t in 0..3200i64 {
            let mut w = db.writer().await.unwrap();
            let mut tx = w.begin().await.unwrap();
            for r in 0..16 {
                sqlx::query("INSERT INTO blobs (id, b) VALUES ($1, $2)")
                    .bind(t * 16 + r)
                    .bind(&blob)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
            let wal = std::fs::metadata(dir.join("rm.db-wal")).map_or(0, |m| m.len());
            largest = largest.max(wal);
        }
        // 16384 pages of 4 KiB plus the frames of the transaction that
        // crossed the threshold.
        assert!(
            largest < 80 * 1024 * 1024,
            "the WAL grew to {} MiB",
            largest / (1024 * 1024)
        );
        drop(db);
        std::fs::remove_dir_all(&dir).ok();
    }
}
