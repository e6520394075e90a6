//! The views, computed from facts (pure: no I/O). Each gives a [`Table`]:
//! one row per combination of slice values, a total, and per row the
//! measures of the view; [`explain_rate`] and [`explain_nps`] list what
//! is behind a row.
//!
//! The definitions are in `docs/metrics.md`; this module implements them.

use rustc_hash::FxHashMap as HashMap;

use std::sync::Arc;

use closeloop_programs::{AnalyticsConfig, Targets};

use crate::facts::{AccountFact, ResponseFact, TicketFact};
use crate::query::{Dim, Query};

/// A view's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub view: &'static str,
    /// The slice dimensions, in the order asked.
    pub dims: Vec<&'static str>,
    pub measures: Vec<&'static str>,
    /// Sorted by key.
    pub rows: Vec<Row>,
    /// Over every item counted (its key is empty).
    pub total: Row,
}

/// One cell per measure; `None` where a measure does not apply (a rate of
/// nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: Vec<String>,
    pub values: Vec<Option<f64>>,
}

/// What the views need besides the facts.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub accounts: std::sync::Arc<HashMap<String, AccountFact>>,
    /// Person → team.
    pub teams: HashMap<String, String>,
    /// Per program: its metric (`nps`, `csat`, `ces`, `custom`) and the
    /// question carrying it.
    pub metrics: HashMap<String, (String, String)>,
    /// Targets, the leaderboard's and the quality rubric's settings.
    pub config: AnalyticsConfig,
    /// Per program: its journey stage.
    pub stages: HashMap<String, String>,
}

/// The default target rate of closure and first contact within target.
pub const DEFAULT_TARGET_PCT: u32 = 80;

pub const NO_TEAM: &str = "(no team)";
pub const MANUAL: &str = "(manual)";
pub const UNKNOWN: &str = "(unknown)";

/// Errors of a report's question.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("view {view} cannot be sliced by {dim}: its items are {items}")]
    NotASlice {
        view: &'static str,
        dim: &'static str,
        items: &'static str,
    },
}

impl Context {
    pub(crate) fn account(&self, id: &str) -> Option<&AccountFact> {
        self.accounts.get(id)
    }

    /// A ticket's target rate (%) on `clock`: its owner's team's, else its
    /// program's, else the file's, else [`DEFAULT_TARGET_PCT`].
    pub fn target_pct(&self, clock: Clock, program: &str, owner: &str) -> u32 {
        let pick = |t: &Targets| match clock {
            Clock::Closure => t.closure,
            Clock::FirstContact => t.first_contact,
        };
        let c = &self.config;
        self.teams
            .get(owner)
            .and_then(|team| c.team_targets.get(team))
            .and_then(pick)
            .or_else(|| c.program_targets.get(program).and_then(pick))
            .or_else(|| pick(&c.targets))
            .unwrap_or(DEFAULT_TARGET_PCT)
    }

    /// The directory team of `email` (`(no team)`).
    pub(crate) fn team_of(&self, email: &str) -> &str {
        self.teams.get(email).map_or(NO_TEAM, String::as_str)
    }
}

/// A ticket's value of slice `d`.
pub(crate) fn ticket_slice(t: &TicketFact, d: Dim, q: &Query, cx: &Context) -> String {
    ticket_slice_as(t, &t.owner, d, q, cx)
}

/// A ticket's value of slice `d` with `owner` as its owner (quality: the
/// owner at the close).
pub(crate) fn ticket_slice_as(
    t: &TicketFact,
    owner: &str,
    d: Dim,
    q: &Query,
    cx: &Context,
) -> String {
    ticket_key(t, owner, d, q, cx).as_str().to_string()
}

/// [`ticket_slice_as`], borrowed from the facts where it can be.
pub(crate) fn ticket_key<'a>(
    t: &'a TicketFact,
    owner: &'a str,
    d: Dim,
    q: &Query,
    cx: &'a Context,
) -> Key<'a> {
    match d {
        Dim::Program => Key::B(&t.program_id),
        Dim::Workflow => Key::B(t.workflow()),
        Dim::Team => Key::B(cx.team_of(owner)),
        Dim::Owner => Key::B(owner),
        Dim::Region => Key::B(cx.account(&t.account_id).map_or(UNKNOWN, |a| &a.region)),
        Dim::Segment => Key::B(cx.account(&t.account_id).map_or(UNKNOWN, |a| &a.segment)),
        Dim::Period => Key::A(q.bucket_label(t.opened_at)),
    }
}

/// A slice value, borrowed from the facts where it can be (views group
/// hundreds of thousands of items by these: no allocation per item).
#[derive(Debug, Clone)]
pub(crate) enum Key<'a> {
    B(&'a str),
    A(Arc<str>),
}

impl Key<'_> {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Key::B(s) => s,
            Key::A(s) => s,
        }
    }
}

impl PartialEq for Key<'_> {
    fn eq(&self, o: &Self) -> bool {
        self.as_str() == o.as_str()
    }
}

impl Eq for Key<'_> {}

impl PartialOrd for Key<'_> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Key<'_> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(o.as_str())
    }
}

impl std::hash::Hash for Key<'_> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

/// Rows in key order.
pub(crate) fn sorted(rows: impl Iterator<Item = Row>) -> Vec<Row> {
    let mut rows: Vec<Row> = rows.collect();
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    rows
}

/// Keys as the strings a table shows.
pub(crate) fn owned(key: &[Key<'_>]) -> Vec<String> {
    key.iter().map(|k| k.as_str().to_string()).collect()
}

/// A response's value of slice `d` (`Err` for slices of tickets only).
pub(crate) fn response_key<'a>(
    r: &'a ResponseFact,
    d: Dim,
    q: &Query,
    cx: &'a Context,
) -> Result<Key<'a>, ReportError> {
    Ok(match d {
        Dim::Program => Key::B(&r.program_id),
        Dim::Region => Key::B(cx.account(&r.account_id).map_or(UNKNOWN, |a| &a.region)),
        Dim::Segment => Key::B(cx.account(&r.account_id).map_or(UNKNOWN, |a| &a.segment)),
        // The account team's: the team of the account's CSM.
        Dim::Team => Key::B(
            cx.account(&r.account_id)
                .and_then(|a| a.team.get("csm"))
                .map_or(NO_TEAM, |csm| cx.team_of(csm)),
        ),
        Dim::Period => Key::A(q.bucket_label(r.submitted_at)),
        Dim::Workflow | Dim::Owner => {
            return Err(ReportError::NotASlice {
                view: "nps",
                dim: d.as_str(),
                items: "responses, which have no workflow or owner (slice tickets instead)",
            });
        }
    })
}

/// A response's value of slice `d`, as a string.
pub(crate) fn response_slice(
    r: &ResponseFact,
    d: Dim,
    q: &Query,
    cx: &Context,
) -> Result<String, ReportError> {
    response_key(r, d, q, cx).map(|k| k.as_str().to_string())
}

/// Whether a response passes the query's filters.
pub(crate) fn response_passes(
    q: &Query,
    r: &ResponseFact,
    cx: &Context,
) -> Result<bool, ReportError> {
    for (d, v) in &q.only {
        if response_key(r, *d, q, cx)?.as_str() != v {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether an item with slice values `f(dim)` passes the query's filters.
pub(crate) fn passes(
    q: &Query,
    mut f: impl FnMut(Dim) -> Result<String, ReportError>,
) -> Result<bool, ReportError> {
    for (d, v) in &q.only {
        if f(*d)? != *v {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Calls `each` with every ticket opened in the query's range that passes
/// its filters, and its row key (its values of the query's slices), in a
/// buffer reused from ticket to ticket (views group about a hundred
/// thousand tickets: no allocation per ticket).
pub(crate) fn for_selected_tickets<'a>(
    q: &Query,
    tickets: &'a [TicketFact],
    cx: &'a Context,
    mut each: impl FnMut(&[Key<'a>], &'a TicketFact),
) {
    for_tickets_as(
        q,
        tickets,
        cx,
        |t| Some((&*t.owner, ())),
        |k, t, ()| each(k, t),
    );
}

/// [`for_selected_tickets`] over the tickets `pick` takes, sliced with the
/// owner it gives (with what else it gives, passed on to `each`).
pub(crate) fn for_tickets_as<'a, X>(
    q: &Query,
    tickets: &'a [TicketFact],
    cx: &'a Context,
    pick: impl Fn(&'a TicketFact) -> Option<(&'a str, X)>,
    mut each: impl FnMut(&[Key<'a>], &'a TicketFact, X),
) {
    let mut key: Vec<Key<'a>> = Vec::with_capacity(q.by.len());
    for t in tickets {
        if !q.in_range(t.opened_at) {
            continue;
        }
        let Some((owner, x)) = pick(t) else {
            continue;
        };
        if !q
            .only
            .iter()
            .all(|(d, v)| ticket_key(t, owner, *d, q, cx).as_str() == v)
        {
            continue;
        }
        key.clear();
        key.extend(q.by.iter().map(|d| ticket_key(t, owner, *d, q, cx)));
        each(&key, t, x);
    }
}

/// What an item's slice values and filters follow from ([`IdsOf`]): the
/// addresses of the shared ids its slices read ([`crate::facts::Name::addr`]:
/// program, workflow, owner), the class of its account (accounts alike in
/// everything the slices read of them share one), and the start of its
/// period bucket; 0 for what the slices do not read.
pub(crate) type Ids = (usize, usize, usize, usize, i64);

/// A value computed once per distinct [`Ids`] (a row's place, whether the
/// filters pass) and found again by them: a hash of five integers per item
/// instead of reading and hashing its strings and looking its account up.
pub(crate) struct Memo<V>(HashMap<Ids, V>);

impl<V: Copy> Memo<V> {
    pub(crate) fn new() -> Self {
        Memo(HashMap::default())
    }

    /// The value for `ids`, computed by `f` the first time (every time when
    /// `ids` is `None`: an item whose bucket has no bounds).
    pub(crate) fn get(
        &mut self,
        ids: Option<Ids>,
        f: impl FnOnce() -> Result<V, ReportError>,
    ) -> Result<V, ReportError> {
        let Some(ids) = ids else { return f() };
        if let Some(v) = self.0.get(&ids) {
            return Ok(*v);
        }
        let v = f()?;
        self.0.insert(ids, v);
        Ok(v)
    }
}

/// The distinct row keys of a view, each with its place (in the order
/// first seen): sums are kept in a `Vec` by place, and an item's place is
/// remembered by its [`Ids`], so its key is made and hashed once per
/// distinct ids, not once per item.
#[derive(Default)]
pub(crate) struct Places<'a> {
    index: Rows<'a, u32>,
    pub(crate) keys: Vec<Vec<Key<'a>>>,
}

impl<'a> Places<'a> {
    /// The place of `key`, added when new (then `keys.len() - 1`).
    pub(crate) fn place(&mut self, key: Vec<Key<'a>>) -> u32 {
        if let Some(i) = self.index.get(&key) {
            return *i;
        }
        let i = self.keys.len() as u32;
        self.index.insert(key.clone(), i);
        self.keys.push(key);
        i
    }
}

/// The sums at place `i`, started when none were (`None`: a place no item
/// was counted in, which gives no row).
pub(crate) fn at<A: Default>(sums: &mut Vec<Option<A>>, i: u32) -> &mut A {
    let i = i as usize;
    if sums.len() <= i {
        sums.resize_with(i + 1, || None);
    }
    sums[i].get_or_insert_default()
}

/// Each place's key with its sums, for the places something was counted in.
pub(crate) fn counted<'k, 'a, A>(
    places: &'k Places<'a>,
    sums: Vec<Option<A>>,
) -> impl Iterator<Item = (&'k [Key<'a>], A)> {
    places
        .keys
        .iter()
        .zip(sums)
        .filter_map(|(k, a)| Some((&k[..], a?)))
}

/// What kind of items an [`IdsOf`] makes ids of: the slices read
/// different things of each (a response's team is its account's, a
/// ticket's its owner's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Items<'a> {
    Tickets,
    /// `role`: a view keying responses by the person in this account-team
    /// role too (the leaderboard).
    Responses {
        role: Option<&'a str>,
    },
}

/// What of an account the slices read: whether it is in the directory,
/// then its region, segment, CSM and person in the view's role (`None`
/// where not read or absent).
type AccountClass<'a> = (
    bool,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
);

/// Makes the [`Ids`] of items for one view: everything its slices `by`
/// (the query's, or what the view slices by) and the query's filters read
/// of an item, and nothing else, so that items with the same row share
/// ids as far as they can (fewer distinct ids, a memo that stays in the
/// cache).
pub(crate) struct IdsOf<'a> {
    cx: &'a Context,
    items: Items<'a>,
    period: bool,
    program: bool,
    workflow: bool,
    owner: bool,
    region: bool,
    segment: bool,
    team: bool,
    /// Account id's address → its class's number.
    accounts: HashMap<usize, usize>,
    classes: HashMap<AccountClass<'a>, usize>,
    buckets: crate::query::LastBucket<'a>,
}

impl<'a> IdsOf<'a> {
    /// For slices `by`, the query's filters, and with `program` the
    /// program whether sliced by or not (a view keyed by it).
    pub(crate) fn new(
        q: &'a Query,
        cx: &'a Context,
        by: &[Dim],
        items: Items<'a>,
        program: bool,
    ) -> Self {
        let reads = |d: Dim| by.contains(&d) || q.only.iter().any(|(o, _)| *o == d);
        let tickets = items == Items::Tickets;
        IdsOf {
            cx,
            items,
            period: reads(Dim::Period),
            program: program || reads(Dim::Program),
            workflow: tickets && reads(Dim::Workflow),
            owner: tickets && (reads(Dim::Owner) || reads(Dim::Team)),
            region: reads(Dim::Region),
            segment: reads(Dim::Segment),
            team: !tickets && reads(Dim::Team),
            accounts: HashMap::default(),
            classes: HashMap::default(),
            buckets: crate::query::LastBucket::new(q),
        }
    }

    /// The start of the bucket of `at` when the period is read (`Some(0)`
    /// when it is not; `None` when the bucket has no bounds).
    fn bucket(&mut self, at: i64) -> Option<i64> {
        if !self.period {
            return Some(0);
        }
        self.buckets.bounds(at).map(|(start, _)| start)
    }

    /// The number of `account`'s class (0: nothing of it is read).
    fn class(&mut self, account: &crate::facts::Name) -> usize {
        let role = match self.items {
            Items::Responses { role } => role,
            Items::Tickets => None,
        };
        if !(self.region || self.segment || self.team || role.is_some()) {
            return 0;
        }
        if let Some(c) = self.accounts.get(&account.addr()) {
            return *c;
        }
        let a = self.cx.account(account);
        let person = |role: &str| a.and_then(|a| a.team.get(role)).map(String::as_str);
        let class = (
            a.is_some(),
            a.filter(|_| self.region).map(|a| a.region.as_str()),
            a.filter(|_| self.segment).map(|a| a.segment.as_str()),
            if self.team { person("csm") } else { None },
            role.and_then(person),
        );
        let next = self.classes.len() + 1;
        let c = *self.classes.entry(class).or_insert(next);
        self.accounts.insert(account.addr(), c);
        c
    }

    /// A response's ids: what [`response_key`] (and the view's role)
    /// reads of it.
    pub(crate) fn response(&mut self, r: &ResponseFact) -> Option<Ids> {
        let b = self.bucket(r.submitted_at)?;
        let program = if self.program { r.program_id.addr() } else { 0 };
        Some((program, self.class(&r.account_id), 0, 0, b))
    }

    /// A ticket's ids with `owner` as its owner: what [`ticket_key`] reads
    /// of it.
    pub(crate) fn ticket(&mut self, t: &TicketFact, owner: &crate::facts::Name) -> Option<Ids> {
        let b = self.bucket(t.opened_at)?;
        Some((
            if self.program { t.program_id.addr() } else { 0 },
            self.class(&t.account_id),
            if self.workflow {
                t.workflow_id.addr()
            } else {
                0
            },
            if self.owner { owner.addr() } else { 0 },
            b,
        ))
    }
}

/// A view's rows by key. Keys are found by the borrowed key of each item
/// (`rows.entry_ref(key)`: hashed once, copied only for a new row).
pub(crate) type Rows<'a, A> = hashbrown::HashMap<Vec<Key<'a>>, A, rustc_hash::FxBuildHasher>;

/// Whether a row's borrowed key is `key` (as a report shows it).
pub(crate) fn is_key(k: &[Key<'_>], key: &[String]) -> bool {
    k.len() == key.len() && k.iter().zip(key).all(|(a, b)| a.as_str() == b)
}

/// Where a ticket stands on a clock as of `as_of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Met,
    Missed,
    Pending,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Met => "met",
            Outcome::Missed => "missed",
            Outcome::Pending => "pending",
        }
    }
}

/// Closure within target: met when the first close was at or before the
/// due time; missed when it was later, or the ticket is unclosed and the
/// due time has passed; else pending.
pub fn closure_outcome(t: &TicketFact, as_of: i64) -> Outcome {
    match t.first_close {
        Some(c) if c <= t.close_due => Outcome::Met,
        Some(_) => Outcome::Missed,
        None if as_of > t.close_due => Outcome::Missed,
        None => Outcome::Pending,
    }
}

/// First contact within target: like closure on the first logged contact;
/// a ticket closed without any contact has missed it.
pub fn first_contact_outcome(t: &TicketFact, as_of: i64) -> Outcome {
    match t.first_contact {
        Some(c) if c <= t.fc_due => Outcome::Met,
        Some(_) => Outcome::Missed,
        None if as_of > t.fc_due || t.first_close.is_some() => Outcome::Missed,
        None => Outcome::Pending,
    }
}

/// Tickets needed on top of `met` for `met / (met + missed)` to reach
/// `target_pct` (0 when it does).
pub fn needed(met: u64, missed: u64, target_pct: u32) -> u64 {
    let n = met + missed;
    let want = (u64::from(target_pct) * n).div_ceil(100);
    want.saturating_sub(met)
}

pub(crate) fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| 100.0 * num as f64 / den as f64)
}

/// Which clock a rate view reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    Closure,
    FirstContact,
}

impl Clock {
    pub fn view(self) -> &'static str {
        match self {
            Clock::Closure => "closure",
            Clock::FirstContact => "first-contact",
        }
    }

    pub fn outcome(self, t: &TicketFact, as_of: i64) -> Outcome {
        match self {
            Clock::Closure => closure_outcome(t, as_of),
            Clock::FirstContact => first_contact_outcome(t, as_of),
        }
    }
}

#[derive(Default, Clone)]
struct RateAcc {
    met: u64,
    missed: u64,
    pending: u64,
    reopened: u64,
    /// Target of the row's tickets (the highest of theirs: a row meets its
    /// target only when every ticket's target is met).
    target: Option<u32>,
}

impl RateAcc {
    fn add(&mut self, o: Outcome, reopens: u32, target: u32) {
        match o {
            Outcome::Met => self.met += 1,
            Outcome::Missed => self.missed += 1,
            Outcome::Pending => self.pending += 1,
        }
        self.reopened += u64::from(reopens);
        self.target = Some(self.target.map_or(target, |t| t.max(target)));
    }

    fn row(&self, key: Vec<String>, clock: Clock) -> Row {
        let target = self.target.unwrap_or(DEFAULT_TARGET_PCT);
        let mut values = vec![
            Some(self.met as f64),
            Some(self.missed as f64),
            Some(self.pending as f64),
            ratio(self.met, self.met + self.missed),
            Some(f64::from(target)),
            Some(needed(self.met, self.missed, target) as f64),
        ];
        if clock == Clock::Closure {
            values.push(Some(self.reopened as f64));
        }
        Row { key, values }
    }
}

/// The measures of a rate view.
pub fn rate_measures(clock: Clock) -> Vec<&'static str> {
    let mut m = vec!["met", "missed", "pending", "rate", "target", "needed"];
    if clock == Clock::Closure {
        m.push("reopens");
    }
    m
}

/// Closure (or first contact) within target, by the query's slices.
pub fn rate(clock: Clock, q: &Query, tickets: &[TicketFact], cx: &Context) -> Table {
    let mut rows: Rows<'_, RateAcc> = Rows::default();
    let mut total = RateAcc::default();
    for_selected_tickets(q, tickets, cx, |key, t| {
        let o = clock.outcome(t, q.as_of);
        let target = cx.target_pct(clock, &t.program_id, &t.owner);
        rows.entry_ref(key).or_default().add(o, t.reopens, target);
        total.add(o, t.reopens, target);
    });
    Table {
        view: clock.view(),
        dims: q.by.iter().map(|d| d.as_str()).collect(),
        measures: rate_measures(clock),
        rows: sorted(rows.into_iter().map(|(k, a)| a.row(owned(&k), clock))),
        total: total.row(Vec::new(), clock),
    }
}

/// How a program's metric question is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Band {
    Promoter,
    Passive,
    Detractor,
}

/// An NPS answer's band: 9-10 promoter, 7-8 passive, 0-6 detractor.
pub fn band(score: f64) -> Band {
    if score >= 9.0 {
        Band::Promoter
    } else if score >= 7.0 {
        Band::Passive
    } else {
        Band::Detractor
    }
}

#[derive(Default)]
struct NpsAcc {
    promoters: u64,
    passives: u64,
    detractors: u64,
    csat_n: u64,
    csat_top: u64,
    csat_sum: f64,
    ces_n: u64,
    ces_sum: f64,
}

impl NpsAcc {
    fn row(&self, key: Vec<String>) -> Row {
        let n = self.promoters + self.passives + self.detractors;
        let nps =
            (n > 0).then(|| 100.0 * (self.promoters as f64 - self.detractors as f64) / n as f64);
        Row {
            key,
            values: vec![
                Some(n as f64),
                Some(self.promoters as f64),
                Some(self.passives as f64),
                Some(self.detractors as f64),
                nps,
                Some(self.csat_n as f64),
                ratio(self.csat_top, self.csat_n),
                (self.csat_n > 0).then(|| self.csat_sum / self.csat_n as f64),
                Some(self.ces_n as f64),
                (self.ces_n > 0).then(|| self.ces_sum / self.ces_n as f64),
            ],
        }
    }
}

pub const NPS_MEASURES: [&str; 10] = [
    "responses",
    "promoters",
    "passives",
    "detractors",
    "nps",
    "csat_responses",
    "csat",
    "csat_mean",
    "ces_responses",
    "ces_mean",
];

/// A response's metric: its program's kind and its answer to the metric
/// question (programs without a metric in the context: `nps` on `nps`).
pub fn metric_of<'a>(r: &ResponseFact, cx: &'a Context) -> (&'a str, Option<f64>) {
    let (kind, question) = program_metric(&r.program_id, cx);
    (kind, r.number(question))
}

/// A program's metric kind and the question carrying it.
fn program_metric<'a>(program: &str, cx: &'a Context) -> (&'a str, &'a str) {
    match cx.metrics.get(program) {
        Some((kind, question)) => (kind.as_str(), question.as_str()),
        None => ("nps", "nps"),
    }
}

/// [`metric_of`] for loops over many responses: each program's metric is
/// looked up once (found again by its shared id), not once per response.
pub(crate) struct Metrics<'a> {
    cx: &'a Context,
    seen: Vec<(crate::facts::Name, &'a str, &'a str)>,
}

impl<'a> Metrics<'a> {
    pub(crate) fn new(cx: &'a Context) -> Self {
        Metrics {
            cx,
            seen: Vec::new(),
        }
    }

    /// What [`metric_of`] gives for `r`.
    pub(crate) fn of(&mut self, r: &ResponseFact) -> (&'a str, Option<f64>) {
        let (kind, question) = match self.seen.iter().find(|(p, _, _)| p.same(&r.program_id)) {
            Some(&(_, kind, question)) => (kind, question),
            None => {
                let (kind, question) = program_metric(&r.program_id, self.cx);
                // Ids are shared, so programs are few; bounded all the same.
                if self.seen.len() < 256 {
                    self.seen.push((r.program_id.clone(), kind, question));
                }
                (kind, question)
            }
        };
        (kind, r.number(question))
    }
}

/// NPS, CSAT and CES by the query's slices.
pub fn nps(q: &Query, responses: &[ResponseFact], cx: &Context) -> Result<Table, ReportError> {
    for d in &q.by {
        if matches!(d, Dim::Workflow | Dim::Owner) {
            return Err(ReportError::NotASlice {
                view: "nps",
                dim: d.as_str(),
                items: "responses, which have no workflow or owner (slice tickets instead)",
            });
        }
    }
    let mut places = Places::default();
    let mut sums: Vec<Option<NpsAcc>> = Vec::new();
    let mut total = NpsAcc::default();
    let mut metrics = Metrics::new(cx);
    let mut place: Memo<Option<u32>> = Memo::new();
    let mut ids = IdsOf::new(q, cx, &q.by, Items::Responses { role: None }, false);
    for r in responses {
        if !q.in_range(r.submitted_at) {
            continue;
        }
        let p = place.get(ids.response(r), || {
            if !response_passes(q, r, cx)? {
                return Ok(None);
            }
            let key =
                q.by.iter()
                    .map(|d| response_key(r, *d, q, cx))
                    .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(places.place(key)))
        })?;
        let Some(p) = p else { continue };
        let (kind, value) = metrics.of(r);
        let Some(v) = value else { continue };
        for acc in [at(&mut sums, p), &mut total] {
            match kind {
                "nps" => match band(v) {
                    Band::Promoter => acc.promoters += 1,
                    Band::Passive => acc.passives += 1,
                    Band::Detractor => acc.detractors += 1,
                },
                "csat" => {
                    acc.csat_n += 1;
                    acc.csat_sum += v;
                    if v >= 4.0 {
                        acc.csat_top += 1;
                    }
                }
                "ces" => {
                    acc.ces_n += 1;
                    acc.ces_sum += v;
                }
                _ => {}
            }
        }
    }
    let mut rows: Vec<Row> = counted(&places, sums)
        .map(|(k, a)| a.row(owned(k)))
        .collect();
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(Table {
        view: "nps",
        dims: q.by.iter().map(|d| d.as_str()).collect(),
        measures: NPS_MEASURES.to_vec(),
        rows,
        total: total.row(Vec::new()),
    })
}

/// The items behind one row: columns and one line per ticket or response.
#[derive(Debug, Clone, PartialEq)]
pub struct Explained {
    pub items: &'static str,
    pub columns: Vec<String>,
    pub lines: Vec<Vec<String>>,
}

pub(crate) fn columns(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

pub(crate) fn time(us: i64) -> String {
    jiff::Timestamp::from_microsecond(us)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The tickets of a rate view's row `key` (all rows when empty), only those
/// with `outcome` when given.
pub fn explain_rate(
    clock: Clock,
    q: &Query,
    key: &[String],
    outcome: Option<Outcome>,
    tickets: &[TicketFact],
    cx: &Context,
) -> Explained {
    let mut lines = Vec::new();
    for_selected_tickets(q, tickets, cx, |k, t| {
        if !key.is_empty() && !is_key(k, key) {
            return;
        }
        let o = clock.outcome(t, q.as_of);
        if outcome.is_some_and(|want| want != o) {
            return;
        }
        let (due, at) = match clock {
            Clock::Closure => (t.close_due, t.first_close),
            Clock::FirstContact => (t.fc_due, t.first_contact),
        };
        lines.push(vec![
            t.ticket_id.to_string(),
            t.program_id.to_string(),
            t.workflow().to_string(),
            t.account_id.to_string(),
            t.owner.to_string(),
            time(t.opened_at),
            time(due),
            at.map(time).unwrap_or_default(),
            o.as_str().to_string(),
            t.reopens.to_string(),
        ]);
    });
    Explained {
        items: "tickets",
        columns: columns(&[
            "ticket_id",
            "program",
            "workflow",
            "account",
            "owner",
            "opened_at",
            "due",
            match clock {
                Clock::Closure => "first_closed_at",
                Clock::FirstContact => "first_contact_at",
            },
            "outcome",
            "reopens",
        ]),
        lines,
    }
}

/// The responses of an NPS row `key` (all rows when empty), only those in
/// `band` when given.
pub fn explain_nps(
    q: &Query,
    key: &[String],
    only: Option<Band>,
    responses: &[ResponseFact],
    cx: &Context,
) -> Result<Explained, ReportError> {
    let mut lines = Vec::new();
    for r in responses {
        if !q.in_range(r.submitted_at) || !passes(q, |d| response_slice(r, d, q, cx))? {
            continue;
        }
        let (kind, value) = metric_of(r, cx);
        let Some(v) = value else { continue };
        if !key.is_empty() {
            let k =
                q.by.iter()
                    .map(|d| response_slice(r, *d, q, cx))
                    .collect::<Result<Vec<_>, _>>()?;
            if k != key {
                continue;
            }
        }
        let b = (kind == "nps").then(|| band(v));
        if only.is_some() && b != only {
            continue;
        }
        lines.push(vec![
            r.feedback_id.to_string(),
            r.response_id.to_string(),
            r.program_id.to_string(),
            r.account_id.to_string(),
            time(r.submitted_at),
            kind.to_string(),
            format!("{v}"),
            match b {
                Some(Band::Promoter) => "promoter",
                Some(Band::Passive) => "passive",
                Some(Band::Detractor) => "detractor",
                None => "",
            }
            .to_string(),
        ]);
    }
    Ok(Explained {
        items: "responses",
        columns: columns(&[
            "feedback_id",
            "response_id",
            "program",
            "account",
            "submitted_at",
            "metric",
            "score",
            "band",
        ]),
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(opened: i64, close_due: i64, first_close: Option<i64>) -> TicketFact {
        TicketFact {
            ticket_id: "t".into(),
            program_id: "p".into(),
            workflow_id: "".into(),
            account_id: "a".into(),
            opened_at: opened,
            fc_due: opened + 10,
            close_due,
            first_contact: None,
            first_close,
            reopens: 0,
            owner: "o@x".into(),
            feedback_id: "".into(),
            require_opportunity: false,
            closed: None,
            sla: Default::default(),
        }
    }

    #[test]
    fn outcomes_at_the_boundaries() {
        // Closed exactly at the due time: met; a microsecond later: missed.
        assert_eq!(
            closure_outcome(&ticket(0, 100, Some(100)), 500),
            Outcome::Met
        );
        assert_eq!(
            closure_outcome(&ticket(0, 100, Some(101)), 500),
            Outcome::Missed
        );
        // Open: pending up to the due time, missed after it.
        assert_eq!(
            closure_outcome(&ticket(0, 100, None), 100),
            Outcome::Pending
        );
        assert_eq!(closure_outcome(&ticket(0, 100, None), 101), Outcome::Missed);
        // Closed without contact: first contact missed even before its due.
        assert_eq!(
            first_contact_outcome(&ticket(0, 100, Some(5)), 6),
            Outcome::Missed
        );
    }

    #[test]
    fn needed_reaches_the_target_exactly() {
        assert_eq!(needed(7, 3, 80), 1); // 8/10 = 80%
        assert_eq!(needed(8, 2, 80), 0);
        assert_eq!(needed(0, 1, 80), 1);
        assert_eq!(needed(0, 0, 80), 0);
        assert_eq!(needed(3, 4, 80), 3); // ceil(5.6) = 6
    }

    /// Facts for [`memoized_rows_equal_rows_made_per_item`]: with `share`,
    /// every repeated id is one shared [`crate::facts::Name`] (as the
    /// cache makes them); without, each fact has its own copy, so no item
    /// finds another's memoized row and every key is made from the text.
    fn scattered_facts(share: bool) -> (Vec<ResponseFact>, Vec<TicketFact>) {
        use crate::facts::Name;
        let mut names: HashMap<String, Name> = HashMap::default();
        let mut name = |s: String| -> Name {
            if share {
                names
                    .entry(s.clone())
                    .or_insert_with(|| Name::from(&*s))
                    .clone()
            } else {
                Name::from(&*s)
            }
        };
        // Deterministic and spread: a small linear congruential sequence.
        let mut x: u64 = 7;
        let mut next = |n: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % n
        };
        const DAY: i64 = 86_400_000_000;
        let start = 1_735_689_600_000_000; // 2025-01-01T00:00:00Z
        let responses = (0..600)
            .map(|i| {
                let program = next(2);
                let mut answers: Vec<(Name, f64)> = Vec::new();
                for q in ["nps", "partnership", "future_plans", "csat"] {
                    if next(4) != 0 {
                        let top = if q == "csat" { 5 } else { 10 };
                        answers.push((name(q.to_string()), next(top + 1) as f64));
                    }
                }
                ResponseFact {
                    feedback_id: format!("f{i:04}").as_str().into(),
                    response_id: format!("r{i}").into(),
                    program_id: name(format!("p{program}")),
                    account_id: name(format!("a{}", next(12))),
                    submitted_at: start + next(730) as i64 * DAY + next(1000) as i64,
                    answers: answers.into_boxed_slice(),
                    unmatched: next(5) == 0,
                }
            })
            .collect();
        let tickets = (0..200)
            .map(|i| {
                let opened_at = start + next(730) as i64 * DAY;
                let closed = (next(3) != 0).then(|| opened_at + next(40) as i64 * DAY);
                TicketFact {
                    ticket_id: format!("t{i:04}").as_str().into(),
                    program_id: name(format!("p{}", next(2))),
                    workflow_id: name(["", "w1", "w2"][next(3) as usize].to_string()),
                    account_id: name(format!("a{}", next(12))),
                    opened_at,
                    fc_due: opened_at + 2 * DAY,
                    close_due: opened_at + 30 * DAY,
                    first_contact: (next(2) == 0).then(|| opened_at + next(4) as i64 * DAY),
                    first_close: closed,
                    reopens: 0,
                    owner: name(format!("o{}@x", next(5))),
                    feedback_id: format!("f{:04}", next(600)).as_str().into(),
                    require_opportunity: false,
                    closed: None,
                    sla: Default::default(),
                }
            })
            .collect();
        (responses, tickets)
    }

    /// Rows found by an item's shared ids ([`Memo`]) are the rows its
    /// slice values give, for every slice and filter a view takes: the
    /// same tables with shared ids as with an own copy per item (where
    /// every key is made from the item's text).
    #[test]
    fn memoized_rows_equal_rows_made_per_item() {
        let mut cx = Context::default();
        let mut accounts = HashMap::default();
        // a11 is not in the directory (its region is unknown).
        for a in 0..11 {
            accounts.insert(
                format!("a{a}"),
                AccountFact {
                    region: format!("r{}", a % 3),
                    segment: format!("s{}", a % 2),
                    team: [("csm".to_string(), format!("o{}@x", a % 4))].into(),
                },
            );
        }
        cx.accounts = Arc::new(accounts);
        // o4@x has no team; o0 and o1 share one.
        for (o, t) in [
            ("o0@x", "t0"),
            ("o1@x", "t0"),
            ("o2@x", "t1"),
            ("o3@x", "t2"),
        ] {
            cx.teams.insert(o.into(), t.into());
        }
        cx.metrics
            .insert("p1".into(), ("csat".into(), "csat".into()));
        cx.config.leaderboard.min_responses = 2;
        let (shared_r, shared_t) = scattered_facts(true);
        let (own_r, own_t) = scattered_facts(false);
        // The shared facts share; the others do not.
        let last = |rs: &[ResponseFact]| {
            let same_program = rs.iter().rfind(|r| *r.program_id == *rs[0].program_id);
            same_program.unwrap().program_id.same(&rs[0].program_id)
        };
        assert!(last(&shared_r) && !last(&own_r));
        let query = |by: Vec<Dim>, only: Vec<(Dim, &str)>| Query {
            from: Some(1_735_689_600_000_000 + 30 * 86_400_000_000),
            to: None,
            as_of: i64::MAX,
            by,
            period: crate::query::Period::Quarter,
            tz: jiff::tz::TimeZone::get("Europe/Berlin").unwrap(),
            only: only.into_iter().map(|(d, v)| (d, v.to_string())).collect(),
            memo: Default::default(),
        };
        let cases = [
            (vec![], vec![]),
            (vec![Dim::Region], vec![]),
            (vec![Dim::Period], vec![]),
            (vec![Dim::Region, Dim::Period], vec![]),
            (vec![Dim::Segment, Dim::Program], vec![]),
            (vec![Dim::Team], vec![]),
            (vec![Dim::Region], vec![(Dim::Period, "2025-Q3")]),
            (vec![Dim::Period], vec![(Dim::Region, "r1")]),
            (vec![], vec![(Dim::Segment, "s0"), (Dim::Program, "p0")]),
            // A response's team is its account's, a ticket's its owner's.
            (vec![Dim::Region], vec![(Dim::Team, "t0")]),
            (vec![Dim::Period, Dim::Segment], vec![(Dim::Team, "t1")]),
            (vec![], vec![(Dim::Owner, "o1@x")]),
            (vec![], vec![(Dim::Workflow, "w2")]),
        ];
        let mut rows = 0;
        for (by, only) in cases {
            let (a, b) = (query(by.clone(), only.clone()), query(by, only));
            let nps = (nps(&a, &shared_r, &cx), nps(&b, &own_r, &cx));
            assert_eq!(nps.0, nps.1, "nps {a:?}");
            let lb = (
                crate::leaderboard::leaderboard(&a, &shared_r, &cx),
                crate::leaderboard::leaderboard(&b, &own_r, &cx),
            );
            assert_eq!(lb.0, lb.1, "leaderboard {a:?}");
            let j = (
                crate::journey::journey(&a, &shared_r, &shared_t, &cx),
                crate::journey::journey(&b, &own_r, &own_t, &cx),
            );
            assert_eq!(j.0, j.1, "journey {a:?}");
            let u = (
                crate::uplift::uplift(&a, &shared_r, &shared_t, &cx),
                crate::uplift::uplift(&b, &own_r, &own_t, &cx),
            );
            assert_eq!(u.0, u.1, "uplift {a:?}");
            rows += [nps.0, lb.0, j.0, u.0]
                .into_iter()
                .map(|t| t.map_or(0, |t| t.rows.len()))
                .sum::<usize>();
        }
        // Not a comparison of empty tables.
        assert!(rows > 200, "{rows} rows");
    }

    #[test]
    fn nps_bands() {
        assert_eq!(band(10.0), Band::Promoter);
        assert_eq!(band(9.0), Band::Promoter);
        assert_eq!(band(8.0), Band::Passive);
        assert_eq!(band(7.0), Band::Passive);
        assert_eq!(band(6.0), Band::Detractor);
        assert_eq!(band(0.0), Band::Detractor);
    }
}
