//! `Insert`, the multi-row insert projections write with, on a real SQLite
//! file and a real PostgreSQL database: every row goes in once, a row that
//! would break a unique key (of any of the table's keys, already there or
//! earlier in the same call) is left out and the first one kept, at every
//! statement size; and a statement that fails for another reason fails.
//! And no table has a `CHECK`, which its SQLite statement (`INSERT OR
//! IGNORE`) would turn into rows silently left out.

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

/// No table of any crate's migrations has a `CHECK`: `Insert`'s SQLite
/// statement (`INSERT OR IGNORE`) would turn a row breaking one into a row
/// silently left out. Every table is checked, not only those written
/// through `Insert` today, so a new writer cannot miss this. A table that
/// is never written through it and needs a `CHECK` would have to be named
/// here as an exception; none is today.
#[tokio::test]
async fn no_table_has_a_check() {
    sqlx::any::install_default_drivers();
    let t = TestDb::new(Backend::Sqlite).await;
    let db = Db::connect(&t.url).await.unwrap();
    let set = closeloop_runtime::MigrationSet::of(
        closeloop_tests::migrators().into_iter().map(|(_, m, _)| m),
    )
    .unwrap();
    db.migrate(&set.migrator().await.unwrap()).await.unwrap();
    let tables = dump(
        db.pool(),
        "SELECT name || '|' || sql FROM sqlite_master WHERE type = 'table'".into(),
    )
    .await;
    // Those written through it today: the analytics facts, the ticket activity.
    let written = closeloop_analytics::tables::BASE
        .into_iter()
        .chain(["ticket_activity"]);
    for written in written {
        assert!(
            tables.iter().any(|t| t.starts_with(&format!("{written}|"))),
            "{written} is not among the tables checked: {tables:?}"
        );
    }
    for table in tables {
        assert!(
            !has_check(&table),
            "a table has a CHECK, which Insert's INSERT OR IGNORE on SQLite would turn into \
             rows silently left out: {table}"
        );
    }
}

/// Whether DDL text holds a `CHECK (` constraint (the keyword, not a name
/// holding it, such as `projector_checkpoints`).
fn has_check(ddl: &str) -> bool {
    let upper = ddl.to_uppercase();
    upper.match_indices("CHECK").any(|(at, _)| {
        let before = upper[..at].chars().next_back();
        let after = upper[at + 5..].trim_start().chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_') && after == Some('(')
    })
}

#[test]
fn a_check_is_told_from_a_name_holding_the_word() {
    assert!(has_check("CREATE TABLE t (a INTEGER CHECK (a > 0))"));
    assert!(has_check("CREATE TABLE t (a INTEGER,\n check(a > 0))"));
    assert!(!has_check(
        "CREATE TABLE projector_checkpoints (name TEXT PRIMARY KEY, sequence INTEGER)"
    ));
    assert!(!has_check("CREATE TABLE t (checked INTEGER, rechecks(x))"));
}
