//! The facts of the active generation as they stand now, kept in memory
//! and brought up to date before each report by reading only the rows
//! added since (by stream sequence, up to each projection's checkpoint, so
//! a projection's batch is seen whole or not at all). A report evaluated as
//! of a time at or after the latest recorded fact reads these (its answer
//! is the same as folding the tables as of that time: nothing recorded
//! after it exists); a report as of an earlier time reads the tables
//! ([`crate::facts`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use closeloop_readmodel::Db;
use sqlx::Row as _;
use tokio::sync::{RwLock, RwLockReadGuard};

use crate::facts::{
    AccountFact, EVENT_COLUMNS, ResponseFact, TICKET_COLUMNS, TicketFold, event_row, ticket_row,
};
use crate::tables::Tables;
use crate::view::ALL;

/// What the cache holds: the facts at their newest.
#[derive(Debug, Default)]
pub struct Facts {
    pub generation: i64,
    /// The checkpoint each projection's rows were read up to, in
    /// [`ALL`] order.
    pub synced: [i64; 5],
    /// The latest time any fact was recorded.
    pub max_at: i64,
    pub tickets: TicketFold,
    pub responses: Vec<ResponseFact>,
    /// Feedback id → (index in `responses`, its revision key, sequence).
    response_index: HashMap<String, (usize, i64, i64)>,
    pub accounts: Arc<HashMap<String, AccountFact>>,
    pub unmatched: Arc<HashSet<String>>,
}

/// The cache of one process.
#[derive(Default)]
pub struct Cache {
    facts: RwLock<Facts>,
}

impl Cache {
    /// Brings the facts of generation `t` up to the projections'
    /// checkpoints and returns them, read-locked (updates wait for the
    /// report).
    pub async fn current(
        &self,
        db: &Db,
        t: &Tables,
    ) -> Result<RwLockReadGuard<'_, Facts>, sqlx::Error> {
        let mut positions = [0i64; 5];
        for (i, base) in ALL.iter().enumerate() {
            positions[i] =
                sqlx::query_scalar("SELECT sequence FROM projector_checkpoints WHERE name = $1")
                    .bind(t.checkpoint(base))
                    .fetch_optional(db.pool())
                    .await?
                    .unwrap_or(0);
        }
        {
            let f = self.facts.read().await;
            if f.generation == t.generation && f.synced == positions {
                return Ok(f);
            }
        }
        let mut f = self.facts.write().await;
        if f.generation != t.generation {
            *f = Facts {
                generation: t.generation,
                ..Facts::default()
            };
        }
        sync(db, t, &mut f, positions).await?;
        Ok(f.downgrade())
    }
}

/// Rows of `table` with `from < sequence <= to`, in stream order.
async fn rows(
    db: &Db,
    columns: &str,
    table: &str,
    from: i64,
    to: i64,
) -> Result<Vec<sqlx::any::AnyRow>, sqlx::Error> {
    if to <= from {
        return Ok(Vec::new());
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM {table} WHERE sequence > $1 AND sequence <= $2 ORDER BY sequence"
    )))
    .bind(from)
    .bind(to)
    .fetch_all(db.pool())
    .await
}

async fn sync(db: &Db, t: &Tables, f: &mut Facts, to: [i64; 5]) -> Result<(), sqlx::Error> {
    // Tickets (with their `at`: the opening).
    let (from, upto) = (f.synced[0], to[0]);
    for r in &rows(db, TICKET_COLUMNS, &t.tickets, from, upto).await? {
        let row = ticket_row(r)?;
        f.max_at = f.max_at.max(row.opened_at);
        f.tickets.open(row);
    }
    for r in &rows(db, EVENT_COLUMNS, &t.ticket_events, from, upto).await? {
        let e = event_row(r)?;
        f.max_at = f.max_at.max(e.at);
        f.tickets.event(e);
    }
    // SLA: due times, then marks.
    let (from, upto) = (f.synced[1], to[1]);
    for r in &rows(
        db,
        "ticket_id, fc_due, close_due, at",
        &t.sla_due,
        from,
        upto,
    )
    .await?
    {
        let id: String = r.try_get(0)?;
        f.max_at = f.max_at.max(r.try_get(3)?);
        f.tickets.due(&id, r.try_get(1)?, r.try_get(2)?);
    }
    for r in &rows(
        db,
        "ticket_id, kind, clock, detail, at",
        &t.sla_events,
        from,
        upto,
    )
    .await?
    {
        let id: String = r.try_get(0)?;
        let clock: String = r.try_get(2)?;
        f.max_at = f.max_at.max(r.try_get(4)?);
        f.tickets.mark(&id, r.try_get(1)?, &clock, r.try_get(3)?);
    }
    // Responses: each one's latest applied revision.
    let (from, upto) = (f.synced[2], to[2]);
    for r in &rows(
        db,
        "feedback_id, response_id, program_id, account_id, submitted_at, answers, applied, \
         revision_key, sequence, at",
        &t.responses,
        from,
        upto,
    )
    .await?
    {
        f.max_at = f.max_at.max(r.try_get(9)?);
        let applied: i32 = r.try_get(6)?;
        if applied == 0 {
            continue;
        }
        let key: (i64, i64) = (r.try_get(7)?, r.try_get(8)?);
        let answers: String = r.try_get(5)?;
        let fact = ResponseFact {
            feedback_id: r.try_get(0)?,
            response_id: r.try_get(1)?,
            program_id: r.try_get(2)?,
            account_id: r.try_get(3)?,
            submitted_at: r.try_get(4)?,
            answers: serde_json::from_str(&answers).unwrap_or_default(),
        };
        match f.response_index.get_mut(&fact.feedback_id) {
            Some((i, rk, seq)) => {
                if key > (*rk, *seq) {
                    (*rk, *seq) = key;
                    f.responses[*i] = fact;
                }
            }
            None => {
                f.response_index
                    .insert(fact.feedback_id.clone(), (f.responses.len(), key.0, key.1));
                f.responses.push(fact);
            }
        }
    }
    // Accounts: their latest version.
    let (from, upto) = (f.synced[3], to[3]);
    let accounts = rows(
        db,
        "account_id, region, segment, team, at",
        &t.accounts,
        from,
        upto,
    )
    .await?;
    if !accounts.is_empty() {
        let map = Arc::make_mut(&mut f.accounts);
        for r in &accounts {
            let team: String = r.try_get(3)?;
            f.max_at = f.max_at.max(r.try_get(4)?);
            map.insert(
                r.try_get(0)?,
                AccountFact {
                    region: r.try_get(1)?,
                    segment: r.try_get(2)?,
                    team: serde_json::from_str(&team).unwrap_or_default(),
                },
            );
        }
    }
    // Routing: responses that matched no workflow.
    let (from, upto) = (f.synced[4], to[4]);
    let routed = rows(db, "feedback_id, unmatched, at", &t.routing, from, upto).await?;
    if !routed.is_empty() {
        let set = Arc::make_mut(&mut f.unmatched);
        for r in &routed {
            f.max_at = f.max_at.max(r.try_get(2)?);
            let unmatched: i32 = r.try_get(1)?;
            if unmatched != 0 {
                set.insert(r.try_get(0)?);
            }
        }
    }
    f.synced = to;
    Ok(())
}
