//! Reading the fact tables as of a time: each ticket folded from its
//! events recorded by then, each response's latest revision recorded by
//! then, each account as it stood then.

use std::collections::{BTreeMap, HashMap};

use closeloop_readmodel::Db;
use sqlx::Row as _;

use crate::query::Query;
use crate::tables::Tables;

/// A ticket as of the query's time.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketFact {
    pub ticket_id: String,
    pub program_id: String,
    /// `""` for a manual ticket.
    pub workflow_id: String,
    pub account_id: String,
    pub opened_at: i64,
    /// When first contact and closure are due (the SLA's first runs, in the
    /// ticket's calendar; else the policy's targets in calendar time).
    pub fc_due: i64,
    pub close_due: i64,
    pub first_contact: Option<i64>,
    pub first_close: Option<i64>,
    pub reopens: u32,
    /// The owner after the last event.
    pub owner: String,
    /// The response it was opened from (`""` for a manual ticket).
    pub feedback_id: String,
    /// Whether its workflow asks for an opportunity at the close.
    pub require_opportunity: bool,
    /// Its last close, when it is closed (closed and not reopened since).
    pub closed: Option<Closure>,
    /// Warnings, breaches and escalations recorded.
    pub sla: SlaMarks,
}

/// A ticket's close as closure quality scores it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Closure {
    pub at: i64,
    /// The owner at the close.
    pub owner: String,
    pub root_cause_words: u32,
    pub actions_words: u32,
    pub opportunity: bool,
    /// A contact was logged before (or at) the close.
    pub contact_before: bool,
}

/// What the escalation role recorded of a ticket's clocks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlaMarks {
    pub warned_first_contact: bool,
    pub warned_closure: bool,
    pub breached_first_contact: bool,
    pub breached_closure: bool,
    /// Escalation levels reached (1: the owner's manager).
    pub levels: std::collections::BTreeSet<u32>,
}

impl SlaMarks {
    pub fn warned(&self) -> bool {
        self.warned_first_contact || self.warned_closure
    }

    pub fn breached(&self) -> bool {
        self.breached_first_contact || self.breached_closure
    }
}

/// An account as of the query's time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccountFact {
    pub region: String,
    pub segment: String,
    /// Role → e-mail.
    pub team: BTreeMap<String, String>,
}

/// A response's latest revision as of the query's time.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseFact {
    pub feedback_id: String,
    pub response_id: String,
    pub program_id: String,
    pub account_id: String,
    pub submitted_at: i64,
    pub answers: serde_json::Map<String, serde_json::Value>,
}

impl ResponseFact {
    /// Answer `q` as a number, if given.
    pub fn number(&self, q: &str) -> Option<f64> {
        self.answers.get(q).and_then(serde_json::Value::as_f64)
    }
}

fn bounds(q: &Query) -> (i64, i64) {
    (q.from.unwrap_or(i64::MIN), q.to.unwrap_or(i64::MAX))
}

/// The tickets opened in the query's period and recorded by its time.
pub async fn tickets(db: &Db, t: &Tables, q: &Query) -> Result<Vec<TicketFact>, sqlx::Error> {
    let (from, to) = bounds(q);
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT t.ticket_id, t.program_id, t.workflow_id, t.account_id, t.opened_at, \
         t.fc_target_secs, t.close_target_secs, d.fc_due, d.close_due, t.feedback_id, \
         t.require_opportunity \
         FROM {tickets} t LEFT JOIN {sla_due} d \
         ON d.ticket_id = t.ticket_id AND d.at <= $1 \
         WHERE t.opened_at <= $1 AND t.opened_at >= $2 AND t.opened_at < $3 \
         ORDER BY t.ticket_id",
        tickets = t.tickets,
        sla_due = t.sla_due
    )))
    .bind(q.as_of)
    .bind(from)
    .bind(to)
    .fetch_all(db.pool())
    .await?;
    let mut out: Vec<TicketFact> = Vec::with_capacity(rows.len());
    let mut index: HashMap<String, usize> = HashMap::with_capacity(rows.len());
    for r in rows {
        let opened_at: i64 = r.try_get(4)?;
        let fc_target: i64 = r.try_get(5)?;
        let close_target: i64 = r.try_get(6)?;
        let fc_due: Option<i64> = r.try_get(7)?;
        let close_due: Option<i64> = r.try_get(8)?;
        let require_opportunity: i32 = r.try_get(10)?;
        let id: String = r.try_get(0)?;
        index.insert(id.clone(), out.len());
        out.push(TicketFact {
            ticket_id: id,
            program_id: r.try_get(1)?,
            workflow_id: r.try_get(2)?,
            account_id: r.try_get(3)?,
            opened_at,
            fc_due: fc_due.unwrap_or(opened_at.saturating_add(fc_target * 1_000_000)),
            close_due: close_due.unwrap_or(opened_at.saturating_add(close_target * 1_000_000)),
            first_contact: None,
            first_close: None,
            reopens: 0,
            owner: String::new(),
            feedback_id: r.try_get(9)?,
            require_opportunity: require_opportunity != 0,
            closed: None,
            sla: SlaMarks::default(),
        });
    }
    let events = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT e.ticket_id, e.at, e.kind, e.owner_email, e.root_cause_words, \
         e.actions_words, e.opportunity FROM {ticket_events} e \
         JOIN {tickets} t ON t.ticket_id = e.ticket_id \
         WHERE e.at <= $1 AND t.opened_at <= $1 AND t.opened_at >= $2 AND t.opened_at < $3 \
         ORDER BY e.ticket_id, e.sequence",
        ticket_events = t.ticket_events,
        tickets = t.tickets
    )))
    .bind(q.as_of)
    .bind(from)
    .bind(to)
    .fetch_all(db.pool())
    .await?;
    for r in events {
        let id: String = r.try_get(0)?;
        let Some(&i) = index.get(&id) else { continue };
        let t = &mut out[i];
        let at: i64 = r.try_get(1)?;
        let kind: String = r.try_get(2)?;
        let owner: String = r.try_get(3)?;
        if !owner.is_empty() {
            t.owner = owner;
        }
        match kind.as_str() {
            "contact_logged" => {
                t.first_contact.get_or_insert(at);
            }
            "closed" => {
                t.first_close.get_or_insert(at);
                let root_cause_words: i64 = r.try_get(4)?;
                let actions_words: i64 = r.try_get(5)?;
                let opportunity: i32 = r.try_get(6)?;
                t.closed = Some(Closure {
                    at,
                    owner: t.owner.clone(),
                    root_cause_words: root_cause_words.clamp(0, i64::from(u32::MAX)) as u32,
                    actions_words: actions_words.clamp(0, i64::from(u32::MAX)) as u32,
                    opportunity: opportunity != 0,
                    contact_before: t.first_contact.is_some(),
                });
            }
            "reopened" => {
                t.reopens += 1;
                t.closed = None;
            }
            _ => {}
        }
    }
    let marks = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT e.ticket_id, e.kind, e.clock, e.detail FROM {sla_events} e \
         JOIN {tickets} t ON t.ticket_id = e.ticket_id \
         WHERE e.at <= $1 AND t.opened_at <= $1 AND t.opened_at >= $2 AND t.opened_at < $3",
        sla_events = t.sla_events,
        tickets = t.tickets
    )))
    .bind(q.as_of)
    .bind(from)
    .bind(to)
    .fetch_all(db.pool())
    .await?;
    for r in marks {
        let id: String = r.try_get(0)?;
        let Some(&i) = index.get(&id) else { continue };
        let m = &mut out[i].sla;
        let kind: String = r.try_get(1)?;
        let clock: String = r.try_get(2)?;
        let detail: i64 = r.try_get(3)?;
        match (kind.as_str(), clock.as_str()) {
            ("warned", "first_contact") => m.warned_first_contact = true,
            ("warned", _) => m.warned_closure = true,
            ("breached", "first_contact") => m.breached_first_contact = true,
            ("breached", _) => m.breached_closure = true,
            ("escalated", _) => {
                m.levels.insert(detail.clamp(0, i64::from(u32::MAX)) as u32);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Every account as it stood at `as_of`.
pub async fn accounts(
    db: &Db,
    t: &Tables,
    as_of: i64,
) -> Result<HashMap<String, AccountFact>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT account_id, region, segment, team FROM {accounts} WHERE at <= $1 \
         ORDER BY account_id, sequence",
        accounts = t.accounts
    )))
    .bind(as_of)
    .fetch_all(db.pool())
    .await?;
    let mut out = HashMap::new();
    for r in rows {
        let team: String = r.try_get(3)?;
        let team: BTreeMap<String, String> = serde_json::from_str(&team).unwrap_or_default();
        out.insert(
            r.try_get::<String, _>(0)?,
            AccountFact {
                region: r.try_get(1)?,
                segment: r.try_get(2)?,
                team,
            },
        );
    }
    Ok(out)
}

/// Each person's team in the directory (the first by team id when they
/// are in several).
pub async fn teams(db: &Db) -> Result<HashMap<String, String>, sqlx::Error> {
    let rows = sqlx::query("SELECT team_id, email FROM team_members ORDER BY team_id, position")
        .fetch_all(db.pool())
        .await?;
    let mut out = HashMap::new();
    for r in rows {
        let team: String = r.try_get(0)?;
        out.entry(r.try_get::<String, _>(1)?).or_insert(team);
    }
    Ok(out)
}

/// The responses submitted in the query's period: each one's latest
/// revision (by when it was made) recorded by the query's time.
pub async fn responses(db: &Db, t: &Tables, q: &Query) -> Result<Vec<ResponseFact>, sqlx::Error> {
    let (from, to) = bounds(q);
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT feedback_id, response_id, program_id, account_id, submitted_at, answers \
         FROM {responses} WHERE applied = 1 AND at <= $1 \
         AND submitted_at >= $2 AND submitted_at < $3 \
         ORDER BY feedback_id, revision_key, sequence",
        responses = t.responses
    )))
    .bind(q.as_of)
    .bind(from)
    .bind(to)
    .fetch_all(db.pool())
    .await?;
    let mut out: Vec<ResponseFact> = Vec::new();
    for r in rows {
        let answers: String = r.try_get(5)?;
        let fact = ResponseFact {
            feedback_id: r.try_get(0)?,
            response_id: r.try_get(1)?,
            program_id: r.try_get(2)?,
            account_id: r.try_get(3)?,
            submitted_at: r.try_get(4)?,
            answers: serde_json::from_str(&answers).unwrap_or_default(),
        };
        // Ordered by revision: a later row of the same response replaces.
        match out.last_mut() {
            Some(last) if last.feedback_id == fact.feedback_id => *last = fact,
            _ => out.push(fact),
        }
    }
    Ok(out)
}

/// Each analytics projection's position in generation `t`: the last
/// stream sequence it applied.
pub async fn positions(db: &Db, t: &Tables) -> Result<Vec<(String, u64)>, sqlx::Error> {
    let mut out = Vec::new();
    for base in crate::view::ALL {
        let name = t.checkpoint(base);
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT sequence FROM projector_checkpoints WHERE name = $1")
                .bind(&name)
                .fetch_optional(db.pool())
                .await?;
        out.push((name, seq.unwrap_or(0).max(0) as u64));
    }
    Ok(out)
}

/// The responses whose routing decision, recorded by `as_of`, matched no
/// workflow.
pub async fn unmatched(
    db: &Db,
    t: &Tables,
    as_of: i64,
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT feedback_id FROM {routing} WHERE unmatched = 1 AND at <= $1",
        routing = t.routing
    )))
    .bind(as_of)
    .fetch_all(db.pool())
    .await
    .map(|v: Vec<String>| v.into_iter().collect())
}
