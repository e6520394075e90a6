//! The SLA aggregate: one per ticket, written only by the escalation role.
//!
//! It watches its ticket's events ([`SlaCommand::Observe`], in ticket
//! stream order) and runs three kinds of clock:
//!
//! - **first contact** and **closure**: a budget of counted time (calendar
//!   or business time, [`TimeBase`]) from a start; warnings at fractions of
//!   the budget, a breach when it is spent. A closure clock can be paused
//!   while the ticket waits on the customer (paused time is not counted).
//!   Contact stops the first-contact clock; closing stops every clock;
//!   reopening starts a new closure clock; a reassignment restarts the
//!   running clocks when the policy says `reset_on_reassign`.
//! - **untouched**: each owner action starts a new untouched period; level
//!   `n` escalates once per period when the period has lasted the level's
//!   time.
//!
//! Every due time is computed when a clock starts or resumes and recorded
//! in the event, so [`evolve`] needs no calendar and replaying the log
//! gives the same timers. [`timers`] lists what is still to fire; the
//! escalation role fires each with [`SlaCommand::Fire`] (its key is the
//! request id: firing twice is refused, not repeated).
//!
//! Breaches are sticky: a clock keeps its original due time and its due
//! time after pauses.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::Decision;
use crate::calendar::{BusinessCalendar, TimeBase};
use crate::ticket::{SlaPolicy, TicketEvent};
use crate::time::Timestamp;
use crate::values::TicketId;

const MICROS: i64 = 1_000_000;

/// A kind of clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClockKind {
    FirstContact,
    Closure,
}

impl ClockKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClockKind::FirstContact => "first_contact",
            ClockKind::Closure => "closure",
        }
    }

    pub fn parse(s: &str) -> Option<ClockKind> {
        match s {
            "first_contact" => Some(ClockKind::FirstContact),
            "closure" => Some(ClockKind::Closure),
            _ => None,
        }
    }
}

impl fmt::Display for ClockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a clock was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartCause {
    Opened,
    Reopened,
    /// Reassigned under a `reset_on_reassign` policy.
    Reassigned,
    /// An operator recomputed the ticket under its workflow's current policy.
    Recomputed,
}

impl StartCause {
    pub fn as_str(self) -> &'static str {
        match self {
            StartCause::Opened => "opened",
            StartCause::Reopened => "reopened",
            StartCause::Reassigned => "reassigned",
            StartCause::Recomputed => "recomputed",
        }
    }

    pub fn parse(s: &str) -> Option<StartCause> {
        match s {
            "opened" => Some(StartCause::Opened),
            "reopened" => Some(StartCause::Reopened),
            "reassigned" => Some(StartCause::Reassigned),
            "recomputed" => Some(StartCause::Recomputed),
            _ => None,
        }
    }
}

/// Why a clock stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Its goal was reached (first contact logged, ticket closed).
    Met,
    /// The ticket was closed (a first-contact clock closed without contact).
    Closed,
    /// Replaced by a new run (reset on reassignment, recompute).
    Replaced,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Met => "met",
            StopReason::Closed => "closed",
            StopReason::Replaced => "replaced",
        }
    }

    pub fn parse(s: &str) -> Option<StopReason> {
        match s {
            "met" => Some(StopReason::Met),
            "closed" => Some(StopReason::Closed),
            "replaced" => Some(StopReason::Replaced),
            _ => None,
        }
    }
}

/// A clock's start as recorded: its budget and the due times computed at
/// the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockStart {
    pub kind: ClockKind,
    /// 1 for the ticket's first clock of this kind, 2 for the next, ...
    pub run: u32,
    pub budget_secs: u64,
    pub started_at: Timestamp,
    pub due_at: Timestamp,
    /// (percent, when) of each warning.
    pub warn_at: Vec<(u32, Timestamp)>,
}

/// An untouched period as recorded: when it began and when each level is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UntouchedPeriod {
    /// 1 for the period from the opening, +1 per owner action.
    pub period: u32,
    pub since: Timestamp,
    /// (level, due) for levels 1, 2, ...
    pub level_due: Vec<(u32, Timestamp)>,
}

/// What the ticket was when its clocks first started (from its `opened`
/// event; the escalation needs it to tell people about it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tracked {
    pub account_id: String,
    pub program_id: String,
    pub workflow_id: String,
    pub title: String,
    pub opened_at: Timestamp,
    pub policy: SlaPolicy,
    /// The business calendar the clocks count in (empty: calendar time).
    pub calendar: String,
    /// The account's region when the ticket opened.
    pub region: String,
}

/// A fact about an SLA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlaEvent {
    /// Clocks started (an opening, a reopening, a reset on reassignment, a
    /// recompute), with the untouched period the cause began.
    ClocksStarted {
        ticket_sequence: u64,
        at: Timestamp,
        cause: StartCause,
        owner: String,
        /// Set on the opening (and on a recompute: the new policy).
        tracked: Option<Box<Tracked>>,
        clocks: Vec<ClockStart>,
        /// Clocks the start replaced (still running before it).
        replaced: Vec<ClockKind>,
        untouched: UntouchedPeriod,
    },
    /// An owner action: a new untouched period (none once closed), clocks
    /// it stopped, and the owner after it.
    Touched {
        ticket_sequence: u64,
        at: Timestamp,
        /// The ticket event kind (contact_logged, note_added, closed, ...).
        action: String,
        owner: String,
        stopped: Vec<(ClockKind, StopReason)>,
        untouched: Option<UntouchedPeriod>,
    },
    ClockPaused {
        ticket_sequence: u64,
        at: Timestamp,
        kind: ClockKind,
        reason: String,
        /// Counted time the clock had consumed when it paused.
        consumed_micros: i64,
    },
    ClockResumed {
        ticket_sequence: u64,
        at: Timestamp,
        kind: ClockKind,
        reason: String,
        /// Counted time the pause lasted.
        paused_secs: u64,
        due_at: Timestamp,
        warn_at: Vec<(u32, Timestamp)>,
    },
    Warned {
        kind: ClockKind,
        run: u32,
        pct: u32,
        due_at: Timestamp,
        /// The owner told.
        owner: String,
    },
    Breached {
        kind: ClockKind,
        run: u32,
        /// The owner told.
        owner: String,
        /// Due time when the clock started.
        original_due: Timestamp,
        /// Due time after pauses (when it was breached).
        due_at: Timestamp,
    },
    Escalated {
        level: u32,
        period: u32,
        untouched_since: Timestamp,
        owner: String,
        /// Who was told (the manager at that level, or the fallback).
        to: String,
        /// Set when the owner had no manager at that level and the
        /// program's fallback was told instead (the ticket is flagged).
        fallback_reason: String,
    },
}

impl SlaEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            SlaEvent::ClocksStarted { .. } => "clocks_started",
            SlaEvent::Touched { .. } => "touched",
            SlaEvent::ClockPaused { .. } => "clock_paused",
            SlaEvent::ClockResumed { .. } => "clock_resumed",
            SlaEvent::Warned { .. } => "warned",
            SlaEvent::Breached { .. } => "breached",
            SlaEvent::Escalated { .. } => "escalated",
        }
    }

    /// The ticket event this observed (0 for timer firings).
    pub fn ticket_sequence(&self) -> u64 {
        match self {
            SlaEvent::ClocksStarted {
                ticket_sequence, ..
            }
            | SlaEvent::Touched {
                ticket_sequence, ..
            }
            | SlaEvent::ClockPaused {
                ticket_sequence, ..
            }
            | SlaEvent::ClockResumed {
                ticket_sequence, ..
            } => *ticket_sequence,
            _ => 0,
        }
    }
}

/// An SLA event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedSla {
    pub ticket_id: TicketId,
    pub sequence: u64,
    pub occurred_at: Timestamp,
    pub request_id: String,
    pub event: SlaEvent,
}

/// One run of a clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockRun {
    pub kind: ClockKind,
    pub run: u32,
    pub budget_secs: u64,
    pub started_at: Timestamp,
    pub original_due: Timestamp,
    pub due_at: Timestamp,
    pub warn_at: Vec<(u32, Timestamp)>,
    /// Counted time consumed before `running_since`.
    pub consumed_micros: i64,
    /// When it last (re)started counting; `None` while paused or stopped.
    pub running_since: Option<Timestamp>,
    pub paused_since: Option<Timestamp>,
    pub paused_secs: u64,
    pub pauses: u32,
    pub warned: Vec<u32>,
    pub breached_at: Option<Timestamp>,
    pub stopped: Option<(Timestamp, StopReason)>,
}

impl ClockRun {
    fn from_start(c: &ClockStart) -> ClockRun {
        ClockRun {
            kind: c.kind,
            run: c.run,
            budget_secs: c.budget_secs,
            started_at: c.started_at,
            original_due: c.due_at,
            due_at: c.due_at,
            warn_at: c.warn_at.clone(),
            consumed_micros: 0,
            running_since: Some(c.started_at),
            paused_since: None,
            paused_secs: 0,
            pauses: 0,
            warned: Vec::new(),
            breached_at: None,
            stopped: None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.stopped.is_none()
    }

    /// `running`, `paused`, `breached` (and still running), `met`,
    /// `closed`, `replaced`.
    pub fn state(&self) -> &'static str {
        match (self.stopped, self.paused_since, self.breached_at) {
            (Some((_, r)), _, _) => r.as_str(),
            (None, Some(_), _) => "paused",
            (None, None, Some(_)) => "breached",
            (None, None, None) => "running",
        }
    }
}

/// An escalation that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationRecord {
    pub level: u32,
    pub period: u32,
    pub untouched_since: Timestamp,
    pub at: Timestamp,
    pub to: String,
    pub fallback_reason: String,
}

/// The SLA state of one ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct Sla {
    pub ticket_id: TicketId,
    pub tracked: Tracked,
    pub owner: String,
    /// Every clock run, oldest first.
    pub clocks: Vec<ClockRun>,
    /// The current untouched period (`None` once closed).
    pub untouched: Option<UntouchedPeriod>,
    /// Levels fired in the current period.
    pub escalated_levels: Vec<u32>,
    pub escalations: Vec<EscalationRecord>,
    pub closed: bool,
    /// The last ticket event observed.
    pub ticket_sequence: u64,
    /// Stream sequence of the last SLA event.
    pub sequence: u64,
}

impl Sla {
    /// The current run of `kind` (the last), if any.
    pub fn current(&self, kind: ClockKind) -> Option<&ClockRun> {
        self.clocks.iter().rev().find(|c| c.kind == kind)
    }

    fn current_mut(&mut self, kind: ClockKind) -> Option<&mut ClockRun> {
        self.clocks.iter_mut().rev().find(|c| c.kind == kind)
    }

    fn running(&self, kind: ClockKind) -> Option<&ClockRun> {
        self.current(kind).filter(|c| c.is_running())
    }

    fn next_run(&self, kind: ClockKind) -> u32 {
        self.current(kind).map_or(1, |c| c.run + 1)
    }
}

/// Named business calendars: what an SLA command may count in.
#[derive(Debug, Clone, Default)]
pub struct Calendars(pub BTreeMap<String, Arc<BusinessCalendar>>);

impl Calendars {
    /// The time base named `name` (empty or unknown: calendar time; the
    /// programs file is validated so that a named calendar exists).
    pub fn base(&self, name: &str) -> TimeBase {
        self.0
            .get(name)
            .map_or(TimeBase::Calendar, |c| TimeBase::Business(c.clone()))
    }
}

/// What the SLA of a ticket makes of one of the ticket's events.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub ticket_sequence: u64,
    /// When the ticket event happened.
    pub at: Timestamp,
    pub event: TicketEvent,
    /// The account's region (looked up for an opening; empty otherwise or
    /// when unknown).
    pub region: String,
    /// The ticket's workflow (for an opening).
    pub workflow_id: String,
    /// For an opening: the policy to run instead of the one the ticket
    /// carries (a manual ticket gets the programs file's defaults).
    pub policy: Option<SlaPolicy>,
}

/// Who an escalation goes to, resolved from the directory before the
/// escalation is fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationTarget {
    pub to: String,
    /// Why the fallback got it (empty: the manager at that level).
    pub fallback_reason: String,
}

/// A command on a ticket's SLA.
#[derive(Debug, Clone)]
pub enum SlaCommand {
    /// The ticket wrote this event.
    Observe(Box<Observation>),
    /// A timer fell due: `key` as [`timers`] named it.
    Fire {
        key: String,
        /// For an escalation timer: who to tell.
        target: Option<EscalationTarget>,
    },
    /// Restart the open ticket's clocks under `policy` (an operator's
    /// `sla recompute`), counting from the ticket's opening.
    Recompute { policy: SlaPolicy, at: Timestamp },
}

/// Why an SLA command writes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlaRule {
    #[error("the SLA of ticket {0} has not started (its opening was not observed)")]
    NotTracked(TicketId),
    /// The ticket event changes no clock (e.g. a customer reply while not
    /// waiting): nothing to record.
    #[error("nothing changes")]
    NoChange,
    #[error("timer {0:?} is not pending (fired already, or its clock stopped)")]
    NotPending(String),
    #[error("an escalation timer needs a target")]
    NoTarget,
    #[error("the ticket is closed: its clocks are stopped")]
    Closed,
}

fn secs_to_micros(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX / MICROS) * MICROS
}

/// `pct` percent of `budget`, without overflow.
fn percent_of(budget: i64, pct: u32) -> i64 {
    budget / 100 * i64::from(pct) + budget % 100 * i64::from(pct) / 100
}

fn warnings(
    base: &TimeBase,
    from: Timestamp,
    budget_secs: u64,
    consumed: i64,
    pcts: &[u32],
    already: &[u32],
) -> Vec<(u32, Timestamp)> {
    let budget = secs_to_micros(budget_secs);
    let mut out: Vec<(u32, Timestamp)> = pcts
        .iter()
        .filter(|p| **p > 0 && **p < 100 && !already.contains(p))
        .map(|p| (*p, percent_of(budget, *p)))
        // Only points the clock has not passed yet.
        .filter(|(_, point)| *point > consumed)
        .map(|(p, point)| (p, base.add(from, point - consumed)))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn start_clock(
    base: &TimeBase,
    kind: ClockKind,
    run: u32,
    budget_secs: u64,
    at: Timestamp,
    pcts: &[u32],
) -> ClockStart {
    ClockStart {
        kind,
        run,
        budget_secs,
        started_at: at,
        due_at: base.add(at, secs_to_micros(budget_secs)),
        warn_at: warnings(base, at, budget_secs, 0, pcts, &[]),
    }
}

fn untouched(
    base: &TimeBase,
    policy: &SlaPolicy,
    period: u32,
    since: Timestamp,
) -> UntouchedPeriod {
    UntouchedPeriod {
        period,
        since,
        level_due: policy
            .levels_secs()
            .into_iter()
            .enumerate()
            .map(|(i, s)| (i as u32 + 1, base.add(since, secs_to_micros(s))))
            .collect(),
    }
}

/// Decides what `command` means for the SLA of ticket `id`. Pure: the time
/// of every change is the observed ticket event's, and calendars come in
/// `calendars`.
pub fn decide(
    id: TicketId,
    state: Option<&Sla>,
    calendars: &Calendars,
    command: &SlaCommand,
) -> Result<Decision<SlaEvent>, SlaRule> {
    match command {
        SlaCommand::Observe(o) => observe(id, state, calendars, o),
        SlaCommand::Fire { key, target } => {
            let s = state.ok_or(SlaRule::NotTracked(id))?;
            let t = timers(s)
                .into_iter()
                .find(|t| &t.key == key)
                .ok_or_else(|| SlaRule::NotPending(key.clone()))?;
            Ok(Decision::Append(match t.what {
                TimerKind::Warn { kind, run, pct } => SlaEvent::Warned {
                    kind,
                    run,
                    pct,
                    due_at: s.current(kind).map_or(t.due_at, |c| c.due_at),
                    owner: s.owner.clone(),
                },
                TimerKind::Breach { kind, run } => {
                    let c = s.current(kind).expect("a timer's clock exists");
                    SlaEvent::Breached {
                        kind,
                        run,
                        owner: s.owner.clone(),
                        original_due: c.original_due,
                        due_at: c.due_at,
                    }
                }
                TimerKind::Escalate { level, period } => {
                    let target = target.as_ref().ok_or(SlaRule::NoTarget)?;
                    SlaEvent::Escalated {
                        level,
                        period,
                        untouched_since: s.untouched.as_ref().map_or(t.due_at, |u| u.since),
                        owner: s.owner.clone(),
                        to: target.to.clone(),
                        fallback_reason: target.fallback_reason.clone(),
                    }
                }
            }))
        }
        SlaCommand::Recompute { policy, at } => {
            let s = state.ok_or(SlaRule::NotTracked(id))?;
            if s.closed {
                return Err(SlaRule::Closed);
            }
            let calendar = policy.calendar_for(&s.tracked.region).to_string();
            let base = calendars.base(&calendar);
            let opened = s.tracked.opened_at;
            let mut clocks = Vec::new();
            let mut replaced = Vec::new();
            for kind in [ClockKind::FirstContact, ClockKind::Closure] {
                let Some(c) = s.running(kind) else { continue };
                let budget = match kind {
                    ClockKind::FirstContact => policy.first_contact_secs,
                    ClockKind::Closure => policy.close_within_secs,
                };
                // The new run counts from the old run's start (the opening,
                // or the reopening for a later closure clock).
                let from = if c.run == 1 { opened } else { c.started_at };
                clocks.push(start_clock(
                    &base,
                    kind,
                    c.run + 1,
                    budget,
                    from,
                    &policy.warn_pct,
                ));
                replaced.push(kind);
            }
            // The untouched period goes on (levels fired in it stay fired).
            let (period, since) = s
                .untouched
                .as_ref()
                .map_or((1, opened), |u| (u.period, u.since));
            let tracked = Tracked {
                policy: policy.clone(),
                calendar,
                ..s.tracked.clone()
            };
            Ok(Decision::Append(SlaEvent::ClocksStarted {
                ticket_sequence: s.ticket_sequence,
                at: *at,
                cause: StartCause::Recomputed,
                owner: s.owner.clone(),
                tracked: Some(Box::new(tracked)),
                clocks,
                replaced,
                untouched: untouched(&base, policy, period, since),
            }))
        }
    }
}

fn observe(
    id: TicketId,
    state: Option<&Sla>,
    calendars: &Calendars,
    o: &Observation,
) -> Result<Decision<SlaEvent>, SlaRule> {
    if let Some(s) = state
        && o.ticket_sequence <= s.ticket_sequence
    {
        return Ok(Decision::AlreadyApplied {
            sequence: s.sequence,
        });
    }
    let at = o.at;
    let seq = o.ticket_sequence;
    let s = match (state, &o.event) {
        (
            None,
            TicketEvent::Opened {
                account_id,
                owner_email,
                program_id,
                title,
                plan,
                ..
            },
        ) => {
            let policy = o.policy.clone().unwrap_or_else(|| plan.sla.clone());
            let calendar = policy.calendar_for(&o.region).to_string();
            let base = calendars.base(&calendar);
            let pcts = &policy.warn_pct;
            return Ok(Decision::Append(SlaEvent::ClocksStarted {
                ticket_sequence: seq,
                at,
                cause: StartCause::Opened,
                owner: owner_email.clone(),
                clocks: vec![
                    start_clock(
                        &base,
                        ClockKind::FirstContact,
                        1,
                        policy.first_contact_secs,
                        at,
                        pcts,
                    ),
                    start_clock(
                        &base,
                        ClockKind::Closure,
                        1,
                        policy.close_within_secs,
                        at,
                        pcts,
                    ),
                ],
                replaced: Vec::new(),
                untouched: untouched(&base, &policy, 1, at),
                tracked: Some(Box::new(Tracked {
                    account_id: account_id.clone(),
                    program_id: program_id.clone(),
                    workflow_id: o.workflow_id.clone(),
                    title: title.clone(),
                    opened_at: at,
                    calendar,
                    region: o.region.clone(),
                    policy,
                })),
            }));
        }
        (None, _) => return Err(SlaRule::NotTracked(id)),
        (Some(_), TicketEvent::Opened { .. }) => return Err(SlaRule::NoChange),
        (Some(s), _) => s,
    };
    let policy = &s.tracked.policy;
    let base = calendars.base(&s.tracked.calendar);
    let next_period = s.untouched.as_ref().map_or(1, |u| u.period + 1);
    let touched =
        |action: &str, owner: String, stopped: Vec<(ClockKind, StopReason)>, closes: bool| {
            SlaEvent::Touched {
                ticket_sequence: seq,
                at,
                action: action.to_string(),
                owner,
                stopped,
                untouched: (!closes).then(|| untouched(&base, policy, next_period, at)),
            }
        };
    let event = match &o.event {
        TicketEvent::Opened { .. } => unreachable!("handled above"),
        TicketEvent::ContactLogged { .. } => {
            let stopped = s
                .running(ClockKind::FirstContact)
                .map(|_| (ClockKind::FirstContact, StopReason::Met))
                .into_iter()
                .collect();
            touched("contact_logged", s.owner.clone(), stopped, false)
        }
        TicketEvent::NoteAdded { .. } => touched("note_added", s.owner.clone(), Vec::new(), false),
        TicketEvent::OwnerReassigned {
            new_owner_email, ..
        } => {
            if policy.reset_on_reassign {
                let pcts = &policy.warn_pct;
                let mut clocks = Vec::new();
                let mut replaced = Vec::new();
                for (kind, budget) in [
                    (ClockKind::FirstContact, policy.first_contact_secs),
                    (ClockKind::Closure, policy.close_within_secs),
                ] {
                    if s.running(kind).is_some() {
                        clocks.push(start_clock(&base, kind, s.next_run(kind), budget, at, pcts));
                        replaced.push(kind);
                    }
                }
                SlaEvent::ClocksStarted {
                    ticket_sequence: seq,
                    at,
                    cause: StartCause::Reassigned,
                    owner: new_owner_email.clone(),
                    tracked: None,
                    clocks,
                    replaced,
                    untouched: untouched(&base, policy, next_period, at),
                }
            } else {
                touched(
                    "owner_reassigned",
                    new_owner_email.clone(),
                    Vec::new(),
                    false,
                )
            }
        }
        TicketEvent::Closed { .. } => {
            let stopped = [ClockKind::FirstContact, ClockKind::Closure]
                .into_iter()
                .filter(|k| s.running(*k).is_some())
                .map(|k| {
                    let r = if k == ClockKind::Closure {
                        StopReason::Met
                    } else {
                        StopReason::Closed
                    };
                    (k, r)
                })
                .collect();
            touched("closed", s.owner.clone(), stopped, true)
        }
        TicketEvent::Reopened { .. } => SlaEvent::ClocksStarted {
            ticket_sequence: seq,
            at,
            cause: StartCause::Reopened,
            owner: s.owner.clone(),
            tracked: None,
            clocks: vec![start_clock(
                &base,
                ClockKind::Closure,
                s.next_run(ClockKind::Closure),
                policy.close_within_secs,
                at,
                &policy.warn_pct,
            )],
            replaced: Vec::new(),
            untouched: untouched(&base, policy, next_period, at),
        },
        TicketEvent::AwaitingCustomer { reason } => {
            let c = s.running(ClockKind::Closure).ok_or(SlaRule::NoChange)?;
            if !policy.pause_while_waiting || c.paused_since.is_some() {
                return Err(SlaRule::NoChange);
            }
            let since = c.running_since.unwrap_or(at);
            SlaEvent::ClockPaused {
                ticket_sequence: seq,
                at,
                kind: ClockKind::Closure,
                reason: reason.clone(),
                consumed_micros: c.consumed_micros + base.elapsed(since, at),
            }
        }
        TicketEvent::WaitEnded { reason } => resume(s, &base, seq, at, reason)?,
        TicketEvent::CustomerReplied { .. } => resume(s, &base, seq, at, "customer replied")?,
        TicketEvent::FeedbackRevised { .. } => return Err(SlaRule::NoChange),
    };
    Ok(Decision::Append(event))
}

fn resume(
    s: &Sla,
    base: &TimeBase,
    seq: u64,
    at: Timestamp,
    reason: &str,
) -> Result<SlaEvent, SlaRule> {
    let c = s.running(ClockKind::Closure).ok_or(SlaRule::NoChange)?;
    let since = c.paused_since.ok_or(SlaRule::NoChange)?;
    let budget = secs_to_micros(c.budget_secs);
    let left = (budget - c.consumed_micros).max(0);
    Ok(SlaEvent::ClockResumed {
        ticket_sequence: seq,
        at,
        kind: ClockKind::Closure,
        reason: reason.to_string(),
        paused_secs: u64::try_from(base.elapsed(since, at) / MICROS).unwrap_or(0),
        // A breached clock keeps the due time it breached at.
        due_at: if c.breached_at.is_some() {
            c.due_at
        } else {
            base.add(at, left)
        },
        warn_at: warnings(
            base,
            at,
            c.budget_secs,
            c.consumed_micros,
            &s.tracked.policy.warn_pct,
            &c.warned,
        ),
    })
}

/// Applies one stored event. Total: an event before the clocks started is
/// ignored.
pub fn evolve(state: Option<Sla>, e: &RecordedSla) -> Option<Sla> {
    let mut s = match (state, &e.event) {
        (
            None,
            SlaEvent::ClocksStarted {
                tracked: Some(t),
                owner,
                ..
            },
        ) => Sla {
            ticket_id: e.ticket_id,
            tracked: (**t).clone(),
            owner: owner.clone(),
            clocks: Vec::new(),
            untouched: None,
            escalated_levels: Vec::new(),
            escalations: Vec::new(),
            closed: false,
            ticket_sequence: 0,
            sequence: 0,
        },
        (None, _) => return None,
        (Some(s), _) => s,
    };
    match &e.event {
        SlaEvent::ClocksStarted {
            owner,
            tracked,
            clocks,
            replaced,
            untouched,
            at,
            ..
        } => {
            if let Some(t) = tracked {
                s.tracked = (**t).clone();
            }
            for k in replaced {
                if let Some(c) = s.current_mut(*k)
                    && c.stopped.is_none()
                {
                    c.stopped = Some((*at, StopReason::Replaced));
                }
            }
            s.owner.clone_from(owner);
            s.clocks.extend(clocks.iter().map(ClockRun::from_start));
            if s.untouched.as_ref().map(|u| u.period) != Some(untouched.period) {
                s.escalated_levels.clear();
            }
            s.untouched = Some(untouched.clone());
            s.closed = false;
        }
        SlaEvent::Touched {
            at,
            owner,
            stopped,
            untouched,
            action,
            ..
        } => {
            s.owner.clone_from(owner);
            for (k, r) in stopped {
                if let Some(c) = s.current_mut(*k)
                    && c.stopped.is_none()
                {
                    c.stopped = Some((*at, *r));
                    c.running_since = None;
                }
            }
            s.untouched = untouched.clone();
            s.escalated_levels.clear();
            if action == "closed" {
                s.closed = true;
            }
        }
        SlaEvent::ClockPaused {
            at,
            kind,
            consumed_micros,
            ..
        } => {
            if let Some(c) = s.current_mut(*kind)
                && c.running_since.take().is_some()
            {
                c.paused_since = Some(*at);
                c.pauses += 1;
                c.consumed_micros = *consumed_micros;
            }
        }
        SlaEvent::ClockResumed {
            at,
            kind,
            paused_secs,
            due_at,
            warn_at,
            ..
        } => {
            if let Some(c) = s.current_mut(*kind)
                && c.paused_since.take().is_some()
            {
                c.running_since = Some(*at);
                c.paused_secs += paused_secs;
                c.due_at = *due_at;
                c.warn_at.retain(|(p, _)| c.warned.contains(p));
                c.warn_at.extend(warn_at.iter().copied());
            }
        }
        SlaEvent::Warned { kind, run, pct, .. } => {
            if let Some(c) = s
                .clocks
                .iter_mut()
                .find(|c| c.kind == *kind && c.run == *run)
                && !c.warned.contains(pct)
            {
                c.warned.push(*pct);
            }
        }
        SlaEvent::Breached { kind, run, .. } => {
            if let Some(c) = s
                .clocks
                .iter_mut()
                .find(|c| c.kind == *kind && c.run == *run)
            {
                c.breached_at.get_or_insert(e.occurred_at);
            }
        }
        SlaEvent::Escalated {
            level,
            period,
            untouched_since,
            to,
            fallback_reason,
            ..
        } => {
            if s.untouched.as_ref().is_some_and(|u| u.period == *period)
                && !s.escalated_levels.contains(level)
            {
                s.escalated_levels.push(*level);
            }
            s.escalations.push(EscalationRecord {
                level: *level,
                period: *period,
                untouched_since: *untouched_since,
                at: e.occurred_at,
                to: to.clone(),
                fallback_reason: fallback_reason.clone(),
            });
        }
    }
    s.ticket_sequence = s.ticket_sequence.max(e.event.ticket_sequence());
    s.sequence = e.sequence;
    Some(s)
}

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    Warn { kind: ClockKind, run: u32, pct: u32 },
    Breach { kind: ClockKind, run: u32 },
    Escalate { level: u32, period: u32 },
}

/// A pending timer of an SLA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// Unique within the ticket, stable: the firing's request id.
    pub key: String,
    pub due_at: Timestamp,
    pub what: TimerKind,
}

/// The timers still to fire, soonest first: each running, unpaused clock's
/// warnings not yet given (none once breached) and its breach, and the
/// current untouched period's levels not yet escalated.
pub fn timers(s: &Sla) -> Vec<Timer> {
    let mut out = Vec::new();
    for c in s
        .clocks
        .iter()
        .filter(|c| c.is_running() && c.paused_since.is_none())
    {
        if c.breached_at.is_some() {
            continue;
        }
        for (pct, at) in &c.warn_at {
            if !c.warned.contains(pct) {
                out.push(Timer {
                    key: format!("{}/{}/warn{}", c.kind, c.run, pct),
                    due_at: *at,
                    what: TimerKind::Warn {
                        kind: c.kind,
                        run: c.run,
                        pct: *pct,
                    },
                });
            }
        }
        out.push(Timer {
            key: format!("{}/{}/breach", c.kind, c.run),
            due_at: c.due_at,
            what: TimerKind::Breach {
                kind: c.kind,
                run: c.run,
            },
        });
    }
    if let Some(u) = &s.untouched
        && !s.closed
    {
        for (level, at) in &u.level_due {
            if !s.escalated_levels.contains(level) {
                out.push(Timer {
                    key: format!("untouched/{}/level{}", u.period, level),
                    due_at: *at,
                    what: TimerKind::Escalate {
                        level: *level,
                        period: u.period,
                    },
                });
            }
        }
    }
    out.sort_by(|a, b| a.due_at.cmp(&b.due_at).then_with(|| a.key.cmp(&b.key)));
    out
}

/// SLAs as an [`crate::Aggregate`]. The calendars a decision counts in
/// travel with the command.
pub struct SlaAggregate;

/// A command with the calendars it is decided in.
#[derive(Debug, Clone)]
pub struct SlaRequest {
    pub command: SlaCommand,
    pub calendars: Arc<Calendars>,
}

impl crate::Aggregate for SlaAggregate {
    type Id = TicketId;
    type State = Sla;
    type Command = SlaRequest;
    type Event = SlaEvent;
    type Rule = SlaRule;
    type Recorded = RecordedSla;

    const TYPE: &'static str = "sla";

    fn decide(
        id: TicketId,
        state: Option<&Sla>,
        _request_id: &str,
        command: &SlaRequest,
    ) -> Result<Decision<SlaEvent>, SlaRule> {
        decide(id, state, &command.calendars, &command.command)
    }

    fn evolve(state: Option<Sla>, event: &RecordedSla) -> Option<Sla> {
        evolve(state, event)
    }

    fn sequence(state: &Sla) -> u64 {
        state.sequence
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::{Origin, Plan};
    use crate::values::Channel;
    use proptest::prelude::*;

    const HOUR: u64 = 3600;
    const DAY: u64 = 86_400;
    const T0: i64 = 1_767_600_000_000_000; // 2026-01-05T08:00:00Z, a Monday

    fn opened(policy: SlaPolicy) -> TicketEvent {
        TicketEvent::Opened {
            account_id: "acme".into(),
            owner_email: "olivia@example.com".into(),
            program_id: "rnps".into(),
            title: "t".into(),
            origin: Origin::Manual,
            plan: Box::new(Plan {
                sla: policy,
                ..Plan::default()
            }),
        }
    }

    fn contact() -> TicketEvent {
        TicketEvent::ContactLogged {
            channel: Channel::Phone,
            summary: "called".into(),
        }
    }

    fn note() -> TicketEvent {
        TicketEvent::NoteAdded { text: "n".into() }
    }

    fn close() -> TicketEvent {
        TicketEvent::Closed {
            root_cause_category: "product".into(),
            root_cause: "r".into(),
            actions_taken: "a".into(),
            opportunity: None,
        }
    }

    /// The escalation role in miniature: ticket events are observed in
    /// order, and moving the clock fires every timer that falls due, soonest
    /// first, at the time the clock was moved to.
    struct Sim {
        id: TicketId,
        state: Option<Sla>,
        seq: u64,
        tseq: u64,
        now: Timestamp,
        cal: Calendars,
        log: Vec<SlaEvent>,
    }

    impl Sim {
        fn new(cal: Calendars) -> Sim {
            Sim {
                id: TicketId::for_feedback("f", "w"),
                state: None,
                seq: 0,
                tseq: 0,
                now: Timestamp::from_micros(T0),
                cal,
                log: Vec::new(),
            }
        }

        fn apply(&mut self, event: SlaEvent) {
            self.seq += 1;
            let rec = RecordedSla {
                ticket_id: self.id,
                sequence: self.seq,
                occurred_at: self.now,
                request_id: String::new(),
                event: event.clone(),
            };
            self.state = evolve(self.state.take(), &rec);
            self.log.push(event);
        }

        fn ticket(&mut self, event: TicketEvent) {
            self.tseq += 1;
            let o = Observation {
                ticket_sequence: self.tseq,
                at: self.now,
                event,
                region: String::new(),
                workflow_id: "w".into(),
                policy: None,
            };
            match decide(
                self.id,
                self.state.as_ref(),
                &self.cal,
                &SlaCommand::Observe(Box::new(o)),
            ) {
                Ok(Decision::Append(e)) => self.apply(e),
                Ok(Decision::AlreadyApplied { .. }) | Err(SlaRule::NoChange) => {}
                Err(e) => panic!("observe: {e}"),
            }
        }

        fn advance(&mut self, secs: u64) {
            let until = self.now.plus_secs(secs);
            while let Some(t) = self
                .state
                .as_ref()
                .and_then(|s| timers(s).into_iter().find(|t| t.due_at <= until))
            {
                self.now = self.now.max(t.due_at);
                let cmd = SlaCommand::Fire {
                    key: t.key.clone(),
                    target: Some(EscalationTarget {
                        to: "manager@example.com".into(),
                        fallback_reason: String::new(),
                    }),
                };
                match decide(self.id, self.state.as_ref(), &self.cal, &cmd).unwrap() {
                    Decision::Append(e) => self.apply(e),
                    Decision::AlreadyApplied { .. } => unreachable!(),
                }
                // Firing the same key again is refused, not repeated.
                assert_eq!(
                    decide(self.id, self.state.as_ref(), &self.cal, &cmd).unwrap_err(),
                    SlaRule::NotPending(t.key.clone())
                );
            }
            self.now = until;
        }

        fn hours(&self, t: Timestamp) -> f64 {
            (t.as_micros() - T0) as f64 / 3.6e9
        }

        fn fired(&self) -> Vec<String> {
            self.log
                .iter()
                .filter_map(|e| match e {
                    SlaEvent::Warned { kind, pct, .. } => Some(format!("warn {kind} {pct}")),
                    SlaEvent::Breached { kind, run, .. } => Some(format!("breach {kind} {run}")),
                    SlaEvent::Escalated { level, .. } => Some(format!("escalate {level}")),
                    _ => None,
                })
                .collect()
        }
    }

    #[test]
    fn first_contact_warns_at_24_and_36_hours_and_breaches_at_48() {
        let mut s = Sim::new(Calendars::default());
        s.ticket(opened(SlaPolicy::default()));
        s.advance(24 * HOUR - 1);
        assert!(s.fired().is_empty());
        s.advance(1);
        assert_eq!(s.fired(), ["warn first_contact 50"]);
        s.advance(12 * HOUR);
        assert_eq!(
            s.fired(),
            ["warn first_contact 50", "warn first_contact 75"]
        );
        s.advance(12 * HOUR - 1);
        assert_eq!(s.fired().len(), 2);
        s.advance(1);
        assert_eq!(s.fired()[2], "breach first_contact 1");
        let c = s
            .state
            .as_ref()
            .unwrap()
            .current(ClockKind::FirstContact)
            .unwrap();
        assert_eq!(s.hours(c.due_at), 48.0);
        // Contact after the breach stops the clock; the breach stays.
        s.ticket(contact());
        let c = s
            .state
            .as_ref()
            .unwrap()
            .current(ClockKind::FirstContact)
            .unwrap();
        assert_eq!(c.state(), "met");
        assert!(c.breached_at.is_some());
    }

    #[test]
    fn escalation_at_seven_days_untouched_not_a_second_earlier() {
        let mut s = Sim::new(Calendars::default());
        s.ticket(opened(SlaPolicy::default()));
        s.ticket(contact());
        s.advance(7 * DAY - 1);
        assert!(!s.fired().iter().any(|f| f.starts_with("escalate")));
        s.advance(1);
        assert!(s.fired().contains(&"escalate 1".to_string()));
        let e = &s.state.as_ref().unwrap().escalations[0];
        assert_eq!((e.level, s.hours(e.at)), (1, 7.0 * 24.0));
    }

    #[test]
    fn a_touch_on_day_six_moves_escalation_to_day_thirteen_and_level_two_follows() {
        let policy = SlaPolicy {
            further_levels_secs: vec![14 * DAY],
            ..SlaPolicy::default()
        };
        let mut s = Sim::new(Calendars::default());
        s.ticket(opened(policy));
        s.advance(6 * DAY);
        s.ticket(note());
        s.advance(7 * DAY - 1);
        assert!(s.state.as_ref().unwrap().escalations.is_empty());
        s.advance(1);
        let st = s.state.as_ref().unwrap();
        assert_eq!(st.escalations.len(), 1);
        assert_eq!(s.hours(st.escalations[0].at), 13.0 * 24.0);
        assert_eq!(s.hours(st.escalations[0].untouched_since), 6.0 * 24.0);
        s.advance(7 * DAY);
        let st = s.state.as_ref().unwrap();
        assert_eq!(st.escalations.len(), 2);
        assert_eq!(
            (st.escalations[1].level, s.hours(st.escalations[1].at)),
            (2, 20.0 * 24.0)
        );
        // Each level once per period: nothing more however long it waits.
        s.advance(60 * DAY);
        assert_eq!(s.state.as_ref().unwrap().escalations.len(), 2);
    }

    #[test]
    fn a_pause_is_not_counted_and_a_reply_resumes() {
        let policy = SlaPolicy {
            pause_while_waiting: true,
            ..SlaPolicy::default()
        };
        let mut s = Sim::new(Calendars::default());
        s.ticket(opened(policy));
        s.ticket(contact());
        s.advance(10 * DAY);
        s.ticket(TicketEvent::AwaitingCustomer {
            reason: "waiting for logs".into(),
        });
        let c = s
            .state
            .as_ref()
            .unwrap()
            .current(ClockKind::Closure)
            .unwrap();
        assert_eq!(c.state(), "paused");
        s.advance(5 * DAY);
        s.ticket(TicketEvent::CustomerReplied {
            text: "here".into(),
        });
        let c = s
            .state
            .as_ref()
            .unwrap()
            .current(ClockKind::Closure)
            .unwrap();
        assert_eq!(c.state(), "running");
        assert_eq!(c.paused_secs, 5 * DAY);
        assert_eq!(s.hours(c.original_due), 30.0 * 24.0);
        assert_eq!(s.hours(c.due_at), 35.0 * 24.0);
        // The 50% warning (day 15 of counted time) comes on day 20.
        s.advance(5 * DAY - 1);
        assert!(!s.fired().contains(&"warn closure 50".to_string()));
        s.advance(1);
        assert!(s.fired().contains(&"warn closure 50".to_string()));
        // Without the policy a wait changes nothing.
        let mut t = Sim::new(Calendars::default());
        t.ticket(opened(SlaPolicy::default()));
        t.ticket(TicketEvent::AwaitingCustomer { reason: "x".into() });
        assert_eq!(t.log.len(), 1);
    }

    #[test]
    fn reopening_starts_a_new_closure_clock_and_keeps_the_history() {
        let mut s = Sim::new(Calendars::default());
        s.ticket(opened(SlaPolicy::default()));
        s.ticket(contact());
        s.advance(2 * DAY);
        s.ticket(close());
        assert!(timers(s.state.as_ref().unwrap()).is_empty());
        s.advance(40 * DAY);
        assert!(s.fired().is_empty());
        s.ticket(TicketEvent::Reopened {
            reason: "again".into(),
        });
        let st = s.state.as_ref().unwrap();
        let runs: Vec<_> = st
            .clocks
            .iter()
            .map(|c| (c.kind, c.run, c.state()))
            .collect();
        assert_eq!(
            runs,
            [
                (ClockKind::FirstContact, 1, "met"),
                (ClockKind::Closure, 1, "met"),
                (ClockKind::Closure, 2, "running"),
            ]
        );
        assert_eq!(
            s.hours(st.current(ClockKind::Closure).unwrap().due_at),
            72.0 * 24.0
        );
    }

    #[test]
    fn reassignment_keeps_clocks_unless_the_policy_resets_them() {
        let reassign = || TicketEvent::OwnerReassigned {
            previous_owner_email: "olivia@example.com".into(),
            new_owner_email: "rahul@example.com".into(),
            reason: "r".into(),
        };
        let mut keep = Sim::new(Calendars::default());
        keep.ticket(opened(SlaPolicy::default()));
        keep.advance(DAY);
        keep.ticket(reassign());
        let st = keep.state.as_ref().unwrap();
        assert_eq!(st.owner, "rahul@example.com");
        assert_eq!(
            keep.hours(st.current(ClockKind::FirstContact).unwrap().due_at),
            48.0
        );

        let mut reset = Sim::new(Calendars::default());
        reset.ticket(opened(SlaPolicy {
            reset_on_reassign: true,
            ..SlaPolicy::default()
        }));
        reset.advance(DAY);
        reset.ticket(reassign());
        let st = reset.state.as_ref().unwrap();
        let fc = st.current(ClockKind::FirstContact).unwrap();
        assert_eq!((fc.run, reset.hours(fc.due_at)), (2, 72.0));
        assert_eq!(st.clocks[0].state(), "replaced");
        // The replaced run's timers are gone: one breach, of run 2.
        reset.advance(3 * DAY);
        assert!(
            reset
                .fired()
                .contains(&"breach first_contact 2".to_string())
        );
        assert!(
            !reset
                .fired()
                .contains(&"breach first_contact 1".to_string())
        );
    }

    #[test]
    fn business_hours_first_contact_crosses_a_weekend_holiday_and_time_zones() {
        let mk = |name: &str, tz: &str, holidays: &[&str]| {
            Arc::new(
                BusinessCalendar::new(
                    name,
                    tz,
                    [true, true, true, true, true, false, false],
                    9 * 60,
                    17 * 60,
                    holidays.iter().map(|d| d.parse().unwrap()).collect(),
                )
                .unwrap(),
            )
        };
        let cal = Calendars(
            [
                (
                    "emea".to_string(),
                    mk("emea", "Europe/Berlin", &["2026-01-12"]),
                ),
                ("amer".to_string(), mk("amer", "America/New_York", &[])),
            ]
            .into_iter()
            .collect(),
        );
        let policy = SlaPolicy {
            first_contact_secs: 16 * HOUR,
            calendar: "emea".into(),
            region_calendars: vec![("AMER".into(), "amer".into())],
            ..SlaPolicy::default()
        };
        // Opened Friday 2026-01-09 14:00Z (15:00 Berlin, 09:00 New York).
        let start = Timestamp::from_micros(T0 + 4 * 86_400_000_000 + 6 * 3_600_000_000);
        let due = |region: &str| {
            let mut s = Sim::new(cal.clone());
            s.now = start;
            s.tseq = 0;
            let o = Observation {
                ticket_sequence: 1,
                at: start,
                event: opened(policy.clone()),
                region: region.into(),
                workflow_id: "w".into(),
                policy: None,
            };
            let Decision::Append(e) =
                decide(s.id, None, &cal, &SlaCommand::Observe(Box::new(o))).unwrap()
            else {
                panic!()
            };
            s.apply(e);
            let st = s.state.unwrap();
            let c = st.current(ClockKind::FirstContact).unwrap().due_at;
            (
                st.tracked.calendar,
                jiff::Timestamp::from_microsecond(c.as_micros())
                    .unwrap()
                    .to_string(),
            )
        };
        // Berlin: 2 h Friday, Monday is a holiday, 8 h Tuesday, 6 h Wednesday.
        assert_eq!(
            due("EMEA"),
            ("emea".to_string(), "2026-01-14T14:00:00Z".to_string())
        );
        // New York: 8 h Friday, 8 h Monday.
        assert_eq!(
            due("AMER"),
            ("amer".to_string(), "2026-01-12T22:00:00Z".to_string())
        );
    }

    #[test]
    fn recompute_applies_a_new_policy_from_the_opening() {
        let mut s = Sim::new(Calendars::default());
        s.ticket(opened(SlaPolicy::default()));
        s.advance(DAY);
        let cmd = SlaCommand::Recompute {
            policy: SlaPolicy {
                first_contact_secs: 36 * HOUR,
                ..SlaPolicy::default()
            },
            at: s.now,
        };
        let Decision::Append(e) = decide(s.id, s.state.as_ref(), &s.cal, &cmd).unwrap() else {
            panic!()
        };
        s.apply(e);
        let fc = s
            .state
            .as_ref()
            .unwrap()
            .current(ClockKind::FirstContact)
            .unwrap();
        assert_eq!((fc.run, s.hours(fc.due_at)), (2, 36.0));
    }

    // --- The reference model: escalations and breaches, written from the
    // rules as stated, in calendar time, without the aggregate's machinery.

    #[derive(Debug, Clone)]
    enum Op {
        Advance(u64),
        Contact,
        Note,
        Reply,
        Close,
        Reopen,
        Reassign,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1u64..(4 * DAY)).prop_map(Op::Advance),
            1 => Just(Op::Contact),
            1 => Just(Op::Note),
            1 => Just(Op::Reply),
            1 => Just(Op::Close),
            1 => Just(Op::Reopen),
            1 => Just(Op::Reassign),
        ]
    }

    #[derive(Default)]
    struct Reference {
        now: u64,
        closed: bool,
        contacted: bool,
        since: u64,
        fired: Vec<u64>,
        closure_start: u64,
        closure_run: u32,
        fc_breached: bool,
        closure_breached: bool,
        out: Vec<(u64, String)>,
    }

    const LEVELS: [u64; 2] = [3 * DAY, 5 * DAY];
    const FC: u64 = 2 * DAY;
    const CLOSE: u64 = 10 * DAY;

    impl Reference {
        fn advance(&mut self, d: u64) {
            let end = self.now + d;
            let mut due: Vec<(u64, String)> = Vec::new();
            if !self.closed {
                for (i, l) in LEVELS.iter().enumerate() {
                    let at = self.since + l;
                    if at <= end && !self.fired.contains(&(i as u64 + 1)) {
                        due.push((at, format!("escalate {} since {}", i + 1, self.since)));
                        self.fired.push(i as u64 + 1);
                    }
                }
                if !self.contacted && !self.fc_breached && FC <= end {
                    self.fc_breached = true;
                    due.push((FC, "breach first_contact 1".into()));
                }
                if !self.closure_breached && self.closure_start + CLOSE <= end {
                    self.closure_breached = true;
                    due.push((
                        self.closure_start + CLOSE,
                        format!("breach closure {}", self.closure_run),
                    ));
                }
            }
            due.sort();
            self.out.extend(due);
            self.now = end;
        }

        fn touch(&mut self) {
            self.since = self.now;
            self.fired.clear();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn escalations_and_breaches_match_the_reference_model(ops in prop::collection::vec(op(), 1..40)) {
            let policy = SlaPolicy {
                first_contact_secs: FC,
                escalate_after_secs: LEVELS[0],
                further_levels_secs: vec![LEVELS[1]],
                close_within_secs: CLOSE,
                warn_pct: vec![],
                ..SlaPolicy::default()
            };
            let mut s = Sim::new(Calendars::default());
            s.ticket(opened(policy));
            let mut r = Reference { closure_run: 1, ..Reference::default() };
            for op in ops {
                match op {
                    Op::Advance(d) => { s.advance(d); r.advance(d); }
                    Op::Contact | Op::Note | Op::Reassign if r.closed => {}
                    Op::Contact => {
                        s.ticket(contact());
                        r.contacted = true;
                        r.touch();
                    }
                    Op::Note => { s.ticket(note()); r.touch(); }
                    Op::Reassign => {
                        s.ticket(TicketEvent::OwnerReassigned {
                            previous_owner_email: String::new(),
                            new_owner_email: format!("p{}@example.com", r.now),
                            reason: "r".into(),
                        });
                        r.touch();
                    }
                    Op::Reply => s.ticket(TicketEvent::CustomerReplied { text: "x".into() }),
                    Op::Close if r.closed || !r.contacted => {}
                    Op::Close => { s.ticket(close()); r.closed = true; }
                    Op::Reopen if !r.closed => {}
                    Op::Reopen => {
                        s.ticket(TicketEvent::Reopened { reason: "r".into() });
                        r.closed = false;
                        r.closure_start = r.now;
                        r.closure_run += 1;
                        r.closure_breached = false;
                        r.touch();
                    }
                }
            }
            let got: Vec<(u64, String)> = s
                .log
                .iter()
                .zip(std::iter::successors(Some(0usize), |i| Some(i + 1)))
                .filter_map(|(e, _)| match e {
                    SlaEvent::Escalated { level, untouched_since, .. } => Some((
                        0,
                        format!("escalate {level} since {}", (untouched_since.as_micros() - T0) / 1_000_000),
                    )),
                    SlaEvent::Breached { kind, run, .. } => Some((0, format!("breach {kind} {run}"))),
                    _ => None,
                })
                .collect();
            let want: Vec<(u64, String)> = r.out.iter().map(|(_, w)| (0, w.clone())).collect();
            prop_assert_eq!(got, want);
        }
    }
}
