//! `Insert`, the multi-row insert projections write with, on a real SQLite
//! file and a real PostgreSQL database: every row goes in once, a row that
//! would break a unique key (of any of the table's keys, already there or
//! earlier in the same call) is left out and the first one kept, at every
//! statement size; and a statement that fails for another reason fails.
//! And the tables written through it have no `CHECK`, which its SQLite
//! statement (`INSERT OR IGNORE`) would turn into rows silently left out.

use closeloop_readmodel::{Db, Insert, Val};
use closeloop_tests::{Backend, TestDb, dump};
use sqlx::Connection;

const COLUMNS: &[&str] = &["k", "id", "v"];

/// The id written with key `k` in the first call.
fn id(k: i64) -> String {
    format!("id-{k:03}")
}

fn rows(keys: impl IntoIterator<Item = (i64, String)>, v: &str) -> Insert {
    let mut ins = Insert::new("facts", COLUMNS);
    for (k, id) in keys {
        ins.rows.push(vec![Val::I(k), Val::S(id), Val::from(v)]);
    }
    ins
}

async fn leaves_out_rows_already_there(backend: Backend) {
    sqlx::any::install_default_drivers();
    let t = TestDb::new(backend).await;
    // The writer projections use (on SQLite, its own connection with the
    // install's settings).
    let db = Db::connect(&t.url).await.unwrap();
    let mut conn = db.writer().await.unwrap();
    sqlx::query(
        "CREATE TABLE facts (k BIGINT NOT NULL PRIMARY KEY, id TEXT NOT NULL UNIQUE, \
         v TEXT NOT NULL)",
    )
    .execute(&mut *conn)
    .await
    .unwrap();

    // 300 rows: three statements of 100.
    rows((0..300).map(|k| (k, id(k))), "first")
        .write(&mut conn)
        .await
        .unwrap();
    // 7 rows (statements of 4, 2 and 1) in one transaction: two keys
    // already there, an id already there under a new key, a key repeated
    // within the call, and three new rows.
    let mut tx = conn.begin().await.unwrap();
    rows(
        [
            (5, "id-new-a".into()),
            (300, id(300)),
            (299, id(299)),
            (301, id(7)),
            (302, id(302)),
            (302, "id-new-b".into()),
            (303, id(303)),
        ],
        "second",
    )
    .write(&mut tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let got = dump(db.pool(), "SELECT k, id, v FROM facts ORDER BY k".into()).await;
    let mut want: Vec<String> = (0..300).map(|k| format!("{k}|{}|first", id(k))).collect();
    for k in [300, 302, 303] {
        want.push(format!("{k}|{}|second", id(k)));
    }
    assert_eq!(got, want);

    // Anything else still fails: a table that is not there.
    let mut err = Insert::new("no_such_table", COLUMNS);
    err.rows
        .push(vec![Val::I(1), Val::from("x"), Val::from("y")]);
    assert!(err.write(&mut conn).await.is_err());
}

#[tokio::test]
async fn leaves_out_rows_already_there_on_sqlite() {
    leaves_out_rows_already_there(Backend::Sqlite).await;
}

#[tokio::test]
async fn leaves_out_rows_already_there_on_postgres() {
    leaves_out_rows_already_there(Backend::Postgres).await;
}

/// The tables projections write through `Insert`: the analytics facts
/// (`closeloop_analytics::view`) and the ticket activity
/// (`closeloop_ticketing::projection`). A new writer's table goes here.
fn written_through_insert() -> Vec<&'static str> {
    let mut tables = closeloop_analytics::tables::BASE.to_vec();
    tables.push("ticket_activity");
    tables
}

#[tokio::test]
async fn tables_written_through_it_have_no_check() {
    sqlx::any::install_default_drivers();
    let t = TestDb::new(Backend::Sqlite).await;
    let db = Db::connect(&t.url).await.unwrap();
    let set = closeloop_runtime::MigrationSet::of([
        &closeloop_readmodel::MIGRATOR,
        &closeloop_analytics::MIGRATOR,
    ])
    .unwrap();
    db.migrate(&set.migrator().await.unwrap()).await.unwrap();
    for table in written_through_insert() {
        let ddl = dump(
            db.pool(),
            format!("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = '{table}'"),
        )
        .await;
        assert_eq!(ddl.len(), 1, "{table} is not there");
        assert!(
            !ddl[0].to_uppercase().contains("CHECK"),
            "{table} has a CHECK, which Insert's INSERT OR IGNORE on SQLite would turn into \
             rows silently left out: {}",
            ddl[0]
        );
    }
}
