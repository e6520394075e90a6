//! The facts of the active generation as they stand now, kept in memory
//! and brought up to date before each report by reading only the rows
//! added since (by stream sequence, up to each projection's checkpoint, so
//! a projection's batch is seen whole or not at all). A report evaluated as
//! of a time at or after the latest recorded fact reads these (its answer
//! is the same as folding the tables as of that time: nothing recorded
//! after it exists); a report as of an earlier time reads the tables
//! ([`crate::facts`]).

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::sync::Arc;

use closeloop_readmodel::{Db, DbError};
use sqlx::Row as _;
use tokio::sync::{RwLock, RwLockReadGuard};

use crate::facts::{
    AccountFact, EVENT_COLUMNS, Id, Interner, ResponseFact, TICKET_COLUMNS, TicketFold, event_row,
    find_by_id, id_hash, response_fact, ticket_row,
};
use crate::tables::Tables;

/// What the cache holds: the facts at their newest.
#[derive(Debug, Default)]
pub struct Facts {
    pub generation: i64,
    /// The checkpoint each projection's rows were read up to, in
    /// [`crate::view::ALL`] order.
    pub synced: [i64; 5],
    /// The latest time any fact was recorded.
    pub max_at: i64,
    pub tickets: TicketFold,
    pub responses: Vec<ResponseFact>,
    /// Each response's (revision key, sequence), beside `responses`: a
    /// revision replaces the fact when it is later by these.
    revisions: Vec<(i64, i64)>,
    /// Places in `responses`, found by feedback id (hashed with
    /// [`id_hash`]; the id itself is the fact's).
    response_index: hashbrown::HashTable<u32>,
    /// Feedback ids whose routing matched no workflow before their response
    /// reached the cache (the routing projection ran ahead).
    early_unmatched: HashSet<Id>,
    names: Interner,
    pub accounts: Arc<HashMap<String, AccountFact>>,
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
    ) -> Result<RwLockReadGuard<'_, Facts>, DbError> {
        let positions = crate::facts::checkpoints(db, t).await?.map(|p| p as i64);
        {
            let f = self.facts.read().await;
            if f.generation == t.generation && f.synced == positions {
                return Ok(f);
            }
        }
        let asked = std::time::Instant::now();
        let mut f = self.facts.write().await;
        let locked = asked.elapsed();
        if f.generation != t.generation {
            *f = Facts {
                generation: t.generation,
                ..Facts::default()
            };
        }
        let from = f.synced;
        sync(db, t, &mut f, positions).await?;
        tracing::debug!(
            generation = t.generation,
            positions = from
                .iter()
                .zip(positions)
                .map(|(a, b)| (b - a).max(0))
                .sum::<i64>(),
            waited_ms = locked.as_secs_f64() * 1e3,
            took_ms = asked.elapsed().as_secs_f64() * 1e3,
            "analytics: facts brought up to date"
        );
        Ok(f.downgrade())
    }
}

/// Stream positions the facts moved by between two looks of [`keep_warm`]
/// from which the projections are taken to be catching up.
const CATCHING_UP: i64 = 1_000;

/// Keeps the cache of the active generation up to date every second, so a
/// report finds it warm (the first one after a start or a switch would
/// otherwise read every fact).
///
/// While the projections catch up (a projection's facts moved by
/// `CATCHING_UP` stream positions or more since the last look), it looks
/// again after 50 ms, so that a report right after a catch-up finds little
/// to read.
pub async fn keep_warm(cache: Arc<Cache>, db: Db, stopped: impl Future<Output = ()>) {
    let mut stopped = std::pin::pin!(stopped);
    let mut last = (-1, [0; 5]);
    loop {
        let mut rest = true;
        match crate::generations::active(&db).await {
            Ok(t) => match cache.current(&db, &t).await {
                Ok(f) => {
                    let moved = f.synced.iter().zip(last.1).map(|(n, l)| n - l).max();
                    rest = f.generation == last.0 && moved < Some(CATCHING_UP);
                    last = (f.generation, f.synced);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "analytics: bringing the facts up to date failed")
                }
            },
            Err(e) => tracing::warn!(error = %e, "analytics: reading generations failed"),
        }
        let pause = if rest {
            std::time::Duration::from_secs(1)
        } else {
            std::time::Duration::from_millis(50)
        };
        tokio::select! {
            _ = &mut stopped => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// The place of response `feedback_id` in `responses`, through `index`.
fn find_response(
    index: &hashbrown::HashTable<u32>,
    responses: &[ResponseFact],
    feedback_id: &Id,
) -> Option<usize> {
    find_by_id(index, responses, feedback_id, |r| &r.feedback_id)
}

/// Rows read per query while catching up (bounds the memory a sync takes
/// beside the facts themselves).
const PAGE: usize = 400;

/// Calls `each` with every row of `table` with `from < sequence <= to`, in
/// stream order, a page at a time (each table has one row per event at
/// most, so the sequence orders and pages it).
async fn rows(
    db: &Db,
    columns: &str,
    table: &str,
    from: i64,
    to: i64,
    mut each: impl FnMut(&sqlx::any::AnyRow) -> Result<(), sqlx::Error>,
) -> Result<(), sqlx::Error> {
    let mut after = from;
    while after < to {
        let page = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {columns}, sequence FROM {table} WHERE sequence > $1 AND sequence <= $2 \
             ORDER BY sequence LIMIT {PAGE}"
        )))
        .bind(after)
        .bind(to)
        .fetch_all(db.pool())
        .await?;
        for r in &page {
            each(r)?;
        }
        match page.last() {
            Some(last) if page.len() == PAGE => after = last.try_get(last.columns().len() - 1)?,
            _ => break,
        }
    }
    Ok(())
}

async fn sync(db: &Db, t: &Tables, f: &mut Facts, to: [i64; 5]) -> Result<(), sqlx::Error> {
    // Tickets (with their `at`: the opening), then their events.
    let (from, upto) = (f.synced[0], to[0]);
    rows(db, TICKET_COLUMNS, &t.tickets, from, upto, |r| {
        let row = ticket_row(r)?;
        f.max_at = f.max_at.max(row.opened_at);
        f.tickets.open(row);
        Ok(())
    })
    .await?;
    rows(db, EVENT_COLUMNS, &t.ticket_events, from, upto, |r| {
        let e = event_row(r)?;
        f.max_at = f.max_at.max(e.at);
        f.tickets.event(e);
        Ok(())
    })
    .await?;
    // SLA: due times, then marks.
    let (from, upto) = (f.synced[1], to[1]);
    rows(
        db,
        "ticket_id, fc_due, close_due, at",
        &t.sla_due,
        from,
        upto,
        |r| {
            let id: String = r.try_get(0)?;
            f.max_at = f.max_at.max(r.try_get(3)?);
            f.tickets.due(&id, r.try_get(1)?, r.try_get(2)?);
            Ok(())
        },
    )
    .await?;
    rows(
        db,
        "ticket_id, kind, clock, detail, at",
        &t.sla_events,
        from,
        upto,
        |r| {
            let id: String = r.try_get(0)?;
            let clock: String = r.try_get(2)?;
            f.max_at = f.max_at.max(r.try_get(4)?);
            f.tickets.mark(&id, r.try_get(1)?, &clock, r.try_get(3)?);
            Ok(())
        },
    )
    .await?;
    // Responses: each one's latest applied revision.
    let (from, upto) = (f.synced[2], to[2]);
    rows(
        db,
        "feedback_id, response_id, program_id, account_id, submitted_at, answers, applied, \
         revision_key, sequence, at",
        &t.responses,
        from,
        upto,
        |r| {
            f.max_at = f.max_at.max(r.try_get(9)?);
            let applied: i32 = r.try_get(6)?;
            if applied == 0 {
                return Ok(());
            }
            let key: (i64, i64) = (r.try_get(7)?, r.try_get(8)?);
            let mut fact = response_fact(&mut f.names, r)?;
            let responses = &mut f.responses;
            match find_response(&f.response_index, responses, &fact.feedback_id) {
                Some(i) => {
                    if key > f.revisions[i] {
                        f.revisions[i] = key;
                        fact.unmatched = responses[i].unmatched;
                        responses[i] = fact;
                    }
                }
                None => {
                    fact.unmatched = f.early_unmatched.remove(&fact.feedback_id);
                    f.response_index.insert_unique(
                        id_hash(&fact.feedback_id),
                        responses.len() as u32,
                        |&i| id_hash(&responses[i as usize].feedback_id),
                    );
                    responses.push(fact);
                    f.revisions.push(key);
                }
            }
            Ok(())
        },
    )
    .await?;
    // Accounts: their latest version.
    let (from, upto) = (f.synced[3], to[3]);
    if upto > from {
        // Shared only while a report runs, and none does during a sync:
        // updated in place.
        let map = Arc::make_mut(&mut f.accounts);
        let mut max_at = f.max_at;
        rows(
            db,
            "account_id, region, segment, team, at",
            &t.accounts,
            from,
            upto,
            |r| {
                let team: String = r.try_get(3)?;
                max_at = max_at.max(r.try_get(4)?);
                map.insert(
                    r.try_get(0)?,
                    AccountFact {
                        region: r.try_get(1)?,
                        segment: r.try_get(2)?,
                        team: serde_json::from_str(&team).unwrap_or_default(),
                    },
                );
                Ok(())
            },
        )
        .await?;
        f.max_at = max_at;
    }
    // Routing: responses that matched no workflow.
    let (from, upto) = (f.synced[4], to[4]);
    if upto > from {
        let (index, responses) = (&f.response_index, &mut f.responses);
        let early = &mut f.early_unmatched;
        let mut max_at = f.max_at;
        rows(
            db,
            "feedback_id, unmatched, at",
            &t.routing,
            from,
            upto,
            |r| {
                max_at = max_at.max(r.try_get(2)?);
                let unmatched: i32 = r.try_get(1)?;
                if unmatched != 0 {
                    let id = Id::new(r.try_get(0)?);
                    match find_response(index, responses, &id) {
                        Some(i) => responses[i].unmatched = true,
                        None => {
                            early.insert(id);
                        }
                    }
                }
                Ok(())
            },
        )
        .await?;
        f.max_at = max_at;
    }
    f.synced = to;
    Ok(())
}
