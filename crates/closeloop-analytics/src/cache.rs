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
use std::sync::atomic::{AtomicU64, Ordering};

use closeloop_readmodel::{Db, DbError};
use sqlx::Row as _;
use tokio::sync::{RwLock, RwLockReadGuard};

use closeloop_readmodel::Val;

use crate::facts::{
    AccountFact, Cells, EVENT_COLUMNS, Id, Interner, ResponseFact, TICKET_COLUMNS, TicketFold,
    event_row, find_by_id, id_hash, response_fact, ticket_row,
};
use crate::feed::{Batch, Feed};
use crate::tables::Tables;
use crate::view::ALL;

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
    /// The rows this process's projections committed (see [`crate::feed`]).
    feed: Arc<Feed>,
    /// Rows the facts took from the feed and read from the tables.
    taken: Taken,
}

/// Rows the cache took, by where from.
#[derive(Default)]
struct Taken {
    fed: AtomicU64,
    read: AtomicU64,
}

impl closeloop_runtime::MetricsSource for Cache {
    fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        let rows = Family::<Vec<(String, String)>, Counter>::default();
        for (source, n) in [("fed", &self.taken.fed), ("read", &self.taken.read)] {
            rows.get_or_create(&vec![("source".to_string(), source.to_string())])
                .inc_by(n.load(Ordering::Relaxed));
        }
        registry.register(
            "closeloop_analytics_cache_rows",
            "Fact rows the in-memory facts took: fed (handed over by this process's projections as they committed) or read (from the tables: rows other processes wrote, or the feed could not give).",
            rows,
        );
    }
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
        let mut f = self.facts.write().await;
        if f.generation != t.generation {
            *f = Facts {
                generation: t.generation,
                ..Facts::default()
            };
        }
        self.feed.holds(t.generation);
        sync(db, &self.feed, &self.taken, t, &mut f, positions).await?;
        Ok(f.downgrade())
    }

    /// Where this process's projections leave the rows they commit.
    pub fn feed(&self) -> Arc<Feed> {
        self.feed.clone()
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
    each: &mut impl FnMut(&dyn Cells) -> Result<(), sqlx::Error>,
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

/// A row a projection of this process wrote, seen in the column order of
/// a read: `at[i]` is the place of the read's column `i` among the row's.
struct Fed<'a> {
    row: &'a [Val],
    at: &'a [usize],
}

fn decode_error(what: &str, i: usize) -> sqlx::Error {
    sqlx::Error::Decode(format!("fed row: column {i} is not {what}").into())
}

impl Cells for Fed<'_> {
    fn int(&self, i: usize) -> Result<i64, sqlx::Error> {
        match self.at.get(i).and_then(|&c| self.row.get(c)) {
            Some(Val::I(v)) => Ok(*v),
            _ => Err(decode_error("an integer", i)),
        }
    }

    fn text(&self, i: usize) -> Result<&str, sqlx::Error> {
        match self.at.get(i).and_then(|&c| self.row.get(c)) {
            Some(Val::S(v)) => Ok(v),
            _ => Err(decode_error("text", i)),
        }
    }
}

/// Calls `each` with table `k`'s rows of the fed `batches`, then with the
/// rows of `table` after them (`from < sequence <= to`) read from the
/// database: `columns` is the read's column list, which the fed rows are
/// seen through.
async fn fed_then_read(
    db: &Db,
    taken: &Taken,
    batches: &[Batch],
    k: usize,
    columns: &str,
    table: &str,
    (from, to): (i64, i64),
    mut each: impl FnMut(&dyn Cells) -> Result<(), sqlx::Error>,
) -> Result<(), sqlx::Error> {
    for b in batches {
        let (names, fed) = &b.tables[k];
        let at = columns
            .split(',')
            .map(|c| {
                let c = c.trim();
                names.iter().position(|n| *n == c).ok_or_else(|| {
                    sqlx::Error::Decode(format!("fed rows of {table} have no column {c}").into())
                })
            })
            .collect::<Result<Vec<usize>, sqlx::Error>>()?;
        for row in fed {
            each(&Fed { row, at: &at })?;
        }
        taken.fed.fetch_add(fed.len() as u64, Ordering::Relaxed);
    }
    let mut read = 0;
    let mut counted = |r: &dyn Cells| {
        read += 1;
        each(r)
    };
    let result = rows(db, columns, table, from, to, &mut counted).await;
    taken.read.fetch_add(read, Ordering::Relaxed);
    result
}

async fn sync(
    db: &Db,
    feed: &Feed,
    taken: &Taken,
    t: &Tables,
    f: &mut Facts,
    to: [i64; 5],
) -> Result<(), sqlx::Error> {
    // Each projection's committed batches this process still holds, from
    // where the cache is; the rest of its rows come from its tables.
    let take = |i: usize| {
        let (batches, from) = feed.take(&t.checkpoint(ALL[i]), f.synced[i], to[i]);
        (batches, (from, to[i]))
    };
    let tickets = take(0);
    let sla = take(1);
    let responses = take(2);
    let accounts = take(3);
    let routing = take(4);

    // Tickets (with their `at`: the opening), then their events.
    let (batches, range) = tickets;
    fed_then_read(
        db,
        taken,
        &batches,
        0,
        TICKET_COLUMNS,
        &t.tickets,
        range,
        |r| {
            let row = ticket_row(r)?;
            f.max_at = f.max_at.max(row.opened_at);
            f.tickets.open(row);
            Ok(())
        },
    )
    .await?;
    fed_then_read(
        db,
        taken,
        &batches,
        1,
        EVENT_COLUMNS,
        &t.ticket_events,
        range,
        |r| {
            let e = event_row(r)?;
            f.max_at = f.max_at.max(e.at);
            f.tickets.event(e);
            Ok(())
        },
    )
    .await?;
    // SLA: due times, then marks.
    let (batches, range) = sla;
    fed_then_read(
        db,
        taken,
        &batches,
        0,
        "ticket_id, fc_due, close_due, at",
        &t.sla_due,
        range,
        |r| {
            f.max_at = f.max_at.max(r.int(3)?);
            f.tickets.due(r.text(0)?, r.int(1)?, r.int(2)?);
            Ok(())
        },
    )
    .await?;
    fed_then_read(
        db,
        taken,
        &batches,
        1,
        "ticket_id, kind, clock, detail, at",
        &t.sla_events,
        range,
        |r| {
            f.max_at = f.max_at.max(r.int(4)?);
            f.tickets
                .mark(r.text(0)?, r.text(1)?.to_string(), r.text(2)?, r.int(3)?);
            Ok(())
        },
    )
    .await?;
    // Responses: each one's latest applied revision.
    let (batches, range) = responses;
    fed_then_read(
        db,
        taken,
        &batches,
        0,
        "feedback_id, response_id, program_id, account_id, submitted_at, answers, applied, \
         revision_key, sequence, at",
        &t.responses,
        range,
        |r| {
            f.max_at = f.max_at.max(r.int(9)?);
            if r.int(6)? == 0 {
                return Ok(());
            }
            let key: (i64, i64) = (r.int(7)?, r.int(8)?);
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
    let (batches, range) = accounts;
    if range.1 > f.synced[3] {
        // Shared only while a report runs, and none does during a sync:
        // updated in place.
        let map = Arc::make_mut(&mut f.accounts);
        let mut max_at = f.max_at;
        fed_then_read(
            db,
            taken,
            &batches,
            0,
            "account_id, region, segment, team, at",
            &t.accounts,
            range,
            |r| {
                max_at = max_at.max(r.int(4)?);
                map.insert(
                    r.text(0)?.to_string(),
                    AccountFact {
                        region: r.text(1)?.to_string(),
                        segment: r.text(2)?.to_string(),
                        team: serde_json::from_str(r.text(3)?).unwrap_or_default(),
                    },
                );
                Ok(())
            },
        )
        .await?;
        f.max_at = max_at;
    }
    // Routing: responses that matched no workflow.
    let (batches, range) = routing;
    if range.1 > f.synced[4] {
        let (index, responses) = (&f.response_index, &mut f.responses);
        let early = &mut f.early_unmatched;
        let mut max_at = f.max_at;
        fed_then_read(
            db,
            taken,
            &batches,
            0,
            "feedback_id, unmatched, at",
            &t.routing,
            range,
            |r| {
                max_at = max_at.max(r.int(2)?);
                if r.int(1)? != 0 {
                    let id = Id::new(r.text(0)?);
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
