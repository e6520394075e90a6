//! The projector against a real nats-server and database: replicas of one
//! projection on one database (PostgreSQL, or processes sharing a SQLite
//! file) apply every event exactly once, whichever of them gets it.

use std::time::{Duration, Instant, SystemTime};

use closeloop_eventstore::{Envelope, EventContext, EventStore, Prefix, StoreConfig, StoredEvent};
use closeloop_readmodel::{Db, MIGRATOR, Projection, ProjectionError, run_projector};
use closeloop_tests::{Backend, Nats, TestDb, unique_prefix};
use futures::StreamExt;
use sqlx::{AnyConnection, Row};

/// Counts events in a way that shows a second application: a counter that
/// only goes up and a row per application, tagged with the replica.
struct Counting {
    replica: &'static str,
}

impl Projection for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn filter(&self, prefix: &Prefix) -> String {
        prefix.aggregate_filter("count")
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        sqlx::query("UPDATE counted SET n = n + 1")
            .execute(&mut *conn)
            .await?;
        sqlx::query("INSERT INTO applied (sequence, replica) VALUES ($1, $2)")
            .bind(event.sequence as i64)
            .bind(self.replica)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

async fn replicas_apply_each_event_once(backend: Backend) {
    const EVENTS: usize = 1500;
    let nats = Nats::start();
    let db = TestDb::new(backend).await;
    let prefix = Prefix::parse(&unique_prefix()).unwrap();
    let store = EventStore::open(
        nats.client().await,
        StoreConfig {
            prefix: prefix.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let a = Db::connect(&db.url).await.unwrap();
    a.migrate(&MIGRATOR).await.unwrap();
    for ddl in [
        "CREATE TABLE counted (n BIGINT NOT NULL)",
        "INSERT INTO counted (n) VALUES (0)",
        "CREATE TABLE applied (sequence BIGINT NOT NULL, replica TEXT NOT NULL)",
    ] {
        sqlx::query(ddl).execute(a.pool()).await.unwrap();
    }
    let b = Db::connect(&db.url).await.unwrap();

    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut progress = Vec::new();
    let mut tasks = Vec::new();
    for (db, replica) in [(a.clone(), "a"), (b.clone(), "b")] {
        let (tx, rx) = tokio::sync::watch::channel(0);
        progress.push(rx);
        let mut stop = stop_tx.subscribe();
        tasks.push(tokio::spawn(run_projector(
            db,
            store.clone(),
            Counting { replica },
            tx,
            Default::default(),
            async move {
                let _ = stop.recv().await;
            },
        )));
    }

    // Appended 16 at a time while both replicas follow.
    let ctx = EventContext {
        actor: String::new(),
        correlation_id: "c".into(),
        causation_id: "c".into(),
        traceparent: None,
    };
    let last = futures::stream::iter(0..EVENTS)
        .map(|i| {
            let store = store.clone();
            let ctx = ctx.clone();
            let prefix = prefix.clone();
            async move {
                let env = Envelope::protobuf(
                    &format!("count-{i}"),
                    "closeloop.test.Counted",
                    SystemTime::now(),
                    &ctx,
                );
                let subject = prefix.aggregate_subject("count", &format!("c{i}"));
                store
                    .append(&subject, 0, &env, bytes::Bytes::from_static(b"x"))
                    .await
                    .unwrap()
                    .sequence
            }
        })
        .buffer_unordered(16)
        .fold(0, |m, s| async move { m.max(s) })
        .await;

    // Both replicas get to the end: each saw every batch, and applied it
    // or found it applied (which of them applied how much is up to the
    // race; with the claim's guard removed, each applies every event and
    // the counts below double).
    let deadline = Instant::now() + Duration::from_secs(60);
    for p in &mut progress {
        while *p.borrow_and_update() < last {
            assert!(Instant::now() < deadline, "a replica did not catch up");
            let _ = tokio::time::timeout(Duration::from_millis(200), p.changed()).await;
        }
    }
    let _ = stop_tx.send(());
    for t in tasks {
        t.await.unwrap();
    }

    let n: i64 = sqlx::query("SELECT n FROM counted")
        .fetch_one(a.pool())
        .await
        .unwrap()
        .get(0);
    let row = sqlx::query("SELECT COUNT(*), COUNT(DISTINCT sequence) FROM applied")
        .fetch_one(a.pool())
        .await
        .unwrap();
    let (rows, distinct): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(
        (n, rows, distinct),
        (EVENTS as i64, EVENTS as i64, EVENTS as i64),
        "every event applied exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_postgres_apply_each_event_once() {
    replicas_apply_each_event_once(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_sqlite_file_apply_each_event_once() {
    replicas_apply_each_event_once(Backend::Sqlite).await;
}
