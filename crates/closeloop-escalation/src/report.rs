//! The weekly open-ticket report: open tickets that are breached,
//! escalated or within 24 hours of a breach, grouped by owner, as of a
//! time. Each ticket is evaluated by folding its SLA events up to that
//! time, so a report of a past week shows that week as it was.

use std::collections::BTreeMap;

use closeloop_domain::sla::{self, ClockKind, Sla};
use closeloop_domain::{TicketId, Timestamp};
use closeloop_readmodel::Db;
use futures::TryStreamExt as _;
use sqlx::Row as _;

/// How close to a breach a ticket must be to be listed.
pub const DUE_SOON_SECS: i64 = 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportTicket {
    pub ticket_id: String,
    pub account_id: String,
    pub title: String,
    pub program_id: String,
    pub region: String,
    pub opened_at: Timestamp,
    pub age_days: u32,
    /// breached, escalated, due_soon.
    pub reasons: Vec<&'static str>,
    pub first_contact_due: Option<Timestamp>,
    pub close_due: Option<Timestamp>,
    pub escalation_level: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    pub region: String,
    pub as_of: Timestamp,
    /// Owner → tickets, owners and tickets in a stable order.
    pub owners: BTreeMap<String, Vec<ReportTicket>>,
}

impl Report {
    pub fn tickets(&self) -> usize {
        self.owners.values().map(Vec::len).sum()
    }
}

/// What `s` (folded up to `as_of`) puts in the report; `None`: not listed.
pub fn evaluate(s: &Sla, as_of: Timestamp) -> Option<(String, ReportTicket)> {
    if s.closed {
        return None;
    }
    let mut reasons = Vec::new();
    let running: Vec<_> = s.clocks.iter().filter(|c| c.is_running()).collect();
    if running
        .iter()
        .any(|c| c.breached_at.is_some() || (c.paused_since.is_none() && c.due_at <= as_of))
    {
        reasons.push("breached");
    }
    let level = s
        .escalations
        .iter()
        .filter(|e| s.untouched.as_ref().is_some_and(|u| u.period == e.period))
        .map(|e| e.level)
        .max()
        .unwrap_or(0);
    if level > 0 {
        reasons.push("escalated");
    }
    let soon = Timestamp::from_micros(as_of.as_micros() + DUE_SOON_SECS * 1_000_000);
    if running
        .iter()
        .any(|c| c.paused_since.is_none() && c.due_at > as_of && c.due_at <= soon)
    {
        reasons.push("due_soon");
    }
    if reasons.is_empty() {
        return None;
    }
    let due = |k: ClockKind| s.current(k).filter(|c| c.is_running()).map(|c| c.due_at);
    let age = (as_of.as_micros() - s.tracked.opened_at.as_micros()).max(0) / 86_400_000_000;
    Some((
        s.owner.clone(),
        ReportTicket {
            ticket_id: s.ticket_id.to_string(),
            account_id: s.tracked.account_id.clone(),
            title: s.tracked.title.clone(),
            program_id: s.tracked.program_id.clone(),
            region: s.tracked.region.clone(),
            opened_at: s.tracked.opened_at,
            age_days: u32::try_from(age).unwrap_or(u32::MAX),
            reasons,
            first_contact_due: due(ClockKind::FirstContact),
            close_due: due(ClockKind::Closure),
            escalation_level: level,
        },
    ))
}

/// The regions the tracked tickets have (as the directory gave them, in
/// their first spelling by case), sorted: what a region asked for can be.
pub async fn regions(db: &Db) -> Result<Vec<String>, String> {
    let rows = sqlx::query("SELECT DISTINCT region FROM sla_tickets WHERE region <> ''")
        .fetch_all(db.pool())
        .await
        .map_err(|e| e.to_string())?;
    let mut out: Vec<String> = Vec::with_capacity(rows.len());
    for r in rows {
        let region: String = r.try_get(0).map_err(|e| e.to_string())?;
        if !out.iter().any(|k| k.eq_ignore_ascii_case(&region)) {
            out.push(region);
        }
    }
    out.sort_by_key(|r| r.to_lowercase());
    Ok(out)
}

/// The report of `region` (empty: all) as of `as_of`; `present` says
/// whether `as_of` is the present (then only open tickets are looked at).
///
/// One statement reads the selected tickets' SLA events, ticket by ticket
/// in sequence order, as a stream: one round trip to the database rather
/// than one per ticket, and one snapshot of the view.
pub async fn weekly(
    db: &Db,
    region: &str,
    as_of: Timestamp,
    present: bool,
) -> Result<Report, String> {
    let sql = if present {
        "SELECT h.ticket_id, h.sequence, h.payload FROM sla_tickets t \
         JOIN sla_history h ON h.ticket_id = t.ticket_id \
         WHERE t.closed = 0 AND t.opened_at <= $1 AND ($2 = '' OR LOWER(t.region) = LOWER($2)) \
         ORDER BY h.ticket_id, h.sequence"
    } else {
        "SELECT h.ticket_id, h.sequence, h.payload FROM sla_tickets t \
         JOIN sla_history h ON h.ticket_id = t.ticket_id \
         WHERE t.opened_at <= $1 AND ($2 = '' OR LOWER(t.region) = LOWER($2)) \
         ORDER BY h.ticket_id, h.sequence"
    };
    let mut report = Report {
        region: region.to_string(),
        as_of,
        owners: BTreeMap::new(),
    };
    let mut finish = |state: Option<Sla>| {
        if let Some((owner, t)) = state.as_ref().and_then(|s| evaluate(s, as_of)) {
            report.owners.entry(owner).or_default().push(t);
        }
    };
    let mut rows = sqlx::query(sql)
        .bind(as_of.as_micros())
        .bind(region)
        .fetch(db.pool());
    // The ticket being folded (None: its id is not a ticket id, skipped),
    // its state so far, and whether its events have passed `as_of`.
    let mut current: Option<(String, Option<TicketId>)> = None;
    let mut state = None;
    let mut past = false;
    while let Some(r) = rows.try_next().await.map_err(|e| e.to_string())? {
        let id: String = r.try_get(0).map_err(|e| e.to_string())?;
        if current.as_ref().is_none_or(|(c, _)| *c != id) {
            finish(state.take());
            past = false;
            let tid = TicketId::parse("ticket_id", &id).ok();
            current = Some((id, tid));
        }
        let Some((_, Some(tid))) = &current else {
            continue;
        };
        if past {
            continue;
        }
        let rec = crate::view::decode_row(
            *tid,
            r.try_get(1).map_err(|e| e.to_string())?,
            &r.try_get::<String, _>(2).map_err(|e| e.to_string())?,
        )?;
        if rec.occurred_at > as_of {
            past = true;
            continue;
        }
        state = sla::evolve(state, &rec);
    }
    drop(rows);
    finish(state);
    Ok(report)
}
