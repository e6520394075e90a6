//! The projector against a real nats-server and database: replicas of one
//! projection on one database (PostgreSQL, or processes sharing a SQLite
//! file) apply every event exactly once, whichever of them gets it; a
//! fan-out feeds several projections from one reader of the stream.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use closeloop_eventstore::{Envelope, EventContext, EventStore, Prefix, StoredEvent};
use closeloop_readmodel::{
    Db, Fanout, MIGRATOR, Pending, Projection, ProjectionError, run_projector,
};
use closeloop_tests::{Backend, Nats, TestDb, event_store};
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

/// A nats-server of the test's own, a fresh database, and the event store
/// under a prefix of the test's own.
async fn broker_and_database(backend: Backend) -> (Nats, TestDb, Prefix, EventStore) {
    let nats = Nats::start();
    let db = TestDb::new(backend).await;
    let (prefix, store) = event_store(&nats).await;
    (nats, db, prefix, store)
}

async fn replicas_apply_each_event_once(backend: Backend) {
    const EVENTS: usize = 1500;
    let (_nats, db, prefix, store) = broker_and_database(backend).await;
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

/// Records each event it applies, tagged with its kind, so a second
/// application or an event of another kind shows.
struct Tagged {
    name: &'static str,
    kind: &'static str,
}

impl Projection for Tagged {
    fn name(&self) -> &'static str {
        self.name
    }

    fn filter(&self, prefix: &Prefix) -> String {
        prefix.aggregate_filter(self.kind)
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        sqlx::query("INSERT INTO tagged (projection, sequence, subject) VALUES ($1, $2, $3)")
            .bind(self.kind)
            .bind(event.sequence as i64)
            .bind(event.subject.as_str())
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

/// Appends `n` events, round robin over kinds `a`, `b` and `c`; returns the
/// last sequence of each kind.
async fn append_kinds(store: &EventStore, prefix: &Prefix, from: usize, n: usize) -> [u64; 3] {
    let ctx = EventContext {
        actor: String::new(),
        correlation_id: "c".into(),
        causation_id: "c".into(),
        traceparent: None,
    };
    let mut last = [0; 3];
    for i in from..from + n {
        let k = i % 3;
        let env = Envelope::protobuf(
            &format!("tagged-{i}"),
            "closeloop.test.Tagged",
            SystemTime::now(),
            &ctx,
        );
        let kind = ["a", "b", "c"][k];
        let subject = prefix.aggregate_subject(kind, &format!("x{i}"));
        last[k] = store
            .append(&subject, 0, &env, bytes::Bytes::from_static(b"x"))
            .await
            .unwrap()
            .sequence;
    }
    last
}

/// Runs a fan-out of `kinds` (one reader of the whole stream) on each of
/// `dbs` until every member has applied `until` of its kind and says
/// nothing is pending, then stops it.
async fn fan_out_until(
    store: &EventStore,
    dbs: &[Db],
    kinds: &[(&'static str, &'static str)],
    until: [u64; 3],
) {
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut watched = Vec::new();
    let mut tasks = Vec::new();
    for db in dbs {
        let mut fan = Fanout::new(db.clone(), store.clone(), store.prefix().events_filter());
        for &(name, kind) in kinds {
            let (tx, rx) = tokio::sync::watch::channel(0);
            let pending = Pending::default();
            let target = until[if kind == "a" { 0 } else { 1 }];
            watched.push((rx, pending.clone(), target));
            let mut stop = stop_tx.subscribe();
            tasks.push(tokio::spawn(fan.member(
                Tagged { name, kind },
                tx,
                pending,
                async move {
                    let _ = stop.recv().await;
                },
            )));
        }
        let mut stop = stop_tx.subscribe();
        tasks.push(tokio::spawn(fan.reader(async move {
            let _ = stop.recv().await;
        })));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for (p, pending, target) in &mut watched {
        while *p.borrow_and_update() < *target || pending.load(Ordering::Relaxed) > 0 {
            assert!(Instant::now() < deadline, "a member did not catch up");
            let _ = tokio::time::timeout(Duration::from_millis(100), p.changed()).await;
        }
    }
    let _ = stop_tx.send(());
    for t in tasks {
        t.await.unwrap();
    }
}

/// A fan-out hands each member the events of its filter and nothing else,
/// once: a member that joins later catches up from the start while one
/// already there skips what it has applied, also with two replicas of the
/// fan-out on one database; events no member follows are read and left.
async fn fan_out_feeds_each_projection_its_own_events_once(backend: Backend) {
    let (_nats, db, prefix, store) = broker_and_database(backend).await;
    let one = Db::connect(&db.url).await.unwrap();
    one.migrate(&MIGRATOR).await.unwrap();
    sqlx::query(
        "CREATE TABLE tagged (projection TEXT NOT NULL, sequence BIGINT NOT NULL, subject TEXT NOT NULL)",
    )
    .execute(one.pool())
    .await
    .unwrap();
    let two = Db::connect(&db.url).await.unwrap();

    // Only `a` follows at first.
    let first = append_kinds(&store, &prefix, 0, 1_500).await;
    fan_out_until(&store, std::slice::from_ref(&one), &[("fan_a", "a")], first).await;
    // Then `b` joins (from the start) while `a` resumes, on two replicas.
    let second = append_kinds(&store, &prefix, 1_500, 900).await;
    fan_out_until(
        &store,
        &[one.clone(), two],
        &[("fan_a", "a"), ("fan_b", "b")],
        second,
    )
    .await;

    for (kind, n) in [("a", 800), ("b", 800)] {
        let row = sqlx::query(
            "SELECT COUNT(*), COUNT(DISTINCT sequence), \
             SUM(CASE WHEN subject LIKE $1 THEN 1 ELSE 0 END) FROM tagged WHERE projection = $2",
        )
        .bind(format!("{prefix}.events.{kind}.%"))
        .bind(kind)
        .fetch_one(one.pool())
        .await
        .unwrap();
        let got: (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(
            got,
            (n, n, n),
            "projection {kind}: every event of its own kind, once"
        );
    }
    for (name, last) in [("fan_a", second[0]), ("fan_b", second[1])] {
        assert_eq!(
            one.checkpoint(name).await.unwrap(),
            last,
            "{name}'s checkpoint"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_on_postgres_feeds_each_projection_its_own_events_once() {
    fan_out_feeds_each_projection_its_own_events_once(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_on_sqlite_feeds_each_projection_its_own_events_once() {
    fan_out_feeds_each_projection_its_own_events_once(Backend::Sqlite).await;
}
