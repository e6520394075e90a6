//! Analytics against a generated scenario: 300 accounts in three regions,
//! over 5 000 responses over two years across the example programs, and
//! the tickets they open contacted, reassigned, closed and reopened at
//! known times, all driven through the real services on a simulated clock.
//! Every view is checked against values this test computes from the
//! scenario's own data (never from the system's tables), now and as of a
//! past time; a PostgreSQL analytics process following the same events
//! answers the same; a rebuild from the stream equals the incremental
//! projection row for row.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use closeloop_domain::TicketId;
use closeloop_domain::feedback::FeedbackId;
use closeloop_proto::v1;
use closeloop_proto::v1::analytics_service_client::AnalyticsServiceClient;
use closeloop_proto::v1::clock_service_client::ClockServiceClient;
use closeloop_proto::v1::feedback_service_client::FeedbackServiceClient;
use closeloop_server::{ClockConfig, Roles};
use closeloop_tests::{App, AppOptions, Backend, Nats, TestDb, spawn_app_with, unique_prefix};
use tonic_types::StatusExt as _;

const DAY_US: i64 = 86_400_000_000;
/// The scenario moves in ticks of two days.
const TICK_US: i64 = 2 * DAY_US;
/// Two years.
const TICKS: u32 = 365;
const SOURCE: &str = "scenario";
const REGIONS: [&str; 3] = ["EMEA", "AMER", "APAC"];
const SEGMENTS: [&str; 2] = ["enterprise", "mid-market"];
/// The account that moves from EMEA to APAC, and when.
const MOVER: &str = "ACC-000";
const MOVE_TICK: u32 = 250;
const AS_OF_TICK: u32 = 200;
const LEADER: &str = "lead@vendor.example";

/// Monday 2025-01-06 12:00 UTC.
fn t0() -> std::time::SystemTime {
    humantime::parse_rfc3339("2025-01-06T12:00:00Z").unwrap()
}

fn t0_us() -> i64 {
    t0().duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

fn at(tick: u32) -> i64 {
    t0_us() + i64::from(tick) * TICK_US
}

fn ts(us: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: (us.rem_euclid(1_000_000) * 1000) as i32,
    }
}

/// A small deterministic generator (xorshift64*): the scenario is the same
/// on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

struct Account {
    id: String,
    region: &'static str,
    segment: &'static str,
    csm: String,
    dm: String,
}

struct Response {
    response_id: String,
    program: &'static str,
    account: usize,
    tick: u32,
    submitted_at: i64,
    question: &'static str,
    value: i64,
    /// A later revision: (tick, new value).
    revision: Option<(u32, i64)>,
}

impl Response {
    fn feedback_id(&self) -> String {
        FeedbackId::of(SOURCE, &self.response_id).to_string()
    }

    fn number(&self) -> i64 {
        self.response_id[1..].parse().unwrap()
    }

    /// A relationship response's other leaderboard answers (partnership,
    /// future plans), derived from its number.
    fn extra(&self) -> Vec<(&'static str, i64)> {
        if self.program != "relationship-nps" {
            return Vec::new();
        }
        let n = self.number();
        vec![
            ("partnership", (n * 7) % 11),
            ("future_plans", (n * 3 + 5) % 11),
        ]
    }
}

/// A close's notes: long enough for the quality rubric (15 words) or not,
/// by the ticket's position.
fn root_cause(i: usize) -> &'static str {
    if i.is_multiple_of(3) {
        "the upgrade changed a workflow the customer relied on every day and nobody had told their administrators beforehand"
    } else {
        "the upgrade changed a workflow the customer relied on"
    }
}

fn actions_taken(i: usize) -> &'static str {
    if i.is_multiple_of(2) {
        "restored the workflow, walked the team through it, and agreed a review of upgrade notes with their administrators next month"
    } else {
        "restored the workflow and walked the team through it"
    }
}

struct Ticket {
    /// Its position in the scenario (chooses its close notes).
    index: usize,
    /// The response it was opened from.
    response: usize,
    id: String,
    program: &'static str,
    workflow: &'static str,
    account: usize,
    opened: u32,
    owner: String,
    reassign: Option<(u32, String)>,
    contact: Option<u32>,
    closes: Vec<u32>,
    reopens: Vec<u32>,
    /// A customer reply (not an owner action, not a contact).
    reply: Option<u32>,
    /// Waiting on the customer from a tick, until a later one (ended by the
    /// owner, or by a customer reply when `true`) or the close. Only
    /// [`PAUSING`]'s tickets pause their closure clock while waiting (which
    /// moves their warnings and breaches: [`pause`]); no wait moves a
    /// closure or first-contact target, which counts from the opening
    /// (docs/metrics.md).
    wait: Option<(u32, Option<(u32, bool)>)>,
}

/// The one workflow whose closure clock pauses while its ticket waits on
/// the customer (`pause_while_waiting`, set by [`programs_file`]).
const PAUSING: &str = "px-negative";

/// The example programs, with [`PAUSING`] pausing its closure clock while
/// the ticket waits on the customer.
fn programs_file(dir: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(closeloop_tests::example("programs.yaml")).unwrap();
    let id = format!("      - id: {PAUSING}\n");
    assert!(text.contains(&id), "the workflow is in the examples");
    let out = text.replace(
        &id,
        &format!("{id}        sla: {{pause_while_waiting: true}}\n"),
    );
    let path = dir.join("programs.yaml");
    std::fs::write(&path, out).unwrap();
    path
}

/// When ticket `t`'s first closure run is paused: from the tick its wait
/// starts until the tick it resumes (the owner ends the wait, or the
/// customer replies), or the close (which stops the clock), or never
/// within the scenario (`None`).
fn pause(t: &Ticket) -> Option<(u32, Option<u32>)> {
    if t.workflow != PAUSING {
        return None;
    }
    let (from, until) = t.wait?;
    let end = match until {
        Some((u, _)) => Some(u),
        // A reply during the wait resumes the clock.
        None => t.reply.filter(|r| *r > from).or(t.closes.first().copied()),
    };
    Some((from, end))
}

struct Scenario {
    accounts: Vec<Account>,
    /// Person → team.
    teams: BTreeMap<String, String>,
    /// (email, manager): some CSMs have no manager.
    people: Vec<(String, Option<String>)>,
    team_members: BTreeMap<String, Vec<String>>,
    responses: Vec<Response>,
    tickets: Vec<Ticket>,
}

fn csm(i: usize) -> String {
    format!("csm{i:02}@vendor.example")
}

fn scenario() -> Scenario {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut people = Vec::new();
    let mut teams = BTreeMap::new();
    let mut team_members: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in 0..3 {
        people.push((format!("mgr{m}@vendor.example"), None));
    }
    for i in 0..12 {
        // csm09-11 have no manager.
        let manager = (i < 9).then(|| format!("mgr{}@vendor.example", i / 4));
        people.push((csm(i), manager));
        let team = format!("cs-team-{}", ["a", "b", "c", "d"][i / 3]);
        teams.insert(csm(i), team.clone());
        team_members.entry(team).or_default().push(csm(i));
    }
    for i in 0..6 {
        let dm = format!("dm{i}@vendor.example");
        people.push((dm.clone(), Some("mgr0@vendor.example".into())));
        teams.insert(dm.clone(), "delivery".into());
        team_members.entry("delivery".into()).or_default().push(dm);
    }
    people.push((LEADER.into(), None));
    people.push(("pm@vendor.example".into(), None));
    people.push(("partner@vendor.example".into(), None));
    teams.insert(LEADER.into(), "cs-leadership".into());
    team_members.insert("cs-leadership".into(), vec![LEADER.into()]);
    team_members.insert(
        "product-management".into(),
        vec!["pm@vendor.example".into()],
    );
    team_members.insert(
        "partner-success".into(),
        vec!["partner@vendor.example".into()],
    );
    teams.insert("pm@vendor.example".into(), "product-management".into());
    teams.insert("partner@vendor.example".into(), "partner-success".into());

    let accounts: Vec<Account> = (0..300)
        .map(|i| Account {
            id: format!("ACC-{i:03}"),
            region: REGIONS[i % 3],
            segment: SEGMENTS[(i / 3) % 2],
            csm: csm(i % 12),
            dm: format!("dm{}@vendor.example", i % 6),
        })
        .collect();

    let mut responses = Vec::new();
    let mut n = 0;
    let mut push = |rng: &mut Rng,
                    responses: &mut Vec<Response>,
                    program: &'static str,
                    question: &'static str,
                    account: usize,
                    tick: u32,
                    value: i64| {
        n += 1;
        // Submitted up to two days before the tick it arrives at.
        let submitted_at = at(tick) - rng.below(TICK_US as u64) as i64;
        responses.push(Response {
            response_id: format!("R{n:05}"),
            program,
            account,
            tick,
            submitted_at,
            question,
            value,
            revision: None,
        });
    };
    // Relationship NPS: each account once a year (90%).
    for a in 0..accounts.len() {
        for year in 0..2u32 {
            if rng.chance(90) {
                let tick = year * 182 + rng.below(180) as u32 + 1;
                let score = rng.below(11) as i64;
                push(
                    &mut rng,
                    &mut responses,
                    "relationship-nps",
                    "nps",
                    a,
                    tick,
                    score,
                );
            }
        }
    }
    let scale = |rng: &mut Rng| match rng.below(100) {
        0..7 => 1,
        7..15 => 2,
        15..40 => 3,
        40..70 => 4,
        _ => 5,
    };
    for _ in 0..3500 {
        let a = rng.below(300) as usize;
        let tick = rng.below(u64::from(TICKS) - 1) as u32 + 1;
        let v = scale(&mut rng);
        push(
            &mut rng,
            &mut responses,
            "implementation-csat",
            "csat",
            a,
            tick,
            v,
        );
    }
    for _ in 0..1500 {
        let a = rng.below(300) as usize;
        let tick = rng.below(u64::from(TICKS) - 1) as u32 + 1;
        let v = scale(&mut rng);
        push(
            &mut rng,
            &mut responses,
            "product-experience",
            "experience",
            a,
            tick,
            v,
        );
    }
    // Some satisfied implementation answers are revised later (staying
    // above 2, so no ticket changes).
    for r in responses.iter_mut() {
        if r.program == "implementation-csat"
            && r.value >= 3
            && r.tick + 10 < TICKS
            && rng.chance(8)
        {
            let later = r.tick + 1 + rng.below(10) as u32;
            let v = if r.value == 5 { 3 } else { r.value + 1 };
            r.revision = Some((later, v));
        }
    }

    let mut tickets = Vec::new();
    let mut extra = Rng(0x2545_F491_4F6C_DD1D);
    for (ri, r) in responses.iter().enumerate() {
        let acct = &accounts[r.account];
        let (workflow, owner) = match r.program {
            "relationship-nps" => (
                match r.value {
                    0..=6 => "rnps-detractor",
                    7 | 8 => "rnps-passive",
                    _ => "rnps-promoter",
                },
                acct.csm.clone(),
            ),
            "implementation-csat" if r.value <= 2 => {
                ("impl-dissatisfied-vendor-led", acct.dm.clone())
            }
            "product-experience" if r.value <= 2 => ("px-negative", LEADER.to_string()),
            _ => continue,
        };
        let o = r.tick;
        let mut t = Ticket {
            index: tickets.len(),
            response: ri,
            id: TicketId::for_feedback(&r.feedback_id(), workflow).to_string(),
            program: r.program,
            workflow,
            account: r.account,
            opened: o,
            owner,
            reassign: None,
            contact: match rng.below(10) {
                0..5 => Some(o),
                5 | 6 => Some(o + 1),
                7 | 8 => Some(o + 2),
                _ => None,
            },
            closes: Vec::new(),
            reopens: Vec::new(),
            reply: None,
            wait: None,
        };
        if rng.chance(85) {
            let c = o + 1 + rng.below(20) as u32;
            t.closes.push(c);
            if rng.chance(10) {
                t.reopens.push(c + 1);
                t.closes.push(c + 3);
            }
        }
        // A ticket is closed only after a contact: without one by then, the
        // owner calls on the day they close it.
        if let Some(first) = t.closes.first()
            && t.contact.is_none_or(|c| c > *first)
        {
            t.contact = Some(*first);
        }
        if rng.chance(10)
            && t.closes.first().is_none_or(|c| *c > o + 1)
            && r.program == "relationship-nps"
        {
            t.reassign = Some((o + 1, csm((r.account + 1) % 12)));
        }
        t.closes.retain(|c| *c < TICKS);
        t.reopens.retain(|c| *c < TICKS);
        if t.reopens.len() > t.closes.len().saturating_sub(1) {
            // Reopened but not closed again within the scenario.
            t.closes.truncate(t.reopens.len());
        }
        if t.contact.is_some_and(|c| c >= TICKS) {
            t.contact = None;
        }
        // Replies and waits, before the first close (or any time while it
        // stays open), from a generator of their own: the rest of the
        // scenario is the same with or without them.
        let open_until = t.closes.first().copied().unwrap_or(TICKS);
        if extra.chance(30) {
            let tick = o + extra.below(6) as u32;
            t.reply = (tick < open_until).then_some(tick);
        }
        if extra.chance(20) {
            let from = o + extra.below(3) as u32;
            let until = from + 1 + extra.below(5) as u32;
            let by_reply = extra.chance(50);
            if from < open_until && t.reply != Some(from) {
                t.wait = Some((
                    from,
                    (until < open_until && t.reply.is_none_or(|r| r < from || r > until))
                        .then_some((until, by_reply)),
                ));
            }
        }
        tickets.push(t);
    }
    Scenario {
        accounts,
        teams,
        people,
        team_members,
        responses,
        tickets,
    }
}

/// What the scenario says the views are, as of `as_of` (µs).
struct Expect<'a> {
    s: &'a Scenario,
    as_of: i64,
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Rate {
    met: u64,
    missed: u64,
    pending: u64,
    reopens: u64,
}

impl Expect<'_> {
    fn region(&self, account: usize) -> String {
        let a = &self.s.accounts[account];
        if a.id == MOVER && self.as_of >= at(MOVE_TICK) {
            "APAC".into()
        } else {
            a.region.into()
        }
    }

    fn owner(&self, t: &Ticket) -> String {
        match &t.reassign {
            Some((tick, o)) if at(*tick) <= self.as_of => o.clone(),
            _ => t.owner.clone(),
        }
    }

    fn slice(&self, t: &Ticket, dim: &str) -> String {
        match dim {
            "program" => t.program.into(),
            "workflow" => t.workflow.into(),
            "owner" => self.owner(t),
            "team" => self
                .s
                .teams
                .get(&self.owner(t))
                .cloned()
                .unwrap_or_else(|| "(no team)".into()),
            "region" => self.region(t.account),
            "segment" => self.s.accounts[t.account].segment.into(),
            "period" => quarter(at(t.opened)),
            other => panic!("{other}"),
        }
    }

    fn outcome(&self, t: &Ticket, closure: bool) -> &'static str {
        let opened = at(t.opened);
        let due = if closure {
            opened + 30 * DAY_US
        } else {
            opened + 2 * DAY_US
        };
        let seen = |tick: &u32| at(*tick) <= self.as_of;
        let first_close = t.closes.first().filter(|c| seen(c)).map(|c| at(*c));
        let event = if closure {
            first_close
        } else {
            t.contact.filter(seen).map(at)
        };
        match event {
            Some(e) if e <= due => "met",
            Some(_) => "missed",
            None if self.as_of > due || (!closure && first_close.is_some()) => "missed",
            None => "pending",
        }
    }

    fn rates(&self, by: &[&str], closure: bool) -> BTreeMap<Vec<String>, Rate> {
        let mut out: BTreeMap<Vec<String>, Rate> = BTreeMap::new();
        for t in &self.s.tickets {
            if at(t.opened) > self.as_of {
                continue;
            }
            let key = by.iter().map(|d| self.slice(t, d)).collect();
            let r = out.entry(key).or_default();
            match self.outcome(t, closure) {
                "met" => r.met += 1,
                "missed" => r.missed += 1,
                _ => r.pending += 1,
            }
            if closure {
                r.reopens += t.reopens.iter().filter(|x| at(**x) <= self.as_of).count() as u64;
            }
        }
        out
    }

    /// (promoters, passives, detractors) by region and year; CSAT
    /// (responses, top-2, sum) by program.
    fn nps(&self) -> BTreeMap<Vec<String>, (u64, u64, u64)> {
        let mut out: BTreeMap<Vec<String>, (u64, u64, u64)> = BTreeMap::new();
        for r in &self.s.responses {
            if r.program != "relationship-nps" || at(r.tick) > self.as_of {
                continue;
            }
            let year = jiff::Timestamp::from_microsecond(r.submitted_at)
                .unwrap()
                .to_zoned(jiff::tz::TimeZone::UTC)
                .year()
                .to_string();
            let e = out.entry(vec![self.region(r.account), year]).or_default();
            match r.value {
                9 | 10 => e.0 += 1,
                7 | 8 => e.1 += 1,
                _ => e.2 += 1,
            }
        }
        out
    }

    fn csat(&self) -> BTreeMap<String, (u64, u64, i64)> {
        let mut out: BTreeMap<String, (u64, u64, i64)> = BTreeMap::new();
        for r in &self.s.responses {
            if r.program == "relationship-nps" || at(r.tick) > self.as_of {
                continue;
            }
            let v = match r.revision {
                Some((tick, v)) if at(tick) <= self.as_of => v,
                _ => r.value,
            };
            let e = out.entry(r.program.to_string()).or_default();
            e.0 += 1;
            e.1 += u64::from(v >= 4);
            e.2 += v;
        }
        out
    }
}

/// Whether a timer-driven mark (a warning, a breach, an escalation) is
/// recorded as of a time: a timer fires when the clock reaches the first
/// tick at or after its due time, and an owner action at that same tick
/// races it (both are at the same instant), so that case is `Maybe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tri {
    No,
    Maybe,
    Yes,
}

/// Counts of a mark: surely recorded, and possibly recorded.
#[derive(Debug, Default, Clone, Copy)]
struct Bound {
    yes: u64,
    maybe: u64,
}

impl Bound {
    fn add(&mut self, t: Tri) {
        match t {
            Tri::Yes => self.yes += 1,
            Tri::Maybe => self.maybe += 1,
            Tri::No => {}
        }
    }

    fn admits(&self, got: f64) -> bool {
        got >= self.yes as f64 && got <= (self.yes + self.maybe) as f64
    }
}

/// What the scenario says of one ticket's SLA marks.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Marks {
    warned: Tri,
    fc_breached: Tri,
    close_breached: Tri,
    escalated: Tri,
}

impl Expect<'_> {
    fn seen(&self, tick: u32) -> bool {
        at(tick) <= self.as_of
    }

    /// A timer firing at the advance to tick `fire`, unless the action at
    /// tick `stop` stopped it before.
    fn timer(&self, fire: u32, stop: Option<u32>) -> Tri {
        match stop {
            Some(s) if s < fire => Tri::No,
            Some(s) if s == fire => {
                if self.seen(fire) {
                    Tri::Maybe
                } else {
                    Tri::No
                }
            }
            _ if fire >= TICKS || at(fire) > self.as_of => Tri::No,
            // Recorded when it fires, just after the clock reached `fire`.
            _ if at(fire) == self.as_of => Tri::Maybe,
            _ => Tri::Yes,
        }
    }

    fn marks(&self, t: &Ticket) -> Marks {
        self.marks_with(t, true)
    }

    /// [`Expect::marks`]; with `pausing` false, as if no workflow paused
    /// (to show the scenario's pauses move marks).
    fn marks_with(&self, t: &Ticket, pausing: bool) -> Marks {
        let o = t.opened;
        // First contact: warned at 50% and 75% and breached at 100% of
        // 48 h, all reached at the next tick.
        let fc = self.timer(o + 1, t.contact);
        // Closure runs: from the opening, then from each reopening, each
        // stopped by the close after it; warned at 50% (15 d: tick 8) and
        // breached at 30 d (tick 15).
        // A pause of the first run (waits start by tick o + 2, before
        // either timer) moves both by its length; paused until the end,
        // neither fires.
        let mut warned = fc;
        let mut close_breached = Tri::No;
        let starts = std::iter::once(o).chain(t.reopens.iter().copied());
        for (i, start) in starts.enumerate() {
            let stop = t.closes.get(i).copied();
            let shift = match pause(t).filter(|_| i == 0 && pausing) {
                None => Some(0),
                Some((from, end)) => {
                    assert!(from < start + 8, "{}: a pause after a timer", t.id);
                    end.map(|e| e - from)
                }
            };
            if let Some(p) = shift {
                warned = warned.max(self.timer(start + 8 + p, stop));
                close_breached = close_breached.max(self.timer(start + 15 + p, stop));
            }
        }
        // Untouched for 7 days (3.5 ticks): escalated at the 4th tick after
        // the last owner action of an open stretch.
        let mut escalated = Tri::No;
        let starts = std::iter::once(o).chain(t.reopens.iter().copied());
        for (i, start) in starts.enumerate() {
            let end = t.closes.get(i).copied();
            let mut touches: Vec<u32> = vec![start];
            touches.extend(
                t.contact
                    .into_iter()
                    .chain(t.reassign.as_ref().map(|r| r.0))
                    .filter(|x| *x > start && end.is_none_or(|e| *x < e)),
            );
            touches.sort();
            touches.dedup();
            for (j, a) in touches.iter().enumerate() {
                let next = touches.get(j + 1).copied().or(end);
                escalated = escalated.max(self.timer(a + 4, next));
            }
        }
        Marks {
            warned,
            fc_breached: fc,
            close_breached,
            escalated,
        }
    }

    fn escalations(&self, by: &[&str]) -> BTreeMap<Vec<String>, [Bound; 4]> {
        let mut out: BTreeMap<Vec<String>, [Bound; 4]> = BTreeMap::new();
        for t in &self.s.tickets {
            if !self.seen(t.opened) {
                continue;
            }
            let key = by.iter().map(|d| self.slice(t, d)).collect();
            let m = self.marks(t);
            let b = out.entry(key).or_default();
            b[0].add(m.warned);
            b[1].add(m.fc_breached);
            b[2].add(m.close_breached);
            b[3].add(m.escalated);
        }
        out
    }

    /// The ticket's closes and reopens recorded by the report time: its
    /// last close when it is closed then.
    fn last_close(&self, t: &Ticket) -> Option<u32> {
        let close = t.closes.iter().copied().rfind(|c| self.seen(*c))?;
        let reopen = t.reopens.iter().copied().rfind(|r| self.seen(*r));
        reopen.is_none_or(|r| r < close).then_some(close)
    }

    /// Quality score (0-1) of a closed ticket, and its owner at the close.
    fn quality(&self, t: &Ticket) -> Option<(f64, String)> {
        let close = self.last_close(t)?;
        let passed = [
            t.index.is_multiple_of(3),
            t.index.is_multiple_of(2),
            t.contact.is_some_and(|c| c <= close),
            self.outcome(t, true) == "met",
            self.outcome(t, false) == "met",
        ];
        let owner = match &t.reassign {
            Some((tick, o)) if *tick <= close => o.clone(),
            _ => t.owner.clone(),
        };
        Some((
            passed.iter().filter(|p| **p).count() as f64 / passed.len() as f64,
            owner,
        ))
    }

    /// Per (quarter, CSM): responses, accounts, the sum of scores.
    fn leaderboard(&self) -> BTreeMap<Vec<String>, (u64, BTreeSet<usize>, f64)> {
        let mut out: BTreeMap<Vec<String>, (u64, BTreeSet<usize>, f64)> = BTreeMap::new();
        for r in &self.s.responses {
            if r.program != "relationship-nps" || !self.seen(r.tick) {
                continue;
            }
            let vals: Vec<f64> = std::iter::once(r.value)
                .chain(r.extra().into_iter().map(|(_, v)| v))
                .map(|v| v as f64)
                .collect();
            let e = out
                .entry(vec![
                    quarter(r.submitted_at),
                    self.s.accounts[r.account].csm.clone(),
                ])
                .or_default();
            e.0 += 1;
            e.1.insert(r.account);
            e.2 += vals.iter().sum::<f64>() / vals.len() as f64;
        }
        out
    }
}

/// NPS of (promoters, detractors, answers).
fn nps_of(c: (u64, u64, u64)) -> Option<f64> {
    (c.2 > 0).then(|| 100.0 * (c.0 as f64 - c.1 as f64) / c.2 as f64)
}

/// The quarter of `us` in Europe/Berlin.
fn quarter(us: i64) -> String {
    let d = jiff::Timestamp::from_microsecond(us)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::get("Europe/Berlin").unwrap())
        .date();
    format!("{}-Q{}", d.year(), (d.month() - 1) / 3 + 1)
}

async fn drive(app: &App, s: &Scenario) {
    let mut dir = app.directory().await;
    for (email, manager) in &s.people {
        dir.upsert_person(v1::UpsertPersonRequest {
            person: Some(v1::Person {
                email: email.clone(),
                name: email.split('@').next().unwrap().to_string(),
                manager_email: manager.clone().unwrap_or_default(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    for (team, members) in &s.team_members {
        dir.upsert_team(v1::UpsertTeamRequest {
            team: Some(v1::Team {
                id: team.clone(),
                name: team.clone(),
                members: members.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let account = |a: &Account, region: &str| v1::Account {
        id: a.id.clone(),
        name: a.id.clone(),
        region: region.to_string(),
        segment: a.segment.to_string(),
        team: vec![
            v1::AccountTeamMember {
                role: "csm".into(),
                email: a.csm.clone(),
            },
            v1::AccountTeamMember {
                role: "delivery_manager".into(),
                email: a.dm.clone(),
            },
        ],
        sequence: 0,
    };
    let mut last = 0;
    for a in &s.accounts {
        last = dir
            .upsert_account(v1::UpsertAccountRequest {
                account: Some(account(a, a.region)),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .sequence;
    }
    dir.get_account(v1::GetAccountRequest {
        account_id: s.accounts.last().unwrap().id.clone(),
        min_sequence: last,
    })
    .await
    .unwrap();

    let mut by_tick: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, r) in s.responses.iter().enumerate() {
        by_tick.entry(r.tick).or_default().push(i);
    }
    let mut revisions: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, r) in s.responses.iter().enumerate() {
        if let Some((tick, _)) = r.revision {
            revisions.entry(tick).or_default().push(i);
        }
    }
    let mut opened: BTreeMap<u32, Vec<&Ticket>> = BTreeMap::new();
    let mut actions: BTreeMap<u32, Vec<(u8, &Ticket)>> = BTreeMap::new();
    for t in &s.tickets {
        opened.entry(t.opened).or_default().push(t);
        if let Some((tick, _)) = &t.reassign {
            actions.entry(*tick).or_default().push((0, t));
        }
        if let Some(c) = t.contact {
            actions.entry(c).or_default().push((1, t));
        }
        for (i, c) in t.closes.iter().enumerate() {
            // Reopened, the ticket needs a contact again before its next close.
            if i > 0 {
                actions.entry(*c).or_default().push((1, t));
            }
            actions.entry(*c).or_default().push((2, t));
        }
        for r in &t.reopens {
            actions.entry(*r).or_default().push((3, t));
        }
        // After the owner's actions of the tick: a wait starts (4), ends
        // (5), the customer replies (6).
        if let Some((from, until)) = t.wait {
            actions.entry(from).or_default().push((4, t));
            match until {
                Some((tick, false)) => actions.entry(tick).or_default().push((5, t)),
                Some((tick, true)) => actions.entry(tick).or_default().push((6, t)),
                None => {}
            }
        }
        if let Some(tick) = t.reply {
            actions.entry(tick).or_default().push((6, t));
        }
    }
    let mut feedback = FeedbackServiceClient::connect(app.grpc_url())
        .await
        .unwrap();
    let mut tickets = app.tickets().await;
    let mut clock = ClockServiceClient::connect(app.grpc_url()).await.unwrap();
    let doc = |r: &Response, value: i64, revised: Option<i64>| {
        let acct = &s.accounts[r.account];
        let mut attributes = std::collections::BTreeMap::new();
        if r.program == "implementation-csat" {
            attributes.insert("implementation_led_by".to_string(), "vendor".to_string());
        }
        v1::Feedback {
            response_id: r.response_id.clone(),
            source: SOURCE.into(),
            program: r.program.into(),
            account_id: acct.id.clone(),
            respondent: Some(v1::Respondent {
                email: format!("buyer@{}.example", acct.id.to_lowercase()),
                name: "Buyer".into(),
                role: "CIO".into(),
            }),
            submitted_at: Some(ts(r.submitted_at)),
            answers: std::iter::once((r.question, value))
                .chain(r.extra())
                .map(|(q, v)| {
                    (
                        q.to_string(),
                        v1::Answer {
                            value: Some(v1::answer::Value::IntValue(v)),
                        },
                    )
                })
                .collect(),
            attributes,
            revised_at: revised.map(ts),
            ..Default::default()
        }
    };
    for tick in 0..TICKS {
        if tick > 0 {
            clock
                .advance_clock(v1::AdvanceClockRequest {
                    seconds: (TICK_US / 1_000_000) as u64,
                })
                .await
                .unwrap();
        }
        if tick == MOVE_TICK {
            let a = s.accounts.iter().find(|a| a.id == MOVER).unwrap();
            dir.upsert_account(v1::UpsertAccountRequest {
                account: Some(account(a, "APAC")),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let mut batch: Vec<v1::Feedback> = by_tick
            .get(&tick)
            .into_iter()
            .flatten()
            .map(|i| {
                let r = &s.responses[*i];
                doc(r, r.value, None)
            })
            .collect();
        batch.extend(revisions.get(&tick).into_iter().flatten().map(|i| {
            let r = &s.responses[*i];
            doc(r, r.revision.unwrap().1, Some(at(tick)))
        }));
        if !batch.is_empty() {
            let answered = feedback
                .submit_batch(v1::SubmitFeedbackBatchRequest { feedback: batch })
                .await
                .unwrap()
                .into_inner();
            for r in &answered.results {
                assert!(
                    r.status == v1::SubmitStatus::Received as i32
                        || r.status == v1::SubmitStatus::Updated as i32,
                    "{r:?}"
                );
            }
        }
        // Every ticket of this tick opens before the clock moves on.
        for t in opened.get(&tick).into_iter().flatten() {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match tickets
                    .get_ticket(v1::GetTicketRequest {
                        ticket_id: t.id.clone(),
                        min_sequence: 0,
                    })
                    .await
                {
                    Ok(_) => break,
                    Err(e) if e.code() == tonic::Code::NotFound => {}
                    Err(e) => panic!("{e:?}"),
                }
                assert!(Instant::now() < deadline, "ticket {} never opened", t.id);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let mut todo = actions.remove(&tick).unwrap_or_default();
        todo.sort_by_key(|(kind, _)| *kind);
        // What the escalation role must have seen before the clock moves
        // on (else a timer could fire for a ticket it has not yet seen
        // contacted): each ticket opened or acted on now, and whether it
        // ends the tick closed.
        let mut settle: BTreeMap<&str, bool> = opened
            .get(&tick)
            .into_iter()
            .flatten()
            .map(|t| (t.id.as_str(), false))
            .collect();
        // (Replies and waits are not owner actions: no new untouched period.)
        for (kind, t) in todo.iter().filter(|(kind, _)| *kind < 4) {
            settle.insert(t.id.as_str(), *kind == 2);
        }
        for (kind, t) in todo {
            let request_id = format!("{}-{kind}-{tick}", t.id);
            let done = match kind {
                0 => tickets
                    .reassign_ticket(v1::ReassignTicketRequest {
                        request_id,
                        ticket_id: t.id.clone(),
                        new_owner_email: t.reassign.as_ref().unwrap().1.clone(),
                        reason: "coverage".into(),
                        actor: String::new(),
                    })
                    .await
                    .map(|_| ()),
                1 => tickets
                    .log_contact(v1::LogContactRequest {
                        request_id,
                        ticket_id: t.id.clone(),
                        channel: v1::ContactChannel::Phone as i32,
                        summary: "called the customer".into(),
                        actor: String::new(),
                    })
                    .await
                    .map(|_| ()),
                2 => tickets
                    .close_ticket(v1::CloseTicketRequest {
                        request_id,
                        ticket_id: t.id.clone(),
                        root_cause_category: "product".into(),
                        root_cause: root_cause(t.index).into(),
                        actions_taken: actions_taken(t.index).into(),
                        opportunity: None,
                        actor: String::new(),
                    })
                    .await
                    .map(|_| ()),
                3 => tickets
                    .reopen_ticket(v1::ReopenTicketRequest {
                        request_id,
                        ticket_id: t.id.clone(),
                        reason: "the problem came back".into(),
                        actor: String::new(),
                    })
                    .await
                    .map(|_| ()),
                4 => tickets
                    .wait_on_customer(v1::WaitRequest {
                        request_id,
                        ticket_id: t.id.clone(),
                        reason: "waiting for their export".into(),
                        actor: String::new(),
                    })
                    .await
                    .map(|_| ()),
                5 => tickets
                    .end_wait(v1::WaitRequest {
                        request_id,
                        ticket_id: t.id.clone(),
                        reason: "they sent it".into(),
                        actor: String::new(),
                    })
                    .await
                    .map(|_| ()),
                _ => tickets
                    .record_customer_reply(v1::RecordCustomerReplyRequest {
                        request_id,
                        ticket_id: t.id.clone(),
                        text: "here is what we found".into(),
                        actor: String::new(),
                    })
                    .await
                    .map(|_| ()),
            };
            if let Err(e) = done {
                panic!("tick {tick}: action {kind} on {}: {e:?}", t.id);
            }
        }
        // Every touch (the opening too) starts an untouched period at this
        // tick; a close ends it.
        for (id, closed) in settle {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let sla = match tickets
                    .get_ticket(v1::GetTicketRequest {
                        ticket_id: id.to_string(),
                        min_sequence: 0,
                    })
                    .await
                {
                    Ok(r) => r.into_inner().sla,
                    Err(e) if e.code() == tonic::Code::NotFound => None,
                    Err(e) => panic!("{e:?}"),
                };
                let since = sla
                    .as_ref()
                    .map(|s| s.untouched_since.as_ref().map(|t| t.seconds));
                let want = (!closed).then_some(at(tick) / 1_000_000);
                if since == Some(want) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "tick {tick}: the SLA of {id} never saw it: {sla:?}"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
}

fn values(r: &v1::Report, row: &v1::ReportRow) -> BTreeMap<String, Option<f64>> {
    r.measures
        .iter()
        .cloned()
        .zip(row.values.iter().map(|m| m.value))
        .collect()
}

fn rates_of(r: &v1::Report) -> BTreeMap<Vec<String>, Rate> {
    r.rows
        .iter()
        .map(|row| {
            let v = values(r, row);
            let n = |m: &str| v.get(m).copied().flatten().unwrap_or(0.0) as u64;
            (
                row.key.clone(),
                Rate {
                    met: n("met"),
                    missed: n("missed"),
                    pending: n("pending"),
                    reopens: n("reopens"),
                },
            )
        })
        .collect()
}

fn request(by: &[&str], as_of: Option<i64>) -> v1::ReportRequest {
    v1::ReportRequest {
        by: by.iter().map(|b| b.to_string()).collect(),
        period: "quarter".into(),
        time_zone: "Europe/Berlin".into(),
        as_of: as_of.map(ts),
        ..Default::default()
    }
}

async fn closure(app: &App, by: &[&str], as_of: Option<i64>) -> v1::Report {
    AnalyticsServiceClient::connect(app.grpc_url())
        .await
        .unwrap()
        .closure(request(by, as_of))
        .await
        .unwrap()
        .into_inner()
}

/// Waits until the app's views count every ticket and every close.
async fn caught_up(app: &App, s: &Scenario, end: i64) {
    let want = Expect { s, as_of: end }.rates(&[], true);
    let want = want.get(&Vec::new()).cloned().unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = closure(app, &[], None).await;
        let got = rates_of(&v1::Report {
            rows: vec![r.total.clone().unwrap()],
            ..r.clone()
        });
        if got.get(&Vec::new()) == Some(&want) {
            // The responses too.
            let n = AnalyticsServiceClient::connect(app.grpc_url())
                .await
                .unwrap()
                .nps(request(&[], None))
                .await
                .unwrap()
                .into_inner();
            let v = values(&n, n.total.as_ref().unwrap());
            let csat = Expect { s, as_of: end }.csat();
            let want_csat: u64 = csat.values().map(|c| c.0).sum();
            if v["csat_responses"] == Some(want_csat as f64) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "views never caught up: {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Checks every view of `app` against the scenario as of `as_of` (the
/// clock's time when `None`).
async fn check(app: &App, s: &Scenario, as_of: Option<i64>, end: i64) {
    let e = Expect {
        s,
        as_of: as_of.unwrap_or(end),
    };
    let mut a = AnalyticsServiceClient::connect(app.grpc_url())
        .await
        .unwrap();
    for by in [
        vec![],
        vec!["program", "workflow"],
        vec!["region"],
        vec!["owner"],
        vec!["team"],
        vec!["segment", "period"],
    ] {
        for closure in [true, false] {
            let req = request(&by, as_of);
            let r = if closure {
                a.closure(req).await
            } else {
                a.first_contact(req).await
            }
            .unwrap()
            .into_inner();
            let want = e.rates(&by, closure);
            let got = if by.is_empty() {
                rates_of(&v1::Report {
                    rows: vec![r.total.clone().unwrap()],
                    ..r.clone()
                })
            } else {
                rates_of(&r)
            };
            assert_eq!(got, want, "closure={closure} by {by:?} as of {as_of:?}");
            // Rate and needed follow from the counts.
            for row in &r.rows {
                let v = values(&r, row);
                let (met, missed) = (v["met"].unwrap(), v["missed"].unwrap());
                if met + missed > 0.0 {
                    assert_eq!(v["rate"], Some(100.0 * met / (met + missed)));
                } else {
                    assert_eq!(v["rate"], None);
                }
                let needed = ((0.8 * (met + missed)) - met - 1e-9).ceil().max(0.0);
                assert_eq!(v["needed"], Some(needed), "{row:?}");
            }
        }
    }
    // NPS by region and year; CSAT by program.
    let mut req = request(&["region", "period"], as_of);
    req.period = "year".into();
    req.time_zone = "UTC".into();
    let r = a.nps(req).await.unwrap().into_inner();
    let got: BTreeMap<Vec<String>, (u64, u64, u64)> = r
        .rows
        .iter()
        .filter_map(|row| {
            let v = values(&r, row);
            let n = |m: &str| v[m].unwrap() as u64;
            (n("responses") > 0).then(|| {
                (
                    row.key.clone(),
                    (n("promoters"), n("passives"), n("detractors")),
                )
            })
        })
        .collect();
    assert_eq!(got, e.nps(), "nps as of {as_of:?}");
    for row in &r.rows {
        let v = values(&r, row);
        let n = v["responses"].unwrap();
        if n > 0.0 {
            let nps = 100.0 * (v["promoters"].unwrap() - v["detractors"].unwrap()) / n;
            assert_eq!(v["nps"], Some(nps));
        }
    }
    let r = a
        .nps(request(&["program"], as_of))
        .await
        .unwrap()
        .into_inner();
    for (program, (n, top, sum)) in e.csat() {
        let row = r.rows.iter().find(|x| x.key == [program.clone()]).unwrap();
        let v = values(&r, row);
        assert_eq!(v["csat_responses"], Some(n as f64), "{program}");
        assert_eq!(v["csat"], Some(100.0 * top as f64 / n as f64), "{program}");
        let mean = v["csat_mean"].unwrap();
        assert!(
            (mean - sum as f64 / n as f64).abs() < 1e-9,
            "{program}: {mean}"
        );
    }
}

async fn explain(app: &App, req: v1::ExplainRequest) -> v1::ExplainResponse {
    AnalyticsServiceClient::connect(app.grpc_url())
        .await
        .unwrap()
        .explain(req)
        .await
        .unwrap()
        .into_inner()
}

async fn report(app: &App, view: &str, req: v1::ReportRequest) -> v1::Report {
    let mut a = AnalyticsServiceClient::connect(app.grpc_url())
        .await
        .unwrap();
    match view {
        "escalations" => a.escalations(req).await,
        "quality" => a.quality(req).await,
        "leaderboard" => a.leaderboard(req).await,
        "journey" => a.journey(req).await,
        "uplift" => a.uplift(req).await,
        other => panic!("{other}"),
    }
    .unwrap()
    .into_inner()
}

fn close_to(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-9,
        (None, None) => true,
        _ => false,
    }
}

/// Checks escalations, quality, leaderboard, journey and uplift against the
/// scenario.
async fn check_more(app: &App, s: &Scenario, as_of: Option<i64>, end: i64) {
    let e = Expect {
        s,
        as_of: as_of.unwrap_or(end),
    };
    // Escalations and breaches: within what the scenario surely and
    // possibly recorded (an action at the due tick races its timer).
    for by in [
        vec![],
        vec!["region"],
        vec!["team"],
        vec!["program", "workflow"],
    ] {
        let r = report(app, "escalations", request(&by, as_of)).await;
        let want = e.escalations(&by);
        let rows: Vec<&v1::ReportRow> = if by.is_empty() {
            vec![r.total.as_ref().unwrap()]
        } else {
            r.rows.iter().collect()
        };
        assert_eq!(rows.len(), want.len(), "escalations by {by:?}");
        for row in rows {
            let v = values(&r, row);
            let b = &want[&row.key];
            for (i, m) in [
                "warned",
                "first_contact_breached",
                "closure_breached",
                "escalated",
            ]
            .iter()
            .enumerate()
            {
                let got = v[*m].unwrap();
                assert!(
                    b[i].admits(got),
                    "{m} by {by:?} {:?} as of {as_of:?}: {got}, want {:?}",
                    row.key,
                    b[i]
                );
            }
            // One escalation level is configured.
            assert_eq!(v["level_2"], Some(0.0));
            assert_eq!(v["level_1"], v["escalated"]);
            let n = v["tickets"].unwrap();
            assert!(close_to(
                v["escalation_rate"],
                Some(100.0 * v["escalated"].unwrap() / n)
            ));
        }
    }

    // Closure quality by owner (at the close).
    let r = report(app, "quality", request(&["owner"], as_of)).await;
    let mut want: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for t in &s.tickets {
        if let Some((score, owner)) = e.quality(t) {
            let w = want.entry(owner).or_default();
            w.0 += 1;
            w.1 += score;
        }
    }
    let got: BTreeMap<String, (u64, f64)> = r
        .rows
        .iter()
        .map(|row| {
            let v = values(&r, row);
            (
                row.key[0].clone(),
                (v["tickets"].unwrap() as u64, v["score"].unwrap()),
            )
        })
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (owner, (n, sum)) in &want {
        let (gn, gscore) = got[owner];
        assert_eq!(gn, *n, "quality tickets of {owner}");
        assert!(
            (gscore - 100.0 * sum / *n as f64).abs() < 1e-9,
            "quality of {owner}: {gscore}"
        );
    }

    // The leaderboard per quarter (Europe/Berlin).
    let r = report(app, "leaderboard", request(&[], as_of)).await;
    let want = e.leaderboard();
    assert_eq!(r.rows.len(), want.len());
    let mut unranked = 0;
    for row in &r.rows {
        let v = values(&r, row);
        let (n, accounts, sum) = &want[&row.key];
        assert_eq!(v["responses"], Some(*n as f64), "{:?}", row.key);
        assert_eq!(v["accounts"], Some(accounts.len() as f64), "{:?}", row.key);
        assert!(close_to(v["score"], Some(sum / *n as f64)), "{:?}", row.key);
        if *n < 5 {
            unranked += 1;
            assert_eq!(v["rank"], None, "{:?} has {n} responses", row.key);
        } else {
            let mine = sum / *n as f64;
            let above = want
                .iter()
                .filter(|(k, (m, _, s2))| {
                    k[0] == row.key[0] && *m >= 5 && s2 / *m as f64 > mine + 1e-9
                })
                .count();
            assert_eq!(v["rank"], Some((above + 1) as f64), "{:?}", row.key);
        }
    }
    assert!(unranked > 0, "some teams are below the minimum count");

    // The journey per program.
    let r = report(app, "journey", request(&[], as_of)).await;
    let with_ticket: BTreeSet<usize> = s
        .tickets
        .iter()
        .filter(|t| e.seen(t.opened))
        .map(|t| t.response)
        .collect();
    for (program, stage) in [
        ("relationship-nps", "relationship"),
        ("implementation-csat", "implementation"),
        ("product-experience", "adoption"),
    ] {
        let row = r
            .rows
            .iter()
            .find(|x| x.key[0] == program)
            .unwrap_or_else(|| panic!("{program}: {:?}", r.rows));
        assert_eq!(row.key[1], stage);
        let v = values(&r, row);
        let responses: Vec<usize> = (0..s.responses.len())
            .filter(|i| s.responses[*i].program == program && e.seen(s.responses[*i].tick))
            .collect();
        assert_eq!(v["responses"], Some(responses.len() as f64), "{program}");
        let unmatched = responses
            .iter()
            .filter(|i| !with_ticket.contains(i))
            .count();
        assert_eq!(v["unmatched"], Some(unmatched as f64), "{program}");
        let tickets: Vec<&Ticket> = s
            .tickets
            .iter()
            .filter(|t| t.program == program && e.seen(t.opened))
            .collect();
        assert_eq!(v["tickets"], Some(tickets.len() as f64), "{program}");
        let open = tickets.iter().filter(|t| e.last_close(t).is_none()).count();
        assert_eq!(v["open"], Some(open as f64), "{program}");
        let rate = |closure: bool| {
            let met = tickets
                .iter()
                .filter(|t| e.outcome(t, closure) == "met")
                .count();
            let missed = tickets
                .iter()
                .filter(|t| e.outcome(t, closure) == "missed")
                .count();
            (met + missed > 0).then(|| 100.0 * met as f64 / (met + missed) as f64)
        };
        assert!(close_to(v["closure_rate"], rate(true)), "{program}");
        assert!(close_to(v["first_contact_rate"], rate(false)), "{program}");
        let mut breached = Bound::default();
        for t in &tickets {
            let m = e.marks(t);
            breached.add(m.fc_breached.max(m.close_breached));
        }
        assert!(breached.admits(v["breached"].unwrap()), "{program}");
    }

    // Uplift, years in UTC: accounts answering in two consecutive years,
    // acted on when a ticket from their first response of the earlier
    // year closed before their first response of the later one.
    let mut req = request(&[], as_of);
    req.period = "year".into();
    req.time_zone = "UTC".into();
    let r = report(app, "uplift", req.clone()).await;
    let year = |us: i64| {
        jiff::Timestamp::from_microsecond(us)
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .year()
    };
    // account -> year -> responses in time order
    let mut by_account: BTreeMap<usize, BTreeMap<i16, Vec<&Response>>> = BTreeMap::new();
    for r in &s.responses {
        if r.program == "relationship-nps" && e.seen(r.tick) {
            by_account
                .entry(r.account)
                .or_default()
                .entry(year(r.submitted_at))
                .or_default()
                .push(r);
        }
    }
    let counts = |rs: &[&Response]| {
        rs.iter().fold((0, 0, 0), |(p, d, n), r| {
            (
                p + u64::from(r.value >= 9),
                d + u64::from(r.value <= 6),
                n + 1,
            )
        })
    };
    let add = |a: (u64, u64, u64), b: (u64, u64, u64)| (a.0 + b.0, a.1 + b.1, a.2 + b.2);
    // (pair, acted) -> accounts, NPS counts before, after.
    type Counts = (u64, u64, u64);
    let mut groups: BTreeMap<(String, bool), (u64, Counts, Counts)> = BTreeMap::new();
    for years in by_account.values_mut() {
        for rs in years.values_mut() {
            rs.sort_by_key(|r| (r.submitted_at, r.feedback_id()));
        }
        for (y, earlier) in years.iter() {
            let Some(later) = years.get(&(y + 1)) else {
                continue;
            };
            let first = earlier[0];
            let first_i = s
                .responses
                .iter()
                .position(|r| r.response_id == first.response_id)
                .unwrap();
            let closed = s
                .tickets
                .iter()
                .filter(|t| t.response == first_i)
                .filter_map(|t| t.closes.first().copied().filter(|c| e.seen(*c)))
                .map(at)
                .min();
            let acted = closed.is_some_and(|c| c < later[0].submitted_at);
            let g = groups.entry((format!("{y}→{}", y + 1), acted)).or_default();
            g.0 += 1;
            g.1 = add(g.1, counts(earlier));
            g.2 = add(g.2, counts(later));
        }
    }
    let mut seen_pairs = 0;
    for row in &r.rows {
        let v = values(&r, row);
        for (acted, prefix) in [(true, "acted"), (false, "not_acted")] {
            let g = groups
                .get(&(row.key[0].clone(), acted))
                .copied()
                .unwrap_or_default();
            assert_eq!(
                v[&format!("{prefix}_accounts")],
                Some(g.0 as f64),
                "{row:?}"
            );
            assert!(close_to(v[&format!("{prefix}_before")], nps_of(g.1)));
            assert!(close_to(v[&format!("{prefix}_after")], nps_of(g.2)));
        }
        let change = |acted: bool| {
            let g = groups[&(row.key[0].clone(), acted)];
            nps_of(g.2).unwrap() - nps_of(g.1).unwrap()
        };
        assert!(close_to(v["uplift"], Some(change(true) - change(false))));
        let (lo, hi) = (v["ci_low"].unwrap(), v["ci_high"].unwrap());
        assert!(lo <= hi, "{lo} {hi}");
        seen_pairs += 1;
    }
    assert_eq!(
        seen_pairs,
        groups.keys().map(|k| &k.0).collect::<BTreeSet<_>>().len()
    );
    // Seeded: the same question gives the same interval.
    let again = report(app, "uplift", req).await;
    assert_eq!(again.rows, r.rows);
}

/// A process running the analytics role alone on `db_url`, following the
/// install `prefix`.
async fn analytics_only(nats: &Nats, db_url: &str, prefix: &str) -> App {
    spawn_app_with(
        &nats.url(),
        db_url,
        prefix,
        AppOptions {
            clock: ClockConfig::Simulated { start: Some(t0()) },
            roles: Roles::parse("analytics").unwrap(),
            ..AppOptions::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_view_matches_the_scenario_now_as_of_a_past_time_on_both_backends() {
    let s = scenario();
    assert!(s.accounts.len() >= 300);
    assert!(s.responses.len() >= 5000, "{}", s.responses.len());
    // Customer replies, and waits ended by the owner, by a reply and by the
    // close (or still waiting): none of them may move a closure or
    // first-contact target; waits of the pausing workflow move its
    // warnings and breaches.
    let waits = |f: fn(&Option<(u32, bool)>) -> bool| {
        s.tickets
            .iter()
            .filter(|t| t.wait.as_ref().is_some_and(|(_, until)| f(until)))
            .count()
    };
    assert!(s.tickets.iter().filter(|t| t.reply.is_some()).count() > 50);
    assert!(waits(|u| matches!(u, Some((_, false)))) > 10);
    assert!(waits(|u| matches!(u, Some((_, true)))) > 10);
    assert!(waits(|u| u.is_none()) > 10);
    // Waits of the pausing workflow move warnings and breaches (and ones of
    // the others do not): each way for some tickets.
    let end = at(TICKS - 1);
    let e = Expect { s: &s, as_of: end };
    let paused = s.tickets.iter().filter(|t| pause(t).is_some());
    let moved = paused
        .clone()
        .filter(|t| e.marks_with(t, true) != e.marks_with(t, false))
        .count();
    assert!(moved >= 5, "pauses that move a mark: {moved}");
    assert!(paused.count() > moved, "pauses that move none");
    let config = tempfile::tempdir().unwrap();
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let prefix = unique_prefix();
    let app = spawn_app_with(
        &nats.url(),
        &db.url,
        &prefix,
        AppOptions {
            clock: ClockConfig::Simulated { start: Some(t0()) },
            programs: programs_file(config.path()),
            ..AppOptions::default()
        },
    )
    .await;
    let started = Instant::now();
    drive(&app, &s).await;
    eprintln!(
        "scenario: {} responses, {} tickets driven in {:?}",
        s.responses.len(),
        s.tickets.len(),
        started.elapsed()
    );
    // The scenario reaches every outcome, now and in the past (first
    // contacts are rarely pending: most are logged within a tick).
    for as_of in [end, at(AS_OF_TICK)] {
        for closure in [true, false] {
            let total = Expect { s: &s, as_of }.rates(&[], closure)[&Vec::new()].clone();
            assert!(
                total.met > 0 && total.missed > 0 && (!closure || total.pending > 0),
                "closure={closure}: {total:?}"
            );
            assert!(!closure || total.reopens > 0, "{total:?}");
        }
    }
    // Every mark is surely recorded for some tickets, and surely not for
    // others; quality scores vary.
    let marks = Expect { s: &s, as_of: end }.escalations(&[])[&Vec::new()];
    let n = s.tickets.len() as u64;
    for (i, b) in marks.iter().enumerate() {
        assert!(b.yes > 0 && b.yes + b.maybe < n, "mark {i}: {b:?}");
    }
    let scores: BTreeSet<u64> = s
        .tickets
        .iter()
        .filter_map(|t| Expect { s: &s, as_of: end }.quality(t))
        .map(|(q, _)| (q * 5.0) as u64)
        .collect();
    assert!(scores.len() >= 4, "{scores:?}");
    caught_up(&app, &s, end).await;
    check(&app, &s, None, end).await;
    check_more(&app, &s, None, end).await;
    check(&app, &s, Some(at(AS_OF_TICK)), end).await;
    check_more(&app, &s, Some(at(AS_OF_TICK)), end).await;
    // Just before and at the move: the mover's region.
    check(&app, &s, Some(at(MOVE_TICK) - 1), end).await;

    // The drill-down: the missed closures of one team are exactly the
    // scenario's.
    let e = Expect { s: &s, as_of: end };
    let team = "cs-team-b".to_string();
    let explained = explain(
        &app,
        v1::ExplainRequest {
            view: "closure".into(),
            request: Some(request(&["team"], None)),
            key: vec![team.clone()],
            only: "missed".into(),
            ..Default::default()
        },
    )
    .await;
    let got: BTreeSet<String> = explained.lines.iter().map(|l| l.cells[0].clone()).collect();
    let want: BTreeSet<String> = s
        .tickets
        .iter()
        .filter(|t| e.slice(t, "team") == team && e.outcome(t, true) == "missed")
        .map(|t| t.id.clone())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
    // A key of the wrong length is refused, saying what was given and
    // how long a row's key is.
    let refused = AnalyticsServiceClient::connect(app.grpc_url())
        .await
        .unwrap()
        .explain(v1::ExplainRequest {
            view: "closure".into(),
            request: Some(request(&["team"], None)),
            key: vec![team.clone(), "2026-Q1".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let why = &refused.get_details_bad_request().unwrap().field_violations[0];
    assert_eq!(why.field, "key");
    assert!(
        why.description.starts_with(
            "\"cs-team-b,2026-Q1\" is 2 values, and this report's rows have keys of 1"
        ),
        "{}",
        why.description
    );
    // Without slices only the total row is there, and it has no key.
    let refused = AnalyticsServiceClient::connect(app.grpc_url())
        .await
        .unwrap()
        .explain(v1::ExplainRequest {
            view: "closure".into(),
            request: Some(request(&[], None)),
            key: vec![team.clone()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    let why = &refused.get_details_bad_request().unwrap().field_violations[0];
    assert!(
        why.description
            .starts_with("\"cs-team-b\": without slices this report has only its total row"),
        "{}",
        why.description
    );

    // The escalated tickets of that team: every surely escalated one, and
    // none that surely was not.
    let explained = explain(
        &app,
        v1::ExplainRequest {
            view: "escalations".into(),
            request: Some(request(&["team"], None)),
            key: vec![team.clone()],
            only: "escalated".into(),
            ..Default::default()
        },
    )
    .await;
    let got: BTreeSet<String> = explained.lines.iter().map(|l| l.cells[0].clone()).collect();
    for t in s.tickets.iter().filter(|t| e.slice(t, "team") == team) {
        match e.marks(t).escalated {
            Tri::Yes => assert!(got.contains(&t.id), "{} escalated", t.id),
            Tri::No => assert!(!got.contains(&t.id), "{} not escalated", t.id),
            Tri::Maybe => {}
        }
    }

    // The pausing workflow's closure breaches, ticket by ticket: each
    // paused wait moved its ticket's breach by the paused time (or, paused
    // until the end, there is none).
    let explained = explain(
        &app,
        v1::ExplainRequest {
            view: "escalations".into(),
            request: Some(request(&["program", "workflow"], None)),
            key: vec!["product-experience".into(), PAUSING.into()],
            only: "breached".into(),
            ..Default::default()
        },
    )
    .await;
    let got: BTreeSet<String> = explained
        .lines
        .iter()
        .filter(|l| l.cells[7].split(' ').any(|c| c == "closure"))
        .map(|l| l.cells[0].clone())
        .collect();
    let mut checked = 0;
    for t in s.tickets.iter().filter(|t| t.workflow == PAUSING) {
        match e.marks(t).close_breached {
            Tri::Yes => assert!(got.contains(&t.id), "{} closure breached", t.id),
            Tri::No => assert!(!got.contains(&t.id), "{} closure not breached", t.id),
            Tri::Maybe => continue,
        }
        checked += usize::from(pause(t).is_some());
    }
    assert!(checked >= 10, "paused tickets checked: {checked}");

    // The ten worst closures, lowest score first, with what they missed.
    let worst = explain(
        &app,
        v1::ExplainRequest {
            view: "quality".into(),
            request: Some(request(&[], None)),
            order: "worst".into(),
            limit: 10,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(worst.lines.len(), 10);
    let score_col = worst.columns.iter().position(|c| c == "score").unwrap();
    let missed_col = worst.columns.iter().position(|c| c == "missed").unwrap();
    let lowest = s
        .tickets
        .iter()
        .filter_map(|t| e.quality(t))
        .map(|(q, _)| (100.0 * q).round() as i64)
        .min()
        .unwrap();
    assert_eq!(worst.lines[0].cells[score_col], lowest.to_string());
    let scores: Vec<i64> = worst
        .lines
        .iter()
        .map(|l| l.cells[score_col].parse().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] <= w[1]), "{scores:?}");
    assert!(worst.lines[0].cells[missed_col].contains("root_cause"));

    // A PostgreSQL analytics process following the same events answers the
    // same.
    let pg = TestDb::new(Backend::Postgres).await;
    let pg_app = analytics_only(&nats, &pg.url, &prefix).await;
    caught_up(&pg_app, &s, end).await;
    for by in [vec!["team", "period"], vec!["region", "workflow"]] {
        let a = closure(&app, &by, None).await;
        let b = closure(&pg_app, &by, None).await;
        assert_eq!((a.rows, a.total), (b.rows, b.total), "by {by:?}");
    }
    check(&pg_app, &s, Some(at(AS_OF_TICK)), end).await;

    // A rebuild from the stream into an empty database equals the
    // incremental projection, row for row.
    let fresh = TestDb::new(Backend::Sqlite).await;
    let rebuilt = analytics_only(&nats, &fresh.url, &prefix).await;
    caught_up(&rebuilt, &s, end).await;
    let incremental = sqlx::AnyPool::connect(&db.url).await.unwrap();
    let again = sqlx::AnyPool::connect(&fresh.url).await.unwrap();
    let tables = [
        ("analytics_tickets", "ticket_id"),
        ("analytics_ticket_events", "ticket_id, sequence"),
        ("analytics_responses", "feedback_id, sequence"),
        ("analytics_accounts", "account_id, sequence"),
        ("analytics_sla_due", "ticket_id"),
        ("analytics_sla_events", "ticket_id, sequence"),
        ("analytics_routing", "feedback_id"),
    ];
    for (table, order) in tables {
        let a = closeloop_tests::dump(
            &incremental,
            format!("SELECT * FROM {table} ORDER BY {order}"),
        )
        .await;
        let b =
            closeloop_tests::dump(&again, format!("SELECT * FROM {table} ORDER BY {order}")).await;
        assert!(!a.is_empty(), "{table} is empty");
        assert_eq!(a.len(), b.len(), "{table}");
        assert!(a == b, "{table} differs after a rebuild");
    }

    // A rebuild in place, beside the live tables, equals them too, and the
    // reports switch to it.
    let mut client = AnalyticsServiceClient::connect(app.grpc_url())
        .await
        .unwrap();
    let before = closure(&app, &["team", "period"], None).await;
    let started = client
        .rebuild_views(v1::RebuildViewsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.started, 1);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = client
            .view_status(v1::ViewStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if st
            .generations
            .iter()
            .any(|g| g.generation == 1 && g.state == "active")
        {
            break;
        }
        assert!(Instant::now() < deadline, "never switched: {st:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = closure(&app, &["team", "period"], None).await;
    assert_eq!((before.rows, before.total), (after.rows, after.total));
    assert!(
        after
            .positions
            .iter()
            .all(|p| p.projection.ends_with("@g1"))
    );
    for (table, order) in tables {
        let live = closeloop_tests::dump(
            &incremental,
            format!("SELECT * FROM {table} ORDER BY {order}"),
        )
        .await;
        let rebuilt = closeloop_tests::dump(
            &incremental,
            format!("SELECT * FROM {table}_g1 ORDER BY {order}"),
        )
        .await;
        assert_eq!(live.len(), rebuilt.len(), "{table}");
        assert!(live == rebuilt, "{table}_g1 differs from {table}");
    }
    rebuilt.stop().await.unwrap();
    pg_app.stop().await.unwrap();
    app.stop().await.unwrap();
}
