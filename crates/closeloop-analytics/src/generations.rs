//! Rebuilding the analytics views without downtime. The fact tables come in
//! generations ([`Tables`]); exactly one is `active` and read. A rebuild
//! adds a `building` generation: its tables are created empty and its
//! projections follow the stream from the start, beside the active ones.
//! When every one of its projections has reached the active generation's
//! position, the switch makes it `active` and the old one `retired` in one
//! transaction: readers take the active generation per request, so a report
//! is answered from one generation or the other, never from a half-built
//! one. Retired tables are dropped when the next rebuild starts (by then no
//! replica still writes them).
//!
//! Every process running the analytics role runs the projections of the
//! active and building generations ([`crate::role`]), so a rebuild goes on
//! after a restart, and any replica may make the switch (it is one
//! conditional update).

use closeloop_readmodel::{Db, DbError};

use crate::facts::checkpoints;
use sqlx::Row as _;

use crate::tables::Tables;
use crate::view::ALL;

/// A generation as the registry has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub generation: i64,
    /// `building`, `active`, `retired` or `dropped`.
    pub state: String,
    pub started_at: i64,
    pub switched_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(
        "generation {0} is still being built: wait for it to switch over (closeloop projections status)"
    )]
    AlreadyBuilding(i64),
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

/// The generation readers use.
pub async fn active(db: &Db) -> Result<Tables, sqlx::Error> {
    let g: Option<i64> =
        sqlx::query_scalar("SELECT generation FROM analytics_generations WHERE state = 'active'")
            .fetch_optional(db.pool())
            .await?;
    Ok(Tables::of(g.unwrap_or(0)))
}

/// Every generation, oldest first.
pub async fn list(db: &Db) -> Result<Vec<Generation>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT generation, state, started_at, switched_at FROM analytics_generations \
         ORDER BY generation",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Generation {
                generation: r.try_get(0)?,
                state: r.try_get(1)?,
                started_at: r.try_get(2)?,
                switched_at: r.try_get(3)?,
            })
        })
        .collect()
}

/// Starts a rebuild: drops retired generations' tables, then creates the
/// next generation's, empty, in state `building`. Refused while another
/// rebuild is building.
pub async fn start_rebuild(db: &Db, now: i64) -> Result<i64, RebuildError> {
    let all = list(db).await?;
    if let Some(b) = all.iter().find(|g| g.state == "building") {
        return Err(RebuildError::AlreadyBuilding(b.generation));
    }
    for g in all.iter().filter(|g| g.state == "retired") {
        let t = Tables::of(g.generation);
        let mut tx = db.pool().begin().await?;
        for table in t.all() {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}")))
                .execute(&mut *tx)
                .await?;
        }
        for base in ALL {
            sqlx::query("DELETE FROM projector_checkpoints WHERE name = $1")
                .bind(t.checkpoint(base))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE analytics_generations SET state = 'dropped' WHERE generation = $1")
            .bind(g.generation)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(
            generation = g.generation,
            "analytics: dropped a retired generation"
        );
    }
    let next = all.iter().map(|g| g.generation).max().unwrap_or(0) + 1;
    let t = Tables::of(next);
    let mut tx = db.pool().begin().await?;
    // The primary key refuses a second rebuild started at the same time.
    sqlx::query(
        "INSERT INTO analytics_generations (generation, state, started_at, switched_at) \
         VALUES ($1, 'building', $2, 0)",
    )
    .bind(next)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(t.ddl()))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(generation = next, "analytics: rebuilding the views");
    Ok(next)
}

/// Whether building generation `g` has caught up with the active one: each
/// of its projections has reached the active one's position.
pub async fn caught_up(db: &Db, g: i64) -> Result<bool, DbError> {
    let active = checkpoints(db, &active(db).await?).await?;
    let building = checkpoints(db, &Tables::of(g)).await?;
    Ok(building.iter().zip(active).all(|(b, a)| *b >= a))
}

/// Makes building generation `g` the active one and retires the old one,
/// in one transaction; `false` when `g` is not building (another replica
/// switched it).
pub async fn switch(db: &Db, g: i64, now: i64) -> Result<bool, sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    let n = sqlx::query(
        "UPDATE analytics_generations SET state = 'active', switched_at = $2 \
         WHERE generation = $1 AND state = 'building'",
    )
    .bind(g)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE analytics_generations SET state = 'retired' \
         WHERE state = 'active' AND generation <> $1",
    )
    .bind(g)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(
        generation = g,
        "analytics: switched the views to a rebuilt generation"
    );
    Ok(true)
}
