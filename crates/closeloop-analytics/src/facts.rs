//! Reading the fact tables as of a time: each ticket folded from its
//! events recorded by then, each response's latest revision recorded by
//! then, each account as it stood then.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use closeloop_readmodel::{Db, DbError};
use sqlx::Row as _;

use crate::query::Query;
use crate::tables::Tables;

/// A ticket or feedback id as the facts keep it: one in the canonical text
/// form of a UUID (lowercase, hyphenated: every closeloop ticket and
/// feedback id) as its 16 bytes, any other text as shared text. Two ids are
/// equal when their texts are, and order as their texts do.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Id {
    Uuid([u8; 16]),
    Text(Arc<str>),
}

impl Id {
    pub fn new(s: &str) -> Id {
        // Only the canonical form: an id in another form (upper case,
        // braces) keeps its own text.
        match uuid::Uuid::try_parse(s) {
            Ok(u) if u.hyphenated().encode_lower(&mut [0; 36]) == s => Id::Uuid(u.into_bytes()),
            _ => Id::Text(Arc::from(s)),
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Id::Text(s) if s.is_empty())
    }

    /// Calls `f` with the id's text (a UUID's written on the stack).
    pub fn with_str<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        match self {
            Id::Uuid(b) => f(uuid::Uuid::from_bytes(*b)
                .hyphenated()
                .encode_lower(&mut [0; 36])),
            Id::Text(s) => f(s),
        }
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Id {
        Id::new(s)
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.with_str(|s| f.write_str(s))
    }
}

impl std::fmt::Debug for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.with_str(|s| write!(f, "{s:?}"))
    }
}

impl Ord for Id {
    fn cmp(&self, other: &Id) -> std::cmp::Ordering {
        match (self, other) {
            // Hex digits order as the nibbles they write.
            (Id::Uuid(a), Id::Uuid(b)) => a.cmp(b),
            _ => self.with_str(|a| other.with_str(|b| a.cmp(b))),
        }
    }
}

impl PartialOrd for Id {
    fn partial_cmp(&self, other: &Id) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A ticket as of the query's time. Ids that repeat across tickets
/// (program, workflow, account, owner) are shared ([`Interner`]): the
/// cache holds every ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketFact {
    pub ticket_id: Id,
    pub program_id: Name,
    /// `""` for a manual ticket.
    pub workflow_id: Name,
    pub account_id: Name,
    pub opened_at: i64,
    /// When first contact and closure are due (the SLA's first runs, in the
    /// ticket's calendar; else the policy's targets in calendar time).
    pub fc_due: i64,
    pub close_due: i64,
    pub first_contact: Option<i64>,
    pub first_close: Option<i64>,
    pub reopens: u32,
    /// The owner after the last event.
    pub owner: Name,
    /// The response it was opened from (`""` for a manual ticket).
    pub feedback_id: Id,
    /// Whether its workflow asks for an opportunity at the close.
    pub require_opportunity: bool,
    /// Its last close, when it is closed (closed and not reopened since).
    pub closed: Option<Closure>,
    /// Warnings, breaches and escalations recorded.
    pub sla: SlaMarks,
}

impl TicketFact {
    /// Its workflow, `(manual)` for a manual ticket.
    pub fn workflow(&self) -> &str {
        if self.workflow_id.is_empty() {
            crate::report::MANUAL
        } else {
            &self.workflow_id
        }
    }
}

/// A ticket's close as closure quality scores it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Closure {
    pub at: i64,
    /// The owner at the close.
    pub owner: Name,
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
    /// Escalation levels reached (1: the owner's manager), ascending.
    /// Allocated only for an escalated ticket, and smaller than a set.
    pub levels: Box<[u32]>,
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

/// A response's latest revision as of the query's time. Ids that repeat
/// across responses (program, account, question names) are shared.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseFact {
    pub feedback_id: Id,
    pub response_id: Box<str>,
    pub program_id: Name,
    pub account_id: Name,
    pub submitted_at: i64,
    /// Its numeric answers, by question.
    pub answers: Box<[(Name, f64)]>,
    /// Its routing decision (recorded by the query's time) matched no
    /// workflow.
    pub unmatched: bool,
}

impl ResponseFact {
    /// Answer `q` as a number, if given.
    pub fn number(&self, q: &str) -> Option<f64> {
        self.answers
            .iter()
            .find(|(k, _)| k.as_ref() == q)
            .map(|(_, v)| *v)
    }
}

/// Shares equal strings (program and account ids, question names).
#[derive(Debug, Default, Clone)]
pub struct Interner(rustc_hash::FxHashSet<Name>);

impl Interner {
    pub fn get(&mut self, s: &str) -> Name {
        if let Some(a) = self.0.get(s) {
            return a.clone();
        }
        let a = Name::from(s);
        self.0.insert(a.clone());
        a
    }
}

/// Shared text (a program, workflow, account, owner or question name) one
/// pointer wide: an `Arc<str>` is two, and the cache holds several per
/// ticket and response. Reads as the `str` it holds; equal, ordered and
/// hashed as that text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[allow(clippy::redundant_allocation)] // the inner box is what makes it thin
pub struct Name(Arc<Box<str>>);

impl Name {
    /// The same shared text (not only equal text): a pointer comparison.
    pub fn same(&self, other: &Name) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The shared text's address: equal for every clone of this name, and
    /// not reused while one of them lives (memos key on it instead of
    /// hashing and comparing the text).
    pub fn addr(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        Name(Arc::new(Box::from(s)))
    }
}

impl Default for Name {
    fn default() -> Name {
        Name::from("")
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", &**self)
    }
}

/// The fact of a response row whose first columns are `feedback_id,
/// response_id, program_id, account_id, submitted_at, answers` (`answers`:
/// the JSON object the projection wrote).
pub(crate) fn response_fact(
    names: &mut Interner,
    r: &sqlx::any::AnyRow,
) -> Result<ResponseFact, sqlx::Error> {
    let answers: &str = r.try_get(5)?;
    let parsed: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(answers).unwrap_or_default();
    Ok(ResponseFact {
        feedback_id: Id::new(r.try_get(0)?),
        response_id: Box::from(r.try_get::<&str, _>(1)?),
        program_id: names.get(r.try_get(2)?),
        account_id: names.get(r.try_get(3)?),
        submitted_at: r.try_get(4)?,
        answers: parsed
            .iter()
            .filter_map(|(k, v)| Some((names.get(k), v.as_f64()?)))
            .collect(),
        unmatched: false,
    })
}

fn bounds(q: &Query) -> (i64, i64) {
    (q.from.unwrap_or(i64::MIN), q.to.unwrap_or(i64::MAX))
}

/// Tickets folded from their fact rows, applied in stream order: what the
/// SQL path (as of a past time) and the in-memory cache ([`crate::cache`])
/// both build.
#[derive(Debug, Default, Clone)]
pub struct TicketFold {
    pub tickets: Vec<TicketFact>,
    /// Places in `tickets`, found by the ticket id (hashed with [`id_hash`]).
    index: hashbrown::HashTable<u32>,
    names: Interner,
    /// Due times and marks of tickets not seen yet (the SLA projection ran
    /// ahead of the ticket projection).
    early_due: HashMap<String, (i64, i64)>,
    early_marks: HashMap<String, Vec<(String, String, i64)>>,
}

/// An `analytics_tickets` row.
pub struct TicketRow {
    pub ticket_id: String,
    pub program_id: String,
    pub workflow_id: String,
    pub feedback_id: String,
    pub account_id: String,
    pub opened_at: i64,
    pub fc_target_secs: i64,
    pub close_target_secs: i64,
    pub require_opportunity: bool,
}

/// An `analytics_ticket_events` row.
pub struct EventRow {
    pub ticket_id: String,
    pub at: i64,
    pub kind: String,
    pub owner_email: String,
    pub root_cause_words: i64,
    pub actions_words: i64,
    pub opportunity: bool,
}

fn words(n: i64) -> u32 {
    n.clamp(0, i64::from(u32::MAX)) as u32
}

/// The hash of an id in the cache's index tables.
pub(crate) fn id_hash(id: &Id) -> u64 {
    use std::hash::BuildHasher as _;
    rustc_hash::FxBuildHasher.hash_one(id)
}

/// The place in `items` of the item whose id (`id_of`) is `id`, through
/// `index` (positions hashed by [`id_hash`] of their items' ids).
pub(crate) fn find_by_id<T>(
    index: &hashbrown::HashTable<u32>,
    items: &[T],
    id: &Id,
    id_of: impl Fn(&T) -> &Id,
) -> Option<usize> {
    index
        .find(id_hash(id), |&i| id_of(&items[i as usize]) == id)
        .map(|&i| i as usize)
}

impl TicketFold {
    /// The place of ticket `id` in `tickets`.
    fn find(&self, id: &str) -> Option<usize> {
        self.find_id(&Id::new(id))
    }

    fn find_id(&self, id: &Id) -> Option<usize> {
        find_by_id(&self.index, &self.tickets, id, |t| &t.ticket_id)
    }

    pub fn open(&mut self, r: TicketRow) {
        let ticket_id = Id::new(&r.ticket_id);
        if self.find_id(&ticket_id).is_some() {
            return;
        }
        let (fc_due, close_due) = self.early_due.remove(&r.ticket_id).unwrap_or((
            r.opened_at.saturating_add(r.fc_target_secs * 1_000_000),
            r.opened_at.saturating_add(r.close_target_secs * 1_000_000),
        ));
        let marks = self.early_marks.remove(&r.ticket_id);
        let tickets = &self.tickets;
        self.index
            .insert_unique(id_hash(&ticket_id), tickets.len() as u32, |&i| {
                id_hash(&tickets[i as usize].ticket_id)
            });
        let names = &mut self.names;
        self.tickets.push(TicketFact {
            ticket_id,
            program_id: names.get(&r.program_id),
            workflow_id: names.get(&r.workflow_id),
            account_id: names.get(&r.account_id),
            opened_at: r.opened_at,
            fc_due,
            close_due,
            first_contact: None,
            first_close: None,
            reopens: 0,
            owner: names.get(""),
            feedback_id: Id::new(&r.feedback_id),
            require_opportunity: r.require_opportunity,
            closed: None,
            sla: SlaMarks::default(),
        });
        for (kind, clock, detail) in marks.into_iter().flatten() {
            self.mark(&r.ticket_id, kind, &clock, detail);
        }
    }

    /// The SLA's first-run due times (they replace the policy's targets).
    pub fn due(&mut self, ticket_id: &str, fc_due: i64, close_due: i64) {
        match self.find(ticket_id) {
            Some(i) => {
                let t = &mut self.tickets[i];
                t.fc_due = fc_due;
                t.close_due = close_due;
            }
            None => {
                self.early_due
                    .insert(ticket_id.to_string(), (fc_due, close_due));
            }
        }
    }

    /// An event of a ticket already opened (others are ignored: a ticket
    /// outside the query's period).
    pub fn event(&mut self, e: EventRow) {
        let Some(i) = self.find(&e.ticket_id) else {
            return;
        };
        let t = &mut self.tickets[i];
        if !e.owner_email.is_empty() {
            t.owner = self.names.get(&e.owner_email);
        }
        match e.kind.as_str() {
            "contact_logged" => {
                t.first_contact.get_or_insert(e.at);
            }
            "closed" => {
                t.first_close.get_or_insert(e.at);
                t.closed = Some(Closure {
                    at: e.at,
                    owner: t.owner.clone(),
                    root_cause_words: words(e.root_cause_words),
                    actions_words: words(e.actions_words),
                    opportunity: e.opportunity,
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

    /// A warning, breach or escalation.
    pub fn mark(&mut self, ticket_id: &str, kind: String, clock: &str, detail: i64) {
        let Some(i) = self.find(ticket_id) else {
            self.early_marks
                .entry(ticket_id.to_string())
                .or_default()
                .push((kind, clock.to_string(), detail));
            return;
        };
        let m = &mut self.tickets[i].sla;
        match (kind.as_str(), clock) {
            ("warned", "first_contact") => m.warned_first_contact = true,
            ("warned", _) => m.warned_closure = true,
            ("breached", "first_contact") => m.breached_first_contact = true,
            ("breached", _) => m.breached_closure = true,
            ("escalated", _) => {
                let level = detail.clamp(0, i64::from(u32::MAX)) as u32;
                if let Err(at) = m.levels.binary_search(&level) {
                    let mut levels = std::mem::take(&mut m.levels).into_vec();
                    levels.insert(at, level);
                    m.levels = levels.into_boxed_slice();
                }
            }
            _ => {}
        }
    }
}

pub(crate) fn ticket_row(r: &sqlx::any::AnyRow) -> Result<TicketRow, sqlx::Error> {
    let require_opportunity: i32 = r.try_get(8)?;
    Ok(TicketRow {
        ticket_id: r.try_get(0)?,
        program_id: r.try_get(1)?,
        workflow_id: r.try_get(2)?,
        feedback_id: r.try_get(3)?,
        account_id: r.try_get(4)?,
        opened_at: r.try_get(5)?,
        fc_target_secs: r.try_get(6)?,
        close_target_secs: r.try_get(7)?,
        require_opportunity: require_opportunity != 0,
    })
}

/// Columns of [`ticket_row`].
pub(crate) const TICKET_COLUMNS: &str = "ticket_id, program_id, workflow_id, feedback_id, \
     account_id, opened_at, fc_target_secs, close_target_secs, require_opportunity";

pub(crate) fn event_row(r: &sqlx::any::AnyRow) -> Result<EventRow, sqlx::Error> {
    let opportunity: i32 = r.try_get(6)?;
    Ok(EventRow {
        ticket_id: r.try_get(0)?,
        at: r.try_get(1)?,
        kind: r.try_get(2)?,
        owner_email: r.try_get(3)?,
        root_cause_words: r.try_get(4)?,
        actions_words: r.try_get(5)?,
        opportunity: opportunity != 0,
    })
}

/// Columns of [`event_row`].
pub(crate) const EVENT_COLUMNS: &str =
    "ticket_id, at, kind, owner_email, root_cause_words, actions_words, opportunity";

/// The tickets opened in the query's period and recorded by its time.
pub async fn tickets(db: &Db, t: &Tables, q: &Query) -> Result<Vec<TicketFact>, sqlx::Error> {
    let (from, to) = bounds(q);
    let in_period = "t.opened_at <= $1 AND t.opened_at >= $2 AND t.opened_at < $3";
    let mut fold = TicketFold::default();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TICKET_COLUMNS} FROM {tickets} t WHERE {in_period} ORDER BY t.sequence",
        tickets = t.tickets
    )))
    .bind(q.as_of)
    .bind(from)
    .bind(to)
    .fetch_all(db.pool())
    .await?;
    for r in &rows {
        fold.open(ticket_row(r)?);
    }
    let due = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT d.ticket_id, d.fc_due, d.close_due FROM {sla_due} d \
         JOIN {tickets} t ON t.ticket_id = d.ticket_id WHERE d.at <= $1 AND {in_period}",
        sla_due = t.sla_due,
        tickets = t.tickets
    )))
    .bind(q.as_of)
    .bind(from)
    .bind(to)
    .fetch_all(db.pool())
    .await?;
    for r in &due {
        let id: String = r.try_get(0)?;
        fold.due(&id, r.try_get(1)?, r.try_get(2)?);
    }
    let events = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {cols} FROM {events} e JOIN {tickets} t ON t.ticket_id = e.ticket_id \
         WHERE e.at <= $1 AND {in_period} ORDER BY e.sequence",
        cols = EVENT_COLUMNS
            .split(", ")
            .map(|c| format!("e.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
        events = t.ticket_events,
        tickets = t.tickets
    )))
    .bind(q.as_of)
    .bind(from)
    .bind(to)
    .fetch_all(db.pool())
    .await?;
    for r in &events {
        fold.event(event_row(r)?);
    }
    let marks = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT e.ticket_id, e.kind, e.clock, e.detail FROM {sla_events} e \
         JOIN {tickets} t ON t.ticket_id = e.ticket_id WHERE e.at <= $1 AND {in_period}",
        sla_events = t.sla_events,
        tickets = t.tickets
    )))
    .bind(q.as_of)
    .bind(from)
    .bind(to)
    .fetch_all(db.pool())
    .await?;
    for r in &marks {
        let id: String = r.try_get(0)?;
        let clock: String = r.try_get(2)?;
        fold.mark(&id, r.try_get(1)?, &clock, r.try_get(3)?);
    }
    let mut out = fold.tickets;
    out.sort_by(|a, b| a.ticket_id.cmp(&b.ticket_id));
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
    let mut out = HashMap::default();
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
    let mut out = HashMap::default();
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
    let mut names = Interner::default();
    for r in rows {
        let fact = response_fact(&mut names, &r)?;
        // Ordered by revision: a later row of the same response replaces.
        match out.last_mut() {
            Some(last) if last.feedback_id == fact.feedback_id => *last = fact,
            _ => out.push(fact),
        }
    }
    Ok(out)
}

/// Each analytics projection's position in generation `t` (the last stream
/// sequence it applied; 0 before it has applied any), in [`ALL`] order.
///
/// [`ALL`]: crate::view::ALL
pub async fn checkpoints(db: &Db, t: &Tables) -> Result<[u64; 5], DbError> {
    let mut out = [0; 5];
    for (i, base) in crate::view::ALL.iter().enumerate() {
        out[i] = db.checkpoint(&t.checkpoint(base)).await?;
    }
    Ok(out)
}

/// Positions as reports show them: each projection's checkpoint name in
/// generation `t` with its position.
pub fn named(t: &Tables, positions: [u64; 5]) -> Vec<(String, u64)> {
    crate::view::ALL
        .iter()
        .zip(positions)
        .map(|(base, seq)| (t.checkpoint(base), seq))
        .collect()
}

/// Marks the responses whose routing decision, recorded by `as_of`,
/// matched no workflow.
pub async fn mark_unmatched(
    db: &Db,
    t: &Tables,
    as_of: i64,
    responses: &mut [ResponseFact],
) -> Result<(), sqlx::Error> {
    let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT feedback_id FROM {routing} WHERE unmatched = 1 AND at <= $1",
        routing = t.routing
    )))
    .bind(as_of)
    .fetch_all(db.pool())
    .await?;
    let ids: rustc_hash::FxHashSet<Id> = ids.iter().map(|i| Id::new(i)).collect();
    for r in responses {
        r.unmatched = ids.contains(&r.feedback_id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(b: &[u8; 16]) -> String {
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }

    /// Ids as texts: canonical UUIDs, their uppercase and unhyphenated
    /// forms (kept as text), and other text.
    fn any_id() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<[u8; 16]>().prop_map(|b| text(&b)),
            any::<[u8; 16]>().prop_map(|b| text(&b).to_uppercase()),
            any::<[u8; 16]>().prop_map(|b| text(&b).replace('-', "")),
            "[0-9a-f-]{0,40}",
            ".{0,12}",
        ]
    }

    proptest! {
        #[test]
        fn an_id_is_its_text(a in any_id(), b in any_id()) {
            let (x, y) = (Id::new(&a), Id::new(&b));
            prop_assert_eq!(x.to_string(), a.clone());
            prop_assert_eq!(x == y, a == b);
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            if x == y {
                prop_assert_eq!(id_hash(&x), id_hash(&y));
            }
            prop_assert_eq!(x.is_empty(), a.is_empty());
        }
    }

    #[test]
    fn canonical_uuids_take_sixteen_bytes() {
        let b = [0xab; 16];
        assert_eq!(Id::new(&text(&b)), Id::Uuid(b));
        assert!(matches!(Id::new(&text(&b).to_uppercase()), Id::Text(_)));
        assert_eq!(std::mem::size_of::<Id>(), 24);
    }

    /// The cache holds one of each per ticket and per response: their
    /// sizes are the analytics process's memory (`make bench`).
    #[test]
    fn facts_stay_small() {
        assert_eq!(std::mem::size_of::<Name>(), 8);
        assert!(std::mem::size_of::<TicketFact>() <= 200);
        assert!(std::mem::size_of::<ResponseFact>() <= 88);
        let n = Name::from("nps");
        assert_eq!(&*n, "nps");
        assert_eq!(n, Name::from("nps"));
        assert!(!n.same(&Name::from("nps")));
        assert!(n.same(&n.clone()));
    }

    #[test]
    fn escalation_levels_are_kept_once_in_order() {
        let mut f = TicketFold::default();
        f.mark("t1", "escalated".into(), "", 2);
        f.open(TicketRow {
            ticket_id: "t1".into(),
            program_id: "p".into(),
            workflow_id: String::new(),
            feedback_id: String::new(),
            account_id: "a".into(),
            opened_at: 0,
            fc_target_secs: 1,
            close_target_secs: 1,
            require_opportunity: false,
        });
        for level in [3, 1, 2, 3] {
            f.mark("t1", "escalated".into(), "", level);
        }
        assert_eq!(&*f.tickets[0].sla.levels, &[1, 2, 3]);
    }
}
