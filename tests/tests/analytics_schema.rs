//! The analytics fact tables' schema: generation 0 (made by migrations)
//! and the generations a rebuild makes (from `fact_tables.sql`) are the
//! same tables, and migration 5002 (the event tables keyed by sequence)
//! keeps every row of an install that had the earlier keys. On SQLite and
//! PostgreSQL.

use closeloop_analytics::tables::Tables;
use closeloop_readmodel::{Backend, Db};
use closeloop_runtime::MigrationSet;
use closeloop_tests::{Backend as TestBackend, TestDb};

/// A table as the database describes it, names of indexes and of the
/// table itself left out: each column (`name|type|not null|part of the
/// primary key`), then each index (unique, its columns).
async fn shape(db: &Db, table: &str) -> (Vec<String>, Vec<String>) {
    use closeloop_tests::dump;
    let pool = db.pool();
    // Table names are the tests' own constants.
    let (columns, mut indexes) = match db.backend() {
        Backend::Sqlite => {
            let columns = dump(
                pool,
                format!(
                    "SELECT name, upper(type), \"notnull\", pk FROM pragma_table_info('{table}') \
                     ORDER BY cid"
                ),
            )
            .await;
            let mut indexes = Vec::new();
            for index in dump(
                pool,
                format!("SELECT name, \"unique\" FROM pragma_index_list('{table}')"),
            )
            .await
            {
                let (name, unique) = index.split_once('|').unwrap();
                let cols = dump(
                    pool,
                    format!("SELECT name FROM pragma_index_info('{name}') ORDER BY seqno"),
                )
                .await;
                indexes.push(format!("unique={unique} ({})", cols.join(", ")));
            }
            (columns, indexes)
        }
        Backend::Postgres => {
            let columns = dump(
                pool,
                format!(
                    "SELECT c.column_name::text, c.data_type::text, c.is_nullable::text, \
                     EXISTS (SELECT 1 FROM information_schema.table_constraints t \
                       JOIN information_schema.key_column_usage k \
                         ON k.constraint_name = t.constraint_name AND k.table_name = t.table_name \
                       WHERE t.table_name = c.table_name AND t.constraint_type = 'PRIMARY KEY' \
                         AND k.column_name = c.column_name)::int \
                     FROM information_schema.columns c WHERE c.table_name = '{table}' \
                     ORDER BY c.ordinal_position"
                ),
            )
            .await;
            let indexes = dump(
                pool,
                format!("SELECT indexdef::text FROM pg_indexes WHERE tablename = '{table}'"),
            )
            .await
            .into_iter()
            .map(|def| {
                // "CREATE [UNIQUE] INDEX <name> ON <schema>.<table> USING btree (<columns>)"
                let unique = def.starts_with("CREATE UNIQUE");
                let cols = def.rsplit_once(" (").map(|(_, c)| c).unwrap_or_default();
                format!("unique={} ({}", i32::from(unique), cols)
            })
            .collect();
            (columns, indexes)
        }
    };
    indexes.sort();
    (columns, indexes)
}

/// Applies the read-model machinery's migrations and `analytics`, as a
/// process running the analytics role does.
async fn migrate(db: &Db, analytics: &sqlx::migrate::Migrator) {
    let set = MigrationSet::of([&closeloop_readmodel::MIGRATOR, analytics]).unwrap();
    db.migrate(&set.migrator().await.unwrap()).await.unwrap();
}

async fn migrated(backend: TestBackend) -> (TestDb, Db) {
    let t = TestDb::new(backend).await;
    let db = Db::connect(&t.url).await.unwrap();
    migrate(&db, &closeloop_analytics::MIGRATOR).await;
    (t, db)
}

async fn generations_match(backend: TestBackend) {
    let (_t, db) = migrated(backend).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(Tables::of(1).ddl()))
        .execute(db.pool())
        .await
        .unwrap();
    let (zero, one) = (Tables::of(0), Tables::of(1));
    for (a, b) in zero.all().into_iter().zip(one.all()) {
        let (sa, sb) = (shape(&db, a).await, shape(&db, b).await);
        assert!(!sa.0.is_empty(), "{a} has no columns");
        assert_eq!(sa, sb, "{a} (migrations) and {b} (fact_tables.sql) differ");
    }
    // The event tables are keyed by sequence alone (not null), and none of
    // them has an index on an id column: ids come in no useful order.
    for table in [
        "analytics_ticket_events",
        "analytics_responses",
        "analytics_accounts",
        "analytics_sla_events",
    ] {
        let (columns, indexes) = shape(&db, table).await;
        // name|type|not null (SQLite: 1) or nullable (PostgreSQL: NO)|key
        let keyed: Vec<_> = columns.iter().filter(|c| c.ends_with("|1")).collect();
        assert_eq!(keyed.len(), 1, "{table}: {columns:?}");
        assert!(
            keyed[0].starts_with("sequence|")
                && !keyed[0].contains("|0|")
                && !keyed[0].contains("|YES|"),
            "{table}: {columns:?}"
        );
        assert!(
            indexes.iter().all(|i| !i.contains("_id")),
            "{table}: {indexes:?}"
        );
    }
}

#[tokio::test]
async fn every_generation_has_the_tables_the_migrations_give_generation_0_sqlite() {
    generations_match(TestBackend::Sqlite).await;
}

#[tokio::test]
async fn every_generation_has_the_tables_the_migrations_give_generation_0_postgres() {
    generations_match(TestBackend::Postgres).await;
}

/// Rows an install wrote under the earlier keys, one per table the
/// migration rebuilds: (table, columns, values).
const OLD_ROWS: [(&str, &str, &str); 4] = [
    (
        "analytics_ticket_events",
        "ticket_id, sequence, at, kind, owner_email, root_cause_words, actions_words, opportunity",
        "('t-1', 7, 100, 'opened', 'o@example.com', 0, 0, 0), \
         ('t-1', 9, 200, 'closed', '', 16, 20, 1), ('t-2', 8, 150, 'opened', 'p@example.com', 0, 0, 0)",
    ),
    (
        "analytics_responses",
        "feedback_id, sequence, at, applied, revision_key, response_id, program_id, account_id, \
         submitted_at, answers",
        "('f-1', 3, 90, 0, 80, 'r-1', 'nps', 'acme', 70, '{\"nps\":3}'), \
         ('f-1', 5, 95, 1, 85, 'r-1', 'nps', 'acme', 70, '{\"nps\":9}')",
    ),
    (
        "analytics_accounts",
        "account_id, sequence, at, region, segment, team",
        "('acme', 1, 10, 'emea', 'enterprise', '{\"csm\":\"c@example.com\"}'), \
         ('acme', 2, 20, 'amer', 'enterprise', '{}')",
    ),
    (
        "analytics_sla_events",
        "ticket_id, sequence, at, kind, clock, detail",
        "('t-1', 11, 300, 'warned', 'closure', 75), ('t-1', 12, 400, 'escalated', '', 1)",
    ),
];

async fn upgrade_keeps_rows(backend: TestBackend) {
    let t = TestDb::new(backend).await;
    let db = Db::connect(&t.url).await.unwrap();
    // The analytics migrations as an install before 5002 had them.
    let earlier = tempfile::tempdir().unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/closeloop-analytics/migrations");
    let mut copied = 0;
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let version: u32 = name.split('_').next().unwrap().parse().unwrap();
        if version < 5002 {
            std::fs::copy(&path, earlier.path().join(&name)).unwrap();
            copied += 1;
        }
    }
    assert_eq!(copied, 2);
    let before = sqlx::migrate::Migrator::new(earlier.path()).await.unwrap();
    migrate(&db, &before).await;
    let pool = db.pool();
    for (table, columns, values) in OLD_ROWS {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} ({columns}) VALUES {values}"
        )))
        .execute(pool)
        .await
        .unwrap();
    }
    let dump = |table: &str, columns: &str| {
        closeloop_tests::dump(
            pool,
            format!("SELECT {columns} FROM {table} ORDER BY sequence"),
        )
    };
    let mut rows = Vec::new();
    for (table, columns, _) in OLD_ROWS {
        rows.push(dump(table, columns).await);
    }

    migrate(&db, &closeloop_analytics::MIGRATOR).await;
    for ((table, columns, _), before) in OLD_ROWS.into_iter().zip(rows) {
        assert!(!before.is_empty());
        assert_eq!(dump(table, columns).await, before, "{table}");
    }
    // Keyed by sequence now: a row at a sequence already there is left out
    // (whatever its id), a new sequence goes in.
    let inserted = sqlx::query(
        "INSERT INTO analytics_sla_events (ticket_id, sequence, at, kind, clock, detail) \
         VALUES ('t-9', 11, 1, 'breached', 'closure', 0), ('t-9', 13, 1, 'breached', 'closure', 0) \
         ON CONFLICT DO NOTHING",
    )
    .execute(pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(inserted, 1);
    // (That generation 0 then has the shape of `fact_tables.sql` is
    // `generations_match`: a fresh database runs the same migrations.)
}

#[tokio::test]
async fn the_sequence_keys_migration_keeps_every_row_sqlite() {
    upgrade_keeps_rows(TestBackend::Sqlite).await;
}

#[tokio::test]
async fn the_sequence_keys_migration_keeps_every_row_postgres() {
    upgrade_keeps_rows(TestBackend::Postgres).await;
}
