//! The ticket aggregate: one accountable owner, a state machine
//! `open → contacted → closed` (with `reopen` back to `open`), and the
//! idempotency record of every request it has applied.
//!
//! | command          | open | contacted | closed | effect                                 |
//! |------------------|------|-----------|--------|----------------------------------------|
//! | open             | –    | –         | –      | creates the ticket (status `open`)     |
//! | log contact      | ✓    | ✓         | ✗      | status `contacted`                     |
//! | add note         | ✓    | ✓         | ✓      | –                                      |
//! | reassign         | ✓    | ✓         | ✗      | new owner (must differ)                |
//! | customer reply   | ✓    | ✓         | ✓      | – (not an owner action)                |
//! | close            | ✗    | ✓         | ✗      | status `closed`, closure documentation |
//! | reopen           | ✗    | ✗         | ✓      | status `open`                          |
//! | attach feedback  | ✓    | ✓         | ✓      | – (the response was revised upstream)  |
//! | wait on customer | ✓    | ✓         | ✗      | waiting (not already waiting)          |
//! | end wait         | ✓    | ✓         | ✗      | not waiting (only while waiting)       |
//!
//! A customer reply ends a wait too, and closing ends it. Waiting pauses
//! the closure clock when the workflow says so (the escalation role's
//! business).
//!
//! Every owner action (contact, note, reassignment, close, reopen) sets
//! `last_touched_at`. A ticket opened by a workflow carries its [`Plan`]:
//! stakeholders, resolution guide, SLA clocks and whether the owner is a fallback.

use std::collections::HashMap;
use std::fmt;

use crate::time::Timestamp;
use crate::values::{
    AccountId, Channel, Email, FieldViolation, OpportunityKind, ProgramId, RootCauseCategory,
    TEXT_MAX, Text, TicketId, Violations,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Open,
    Contacted,
    Closed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Contacted => "contacted",
            Status::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s.trim().to_ascii_lowercase().as_str() {
            "open" => Some(Status::Open),
            "contacted" => Some(Status::Contacted),
            "closed" => Some(Status::Closed),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a ticket came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Manual,
    Workflow {
        feedback_id: String,
        workflow_id: String,
    },
}

impl Origin {
    /// `(source, feedback_id, workflow_id)` as stored: source is `manual` or
    /// `workflow`; the ids are empty for manual tickets.
    pub fn parts(&self) -> (&'static str, &str, &str) {
        match self {
            Origin::Manual => ("manual", "", ""),
            Origin::Workflow {
                feedback_id,
                workflow_id,
            } => ("workflow", feedback_id, workflow_id),
        }
    }
}

/// The resolution guide a workflow embeds in its tickets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Guide {
    pub title: String,
    pub link: String,
    pub steps: Vec<String>,
    pub templates: Vec<ResponseTemplate>,
    pub talking_points: Vec<String>,
    pub faq: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponseTemplate {
    pub name: String,
    pub subject: String,
    pub body: String,
}

/// A ticket's SLA clocks, as its workflow (or the defaults) set them when
/// it opened: changing a workflow changes the tickets opened after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaPolicy {
    /// Budget of the first-contact clock.
    pub first_contact_secs: u64,
    /// Untouched time after which the owner's manager is told (level 1).
    pub escalate_after_secs: u64,
    /// Budget of the closure clock.
    pub close_within_secs: u64,
    /// Further escalation levels (2, 3, ...: the manager's manager, ...),
    /// each the untouched time after which it fires; increasing.
    pub further_levels_secs: Vec<u64>,
    /// Warnings before a breach, in percent of the first-contact and
    /// closure budgets (e.g. 50 and 75).
    pub warn_pct: Vec<u32>,
    /// Business calendar the clocks count in; empty: calendar time.
    pub calendar: String,
    /// Per-region calendar overrides: (account region, calendar name).
    pub region_calendars: Vec<(String, String)>,
    /// The closure clock stops while the ticket waits on the customer.
    pub pause_while_waiting: bool,
    /// A reassignment restarts the running clocks for the new owner.
    pub reset_on_reassign: bool,
}

impl Default for SlaPolicy {
    /// First contact in 48 h, escalate when untouched for 7 days, close
    /// within 30 days, warnings at 50% and 75%, calendar time.
    fn default() -> Self {
        SlaPolicy {
            first_contact_secs: 48 * 3600,
            escalate_after_secs: 7 * 86_400,
            close_within_secs: 30 * 86_400,
            further_levels_secs: Vec::new(),
            warn_pct: vec![50, 75],
            calendar: String::new(),
            region_calendars: Vec::new(),
            pause_while_waiting: false,
            reset_on_reassign: false,
        }
    }
}

impl SlaPolicy {
    /// Untouched time of each escalation level, level 1 first.
    pub fn levels_secs(&self) -> Vec<u64> {
        std::iter::once(self.escalate_after_secs)
            .chain(self.further_levels_secs.iter().copied())
            .collect()
    }

    /// The calendar for an account in `region` (the region's override, else
    /// the policy's; empty: calendar time).
    pub fn calendar_for(&self, region: &str) -> &str {
        self.region_calendars
            .iter()
            .find(|(r, _)| !region.is_empty() && r.eq_ignore_ascii_case(region))
            .map_or(self.calendar.as_str(), |(_, c)| c.as_str())
    }
}

/// What a workflow (or the defaults, for a manual ticket) planned for a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Notified, not accountable; e-mails, owner excluded.
    pub stakeholders: Vec<String>,
    pub guide: Option<Guide>,
    pub sla: SlaPolicy,
    /// Set when the workflow's owner rule could not be resolved and the
    /// program's fallback owner got the ticket: why (the ticket is flagged).
    pub fallback_reason: Option<String>,
    /// Version of the programs file whose workflow opened the ticket.
    pub config_version: String,
    /// The workflow's closure rules ask for a business opportunity (kind,
    /// optional amount) to be recorded when the ticket is closed.
    pub require_opportunity: bool,
}

/// The documentation a ticket must carry to be closed. Parsing it is the only
/// way to build one, so a close command without root cause or actions cannot exist.
#[derive(Debug, Clone, PartialEq)]
pub struct Closure {
    pub root_cause_category: RootCauseCategory,
    pub root_cause: Text,
    pub actions_taken: Text,
    pub opportunity: Option<Opportunity>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Opportunity {
    pub kind: OpportunityKind,
    pub amount: Option<f64>,
}

impl Closure {
    /// Parses all closure fields at once and reports every missing or bad one.
    pub fn parse(
        root_cause_category: &str,
        root_cause: &str,
        actions_taken: &str,
        opportunity: Option<(&str, Option<f64>)>,
    ) -> Result<Closure, Vec<FieldViolation>> {
        let mut v = Violations::new();
        let cat = v.check(RootCauseCategory::parse(
            "root_cause_category",
            root_cause_category,
        ));
        let rc = v.check(Text::parse("root_cause", root_cause, TEXT_MAX));
        let act = v.check(Text::parse("actions_taken", actions_taken, TEXT_MAX));
        let opp = match opportunity {
            None => None,
            Some((kind, amount)) => {
                let kind = v.check(OpportunityKind::parse("opportunity.kind", kind));
                if let Some(a) = amount
                    && (!a.is_finite() || a < 0.0)
                {
                    v.push(FieldViolation::new(
                        "opportunity.amount",
                        "must be a finite number >= 0",
                    ));
                }
                kind.map(|kind| Opportunity { kind, amount })
            }
        };
        match (cat, rc, act) {
            (Some(root_cause_category), Some(root_cause), Some(actions_taken)) if v.is_empty() => {
                Ok(Closure {
                    root_cause_category,
                    root_cause,
                    actions_taken,
                    opportunity: opp,
                })
            }
            _ => Err(v.0),
        }
    }
}

/// A parsed, well-formed command. Whether it is *allowed* is for [`decide`].
#[derive(Debug, Clone, PartialEq)]
pub enum TicketCommand {
    Open {
        account_id: AccountId,
        owner: Email,
        program_id: Option<ProgramId>,
        title: Option<Text>,
        origin: Origin,
        plan: Box<Plan>,
    },
    LogContact {
        channel: Channel,
        summary: Text,
    },
    AddNote {
        text: Text,
    },
    Reassign {
        new_owner: Email,
        reason: Text,
    },
    RecordReply {
        text: Text,
    },
    Close(Closure),
    Reopen {
        reason: Text,
    },
    /// The response behind a workflow ticket was revised (e.g. a comment
    /// added after the score).
    AttachFeedback {
        revision: u32,
        summary: String,
    },
    /// The ticket waits on the customer (why).
    WaitOnCustomer {
        reason: Text,
    },
    /// The wait is over (why).
    EndWait {
        reason: Text,
    },
}

impl TicketCommand {
    /// The kind of event this command writes.
    pub fn event_kind(&self) -> &'static str {
        match self {
            TicketCommand::Open { .. } => "opened",
            TicketCommand::LogContact { .. } => "contact_logged",
            TicketCommand::AddNote { .. } => "note_added",
            TicketCommand::Reassign { .. } => "owner_reassigned",
            TicketCommand::RecordReply { .. } => "customer_replied",
            TicketCommand::Close(_) => "closed",
            TicketCommand::Reopen { .. } => "reopened",
            TicketCommand::AttachFeedback { .. } => "feedback_revised",
            TicketCommand::WaitOnCustomer { .. } => "awaiting_customer",
            TicketCommand::EndWait { .. } => "wait_ended",
        }
    }

    /// The event this command asks for, before the ticket's state adds to it
    /// (a reassignment's previous owner is left empty).
    pub fn intended_event(&self) -> TicketEvent {
        match self {
            TicketCommand::Open {
                account_id,
                owner,
                program_id,
                title,
                origin,
                plan,
            } => TicketEvent::Opened {
                account_id: account_id.to_string(),
                owner_email: owner.to_string(),
                program_id: program_id
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                title: title.as_ref().map(|t| t.to_string()).unwrap_or_default(),
                origin: origin.clone(),
                plan: plan.clone(),
            },
            TicketCommand::LogContact { channel, summary } => TicketEvent::ContactLogged {
                channel: *channel,
                summary: summary.to_string(),
            },
            TicketCommand::AddNote { text } => TicketEvent::NoteAdded {
                text: text.to_string(),
            },
            TicketCommand::Reassign { new_owner, reason } => TicketEvent::OwnerReassigned {
                previous_owner_email: String::new(),
                new_owner_email: new_owner.to_string(),
                reason: reason.to_string(),
            },
            TicketCommand::RecordReply { text } => TicketEvent::CustomerReplied {
                text: text.to_string(),
            },
            TicketCommand::Close(c) => TicketEvent::Closed {
                root_cause_category: c.root_cause_category.as_str().to_string(),
                root_cause: c.root_cause.to_string(),
                actions_taken: c.actions_taken.to_string(),
                opportunity: c
                    .opportunity
                    .as_ref()
                    .map(|o| (o.kind.to_string(), o.amount)),
            },
            TicketCommand::Reopen { reason } => TicketEvent::Reopened {
                reason: reason.to_string(),
            },
            TicketCommand::AttachFeedback { revision, summary } => TicketEvent::FeedbackRevised {
                revision: *revision,
                summary: summary.clone(),
            },
            TicketCommand::WaitOnCustomer { reason } => TicketEvent::AwaitingCustomer {
                reason: reason.to_string(),
            },
            TicketCommand::EndWait { reason } => TicketEvent::WaitEnded {
                reason: reason.to_string(),
            },
        }
    }
}

/// Feeds formatted text into a hasher without building a string.
struct HashWriter<'a>(&'a mut std::collections::hash_map::DefaultHasher);

impl std::fmt::Write for HashWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        std::hash::Hasher::write(self.0, s.as_bytes());
        Ok(())
    }
}

/// A fact about a ticket. Events hold plain values, not parsed newtypes: a
/// stored event is history and must decode even if validation rules tighten.
#[derive(Debug, Clone, PartialEq)]
pub enum TicketEvent {
    Opened {
        account_id: String,
        owner_email: String,
        program_id: String,
        title: String,
        origin: Origin,
        plan: Box<Plan>,
    },
    ContactLogged {
        channel: Channel,
        summary: String,
    },
    NoteAdded {
        text: String,
    },
    OwnerReassigned {
        previous_owner_email: String,
        new_owner_email: String,
        reason: String,
    },
    CustomerReplied {
        text: String,
    },
    Closed {
        root_cause_category: String,
        root_cause: String,
        actions_taken: String,
        opportunity: Option<(String, Option<f64>)>,
    },
    Reopened {
        reason: String,
    },
    FeedbackRevised {
        revision: u32,
        summary: String,
    },
    AwaitingCustomer {
        reason: String,
    },
    WaitEnded {
        reason: String,
    },
}

impl TicketEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            TicketEvent::Opened { .. } => "opened",
            TicketEvent::ContactLogged { .. } => "contact_logged",
            TicketEvent::NoteAdded { .. } => "note_added",
            TicketEvent::OwnerReassigned { .. } => "owner_reassigned",
            TicketEvent::CustomerReplied { .. } => "customer_replied",
            TicketEvent::Closed { .. } => "closed",
            TicketEvent::Reopened { .. } => "reopened",
            TicketEvent::FeedbackRevised { .. } => "feedback_revised",
            TicketEvent::AwaitingCustomer { .. } => "awaiting_customer",
            TicketEvent::WaitEnded { .. } => "wait_ended",
        }
    }

    /// A fingerprint of what the request asked for: this event without what
    /// the ticket's state added (a reassignment's previous owner). Equal for
    /// a command's [`TicketCommand::intended_event`] and the event it wrote,
    /// so a retry is told from a different request reusing its id. Compared
    /// within one process only (state is rebuilt from events), so the
    /// standard hasher's fixed keys are enough.
    pub fn request_fingerprint(&self) -> u64 {
        use std::fmt::Write as _;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let mut w = HashWriter(&mut h);
        let _ = match self {
            TicketEvent::OwnerReassigned {
                new_owner_email,
                reason,
                ..
            } => write!(w, "OwnerReassigned {new_owner_email:?} {reason:?}"),
            other => write!(w, "{other:?}"),
        };
        std::hash::Hasher::finish(&h)
    }

    /// Whether this event is an action by the ticket's owner (touches the
    /// ticket): contact, note, reassignment, close, reopen. Customer
    /// replies, revised responses and waits are not.
    pub fn is_owner_action(&self) -> bool {
        !matches!(
            self,
            TicketEvent::CustomerReplied { .. }
                | TicketEvent::FeedbackRevised { .. }
                | TicketEvent::AwaitingCustomer { .. }
                | TicketEvent::WaitEnded { .. }
        )
    }
}

/// An event as stored: with its position in the stream and its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub ticket_id: TicketId,
    pub sequence: u64,
    pub occurred_at: Timestamp,
    pub request_id: String,
    pub actor: String,
    pub event: TicketEvent,
}

/// What the ticket remembers of one applied request, to answer its retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedRequest {
    pub event_kind: &'static str,
    pub sequence: u64,
    /// [`TicketEvent::request_fingerprint`] of the event it wrote.
    pub fingerprint: u64,
}

/// The state of one ticket, rebuilt by folding its events with [`evolve`].
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub id: TicketId,
    pub status: Status,
    pub account_id: String,
    pub owner_email: String,
    pub program_id: String,
    pub title: String,
    pub origin: Origin,
    pub plan: Plan,
    /// Revision of the response last attached (0: as first received).
    pub feedback_revision: u32,
    pub opened_at: Timestamp,
    pub last_touched_at: Timestamp,
    pub first_contact_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
    pub closure: Option<ClosureRecord>,
    pub contact_count: u32,
    pub note_count: u32,
    pub reply_count: u32,
    pub reopen_count: u32,
    /// Why the ticket waits on the customer, while it does.
    pub waiting: Option<String>,
    /// Stream sequence of the last applied event (the optimistic-concurrency token).
    pub sequence: u64,
    pub applied: HashMap<String, AppliedRequest>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClosureRecord {
    pub root_cause_category: String,
    pub root_cause: String,
    pub actions_taken: String,
    pub opportunity: Option<(String, Option<f64>)>,
}

/// Why a well-formed command is not allowed in the ticket's current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleViolation {
    #[error("ticket {0} does not exist")]
    NotFound(TicketId),
    #[error("ticket {0} already exists")]
    AlreadyExists(TicketId),
    #[error("ticket already waits on the customer ({0})")]
    AlreadyWaiting(String),
    #[error("ticket is not waiting on the customer")]
    NotWaiting,
    #[error("ticket is closed; reopen it before you {0}")]
    Closed(&'static str),
    #[error("log a contact with the customer before closing the ticket (status is open)")]
    CloseBeforeContact,
    #[error("this ticket's workflow requires an opportunity (kind, optional amount) to close it")]
    OpportunityRequired,
    #[error("ticket is {0}, not closed; only a closed ticket can be reopened")]
    NotClosed(Status),
    #[error("ticket is already owned by {0}")]
    SameOwner(String),
    #[error(
        "request_id {request_id:?} was already used on this ticket by an earlier request \
         ({previous}{}); a retry must repeat its request exactly: use a new request_id for a \
         new request",
        if *.same_kind { ", with other content" } else { "" }
    )]
    RequestIdReused {
        request_id: String,
        previous: &'static str,
        /// The earlier request was of the same kind, with other content.
        same_kind: bool,
    },
}

/// The outcome of a ticket decision.
pub type Decision = crate::Decision<TicketEvent>;

/// Decides what `command` on ticket `id` (in state `state`, `None` if it has no
/// events yet) means. Pure: no clock reads, no I/O.
pub fn decide(
    id: TicketId,
    state: Option<&Ticket>,
    request_id: &str,
    command: &TicketCommand,
) -> Result<Decision, RuleViolation> {
    if let Some(t) = state
        && let Some(prev) = t.applied.get(request_id)
    {
        let same_kind = prev.event_kind == command.event_kind();
        return if same_kind && prev.fingerprint == command.intended_event().request_fingerprint() {
            Ok(Decision::AlreadyApplied {
                sequence: prev.sequence,
            })
        } else {
            Err(RuleViolation::RequestIdReused {
                request_id: request_id.to_string(),
                previous: prev.event_kind,
                same_kind,
            })
        };
    }
    let t = match (state, command) {
        (None, TicketCommand::Open { .. }) => {
            return Ok(Decision::Append(command.intended_event()));
        }
        (Some(_), TicketCommand::Open { .. }) => return Err(RuleViolation::AlreadyExists(id)),
        (None, _) => return Err(RuleViolation::NotFound(id)),
        (Some(t), _) => t,
    };
    match command {
        TicketCommand::Open { .. } => unreachable!("handled above"),
        TicketCommand::LogContact { .. } if t.status == Status::Closed => {
            return Err(RuleViolation::Closed("log a contact"));
        }
        TicketCommand::Reassign { new_owner, .. } => {
            if t.status == Status::Closed {
                return Err(RuleViolation::Closed("reassign it"));
            }
            if new_owner.as_str() == t.owner_email {
                return Err(RuleViolation::SameOwner(t.owner_email.clone()));
            }
        }
        TicketCommand::Close(c) => match t.status {
            Status::Open => return Err(RuleViolation::CloseBeforeContact),
            Status::Contacted if t.plan.require_opportunity && c.opportunity.is_none() => {
                return Err(RuleViolation::OpportunityRequired);
            }
            Status::Closed => return Err(RuleViolation::Closed("close it again")),
            Status::Contacted => {}
        },
        TicketCommand::WaitOnCustomer { .. } | TicketCommand::EndWait { .. }
            if t.status == Status::Closed =>
        {
            return Err(RuleViolation::Closed("change its wait"));
        }
        TicketCommand::WaitOnCustomer { .. } if t.waiting.is_some() => {
            return Err(RuleViolation::AlreadyWaiting(
                t.waiting.clone().unwrap_or_default(),
            ));
        }
        TicketCommand::EndWait { .. } if t.waiting.is_none() => {
            return Err(RuleViolation::NotWaiting);
        }
        TicketCommand::Reopen { .. } if t.status != Status::Closed => {
            return Err(RuleViolation::NotClosed(t.status));
        }
        TicketCommand::AttachFeedback { revision, .. } if *revision <= t.feedback_revision => {
            // An older or repeated revision: already reflected.
            return Ok(Decision::AlreadyApplied {
                sequence: t.sequence,
            });
        }
        _ => {}
    }
    let mut event = command.intended_event();
    if let TicketEvent::OwnerReassigned {
        previous_owner_email,
        ..
    } = &mut event
    {
        previous_owner_email.clone_from(&t.owner_email);
    }
    Ok(Decision::Append(event))
}

/// Applies one stored event. Total: any event sequence produces a state, so
/// replay never fails on history (an event before `Opened` is ignored).
pub fn evolve(state: Option<Ticket>, e: &RecordedEvent) -> Option<Ticket> {
    let at = e.occurred_at;
    let mut t = match (state, &e.event) {
        (
            None,
            TicketEvent::Opened {
                account_id,
                owner_email,
                program_id,
                title,
                origin,
                plan,
            },
        ) => Ticket {
            id: e.ticket_id,
            status: Status::Open,
            account_id: account_id.clone(),
            owner_email: owner_email.clone(),
            program_id: program_id.clone(),
            title: title.clone(),
            origin: origin.clone(),
            plan: plan.as_ref().clone(),
            feedback_revision: 0,
            opened_at: at,
            last_touched_at: at,
            first_contact_at: None,
            closed_at: None,
            closure: None,
            contact_count: 0,
            note_count: 0,
            reply_count: 0,
            reopen_count: 0,
            waiting: None,
            sequence: 0,
            applied: HashMap::new(),
        },
        (None, _) => return None,
        (Some(t), TicketEvent::Opened { .. }) => t,
        (Some(mut t), ev) => {
            match ev {
                TicketEvent::Opened { .. } => {}
                TicketEvent::ContactLogged { .. } => {
                    t.status = Status::Contacted;
                    t.contact_count += 1;
                    t.first_contact_at.get_or_insert(at);
                }
                TicketEvent::NoteAdded { .. } => t.note_count += 1,
                TicketEvent::OwnerReassigned {
                    new_owner_email, ..
                } => t.owner_email = new_owner_email.clone(),
                TicketEvent::CustomerReplied { .. } => {
                    t.reply_count += 1;
                    t.waiting = None;
                }
                TicketEvent::AwaitingCustomer { reason } => t.waiting = Some(reason.clone()),
                TicketEvent::WaitEnded { .. } => t.waiting = None,
                TicketEvent::Closed {
                    root_cause_category,
                    root_cause,
                    actions_taken,
                    opportunity,
                } => {
                    t.status = Status::Closed;
                    t.closed_at = Some(at);
                    t.waiting = None;
                    t.closure = Some(ClosureRecord {
                        root_cause_category: root_cause_category.clone(),
                        root_cause: root_cause.clone(),
                        actions_taken: actions_taken.clone(),
                        opportunity: opportunity.clone(),
                    });
                }
                TicketEvent::FeedbackRevised { revision, .. } => {
                    t.feedback_revision = t.feedback_revision.max(*revision);
                }
                TicketEvent::Reopened { .. } => {
                    t.status = Status::Open;
                    t.reopen_count += 1;
                    t.closed_at = None;
                    t.closure = None;
                }
            }
            if ev.is_owner_action() {
                t.last_touched_at = t.last_touched_at.max(at);
            }
            t
        }
    };
    t.sequence = e.sequence;
    if !e.request_id.is_empty() {
        t.applied.insert(
            e.request_id.clone(),
            AppliedRequest {
                event_kind: e.event.kind(),
                sequence: e.sequence,
                fingerprint: e.event.request_fingerprint(),
            },
        );
    }
    Some(t)
}

/// Tickets as an [`crate::Aggregate`]: [`decide`] and [`evolve`].
pub struct TicketAggregate;

impl crate::Aggregate for TicketAggregate {
    type Id = TicketId;
    type State = Ticket;
    type Command = TicketCommand;
    type Event = TicketEvent;
    type Rule = RuleViolation;
    type Recorded = RecordedEvent;

    const TYPE: &'static str = "ticket";

    fn decide(
        id: TicketId,
        state: Option<&Ticket>,
        request_id: &str,
        command: &TicketCommand,
    ) -> Result<Decision, RuleViolation> {
        decide(id, state, request_id, command)
    }

    fn evolve(state: Option<Ticket>, event: &RecordedEvent) -> Option<Ticket> {
        evolve(state, event)
    }

    fn sequence(state: &Ticket) -> u64 {
        state.sequence
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::RequestId;
    use proptest::prelude::*;

    fn rid(s: &str) -> RequestId {
        RequestId::parse("request_id", s).unwrap()
    }

    fn open_cmd(owner: &str) -> TicketCommand {
        TicketCommand::Open {
            account_id: AccountId::parse("a", "ACME-001").unwrap(),
            owner: Email::parse("o", owner).unwrap(),
            program_id: None,
            title: None,
            origin: Origin::Manual,
            plan: Box::default(),
        }
    }

    fn text(s: &str) -> Text {
        Text::parse("t", s, TEXT_MAX).unwrap()
    }

    /// Runs a command against the state the way the ticketing service does.
    fn run(
        id: TicketId,
        state: Option<Ticket>,
        seq: &mut u64,
        req: &str,
        cmd: &TicketCommand,
    ) -> (Option<Ticket>, Result<Decision, RuleViolation>) {
        let d = decide(id, state.as_ref(), req, cmd);
        match &d {
            Ok(Decision::Append(ev)) => {
                *seq += 1;
                let rec = RecordedEvent {
                    ticket_id: id,
                    sequence: *seq,
                    occurred_at: Timestamp(*seq as i64 * 1_000_000),
                    request_id: req.to_string(),
                    actor: String::new(),
                    event: ev.clone(),
                };
                (evolve(state, &rec), d)
            }
            _ => (state, d),
        }
    }

    #[test]
    fn happy_path_open_contact_close_reopen() {
        let id = TicketId::for_manual_request(&rid("r0"));
        let mut seq = 0;
        let (s, _) = run(id, None, &mut seq, "r0", &open_cmd("a@x.io"));
        assert_eq!(s.as_ref().unwrap().status, Status::Open);
        let close = TicketCommand::Close(Closure::parse("product", "bug", "fixed", None).unwrap());
        let (s, d) = run(id, s, &mut seq, "r1", &close);
        assert_eq!(d, Err(RuleViolation::CloseBeforeContact));
        let contact = TicketCommand::LogContact {
            channel: Channel::Phone,
            summary: text("called"),
        };
        let (s, _) = run(id, s, &mut seq, "r2", &contact);
        let (s, _) = run(id, s, &mut seq, "r3", &close);
        let t = s.clone().unwrap();
        assert_eq!(t.status, Status::Closed);
        assert_eq!(t.closure.as_ref().unwrap().root_cause, "bug");
        assert_eq!(t.first_contact_at, Some(Timestamp(2_000_000)));
        // Retrying r3 replays; reusing r3 for another command is an error.
        let (s, d) = run(id, s, &mut seq, "r3", &close);
        assert_eq!(d, Ok(Decision::AlreadyApplied { sequence: 3 }));
        let reopen = TicketCommand::Reopen {
            reason: text("customer still unhappy"),
        };
        let (_, d) = run(id, s.clone(), &mut seq, "r3", &reopen);
        assert!(matches!(d, Err(RuleViolation::RequestIdReused { .. })));
        let (s, _) = run(id, s, &mut seq, "r4", &reopen);
        let t = s.unwrap();
        assert_eq!(
            (t.status, t.reopen_count, t.closure),
            (Status::Open, 1, None)
        );
    }

    #[test]
    fn a_request_id_reused_with_other_content_is_refused_not_replayed() {
        let id = TicketId::for_manual_request(&rid("r0"));
        let mut seq = 0;
        let (s, _) = run(id, None, &mut seq, "r0", &open_cmd("a@x.io"));
        let note = |t: &str| TicketCommand::AddNote { text: text(t) };
        let (s, _) = run(id, s, &mut seq, "n1", &note("first"));
        let (s, d) = run(id, s, &mut seq, "n1", &note("first"));
        assert_eq!(d, Ok(Decision::AlreadyApplied { sequence: 2 }));
        let (s, d) = run(id, s, &mut seq, "n1", &note("something else"));
        assert_eq!(
            d,
            Err(RuleViolation::RequestIdReused {
                request_id: "n1".into(),
                previous: "note_added",
                same_kind: true
            })
        );
        assert_eq!(
            d.unwrap_err().to_string(),
            "request_id \"n1\" was already used on this ticket by an earlier request \
             (note_added, with other content); a retry must repeat its request exactly: use a \
             new request_id for a new request"
        );
        // The open itself: same request id, another owner.
        let (s, d) = run(id, s, &mut seq, "r0", &open_cmd("b@x.io"));
        assert!(matches!(
            d,
            Err(RuleViolation::RequestIdReused {
                same_kind: true,
                ..
            })
        ));
        // A reassignment's retry matches although the state added the previous owner.
        let to_b = TicketCommand::Reassign {
            new_owner: Email::parse("o", "b@x.io").unwrap(),
            reason: text("holiday"),
        };
        let (s, _) = run(id, s, &mut seq, "re", &to_b);
        let (s, d) = run(id, s, &mut seq, "re", &to_b);
        assert_eq!(d, Ok(Decision::AlreadyApplied { sequence: 3 }));
        let to_c = TicketCommand::Reassign {
            new_owner: Email::parse("o", "c@x.io").unwrap(),
            reason: text("holiday"),
        };
        let (_, d) = run(id, s, &mut seq, "re", &to_c);
        assert!(matches!(d, Err(RuleViolation::RequestIdReused { .. })));
    }

    #[test]
    fn a_workflow_can_require_an_opportunity_at_closure() {
        let id = TicketId::for_feedback("f", "w");
        let mut seq = 0;
        let open = TicketCommand::Open {
            account_id: AccountId::parse("a", "ACME-001").unwrap(),
            owner: Email::parse("o", "a@x.io").unwrap(),
            program_id: None,
            title: None,
            origin: Origin::Workflow {
                feedback_id: "f".into(),
                workflow_id: "w".into(),
            },
            plan: Box::new(Plan {
                require_opportunity: true,
                ..Plan::default()
            }),
        };
        let (s, _) = run(id, None, &mut seq, "r0", &open);
        let contact = TicketCommand::LogContact {
            channel: Channel::Email,
            summary: text("mailed"),
        };
        let (s, _) = run(id, s, &mut seq, "r1", &contact);
        let bare =
            TicketCommand::Close(Closure::parse("pricing", "too dear", "discount", None).unwrap());
        let (s, d) = run(id, s, &mut seq, "r2", &bare);
        assert_eq!(d, Err(RuleViolation::OpportunityRequired));
        let with = TicketCommand::Close(
            Closure::parse(
                "pricing",
                "too dear",
                "discount",
                Some(("renewal", Some(1.0))),
            )
            .unwrap(),
        );
        let (s, d) = run(id, s, &mut seq, "r3", &with);
        assert!(matches!(d, Ok(Decision::Append(_))));
        assert_eq!(s.unwrap().status, Status::Closed);
    }

    #[test]
    fn reassign_to_same_owner_is_refused() {
        let id = TicketId::for_manual_request(&rid("r0"));
        let mut seq = 0;
        let (s, _) = run(id, None, &mut seq, "r0", &open_cmd("a@x.io"));
        let cmd = TicketCommand::Reassign {
            new_owner: Email::parse("o", "A@X.io").unwrap(),
            reason: text("r"),
        };
        let (_, d) = run(id, s, &mut seq, "r1", &cmd);
        assert_eq!(d, Err(RuleViolation::SameOwner("a@x.io".into())));
    }

    #[test]
    fn closure_reports_every_missing_field() {
        let err = Closure::parse("", " ", "", Some(("Up Sell", Some(-1.0)))).unwrap_err();
        let fields: Vec<_> = err.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "root_cause_category",
                "root_cause",
                "actions_taken",
                "opportunity.kind",
                "opportunity.amount"
            ]
        );
    }

    fn arb_command() -> impl Strategy<Value = TicketCommand> {
        let owners = prop::sample::select(vec!["a@x.io", "b@x.io", "c@x.io"]);
        prop_oneof![
            owners.clone().prop_map(open_cmd),
            prop::sample::select(Channel::ALL.to_vec()).prop_map(|channel| {
                TicketCommand::LogContact {
                    channel,
                    summary: text("s"),
                }
            }),
            Just(TicketCommand::AddNote { text: text("n") }),
            owners.prop_map(|o| TicketCommand::Reassign {
                new_owner: Email::parse("o", o).unwrap(),
                reason: text("r"),
            }),
            Just(TicketCommand::RecordReply { text: text("y") }),
            Just(TicketCommand::Close(
                Closure::parse("support", "slow", "escalated", Some(("upsell", Some(5.0))))
                    .unwrap()
            )),
            Just(TicketCommand::Reopen { reason: text("r") }),
            (1u32..4).prop_map(|revision| TicketCommand::AttachFeedback {
                revision,
                summary: "comment added".into(),
            }),
            Just(TicketCommand::WaitOnCustomer {
                reason: text("logs")
            }),
            Just(TicketCommand::EndWait {
                reason: text("got them")
            }),
        ]
    }

    fn allowed(
        from: Option<Status>,
        cmd: &TicketCommand,
        owner: Option<&str>,
        revision: u32,
        waiting: bool,
    ) -> bool {
        use Status::*;
        match (from, cmd) {
            (None, TicketCommand::Open { .. }) => true,
            (None, _) | (Some(_), TicketCommand::Open { .. }) => false,
            (Some(s), TicketCommand::LogContact { .. }) => s != Closed,
            (Some(_), TicketCommand::AddNote { .. } | TicketCommand::RecordReply { .. }) => true,
            (Some(s), TicketCommand::Reassign { new_owner, .. }) => {
                s != Closed && Some(new_owner.as_str()) != owner
            }
            (Some(s), TicketCommand::Close(_)) => s == Contacted,
            (Some(s), TicketCommand::Reopen { .. }) => s == Closed,
            (Some(_), TicketCommand::AttachFeedback { revision: r, .. }) => *r > revision,
            (Some(s), TicketCommand::WaitOnCustomer { .. }) => s != Closed && !waiting,
            (Some(s), TicketCommand::EndWait { .. }) => s != Closed && waiting,
        }
    }

    proptest! {
        /// Exactly one owner at all times, no transition a state forbids, and
        /// status changes only by the commands that may change it.
        #[test]
        fn state_machine_invariants(cmds in prop::collection::vec(arb_command(), 1..40)) {
            let id = TicketId::for_manual_request(&rid("p"));
            let mut state: Option<Ticket> = None;
            let mut seq = 0u64;
            for (i, cmd) in cmds.iter().enumerate() {
                let before = state.clone();
                let from = before.as_ref().map(|t| t.status);
                let owner = before.as_ref().map(|t| t.owner_email.clone());
                let revision = before.as_ref().map_or(0, |t| t.feedback_revision);
                let (next, d) = run(id, state, &mut seq, &format!("r{i}"), cmd);
                let ok = matches!(d, Ok(Decision::Append(_)));
                prop_assert_eq!(ok, allowed(from, cmd, owner.as_deref(), revision, before.as_ref().is_some_and(|t| t.waiting.is_some())), "{:?} from {:?}", cmd, from);
                if let Some(t) = &next {
                    // exactly one owner, always a valid address
                    prop_assert!(Email::parse("o", &t.owner_email).is_ok());
                    prop_assert_eq!(t.closure.is_some(), t.status == Status::Closed);
                    prop_assert!(t.last_touched_at >= t.opened_at);
                    if t.status != Status::Open || t.contact_count > 0 {
                        prop_assert!(t.first_contact_at.is_some());
                    }
                }
                if !ok {
                    prop_assert_eq!(&next, &before, "a refused command must not change state");
                } else if let (Some(b), Some(a)) = (&before, &next) {
                    let status_may_change = matches!(cmd,
                        TicketCommand::LogContact{..} | TicketCommand::Close(_) | TicketCommand::Reopen{..});
                    if !status_may_change { prop_assert_eq!(a.status, b.status); }
                    if b.status == Status::Closed && a.status != Status::Closed {
                        let is_reopen = matches!(cmd, TicketCommand::Reopen { .. });
                        prop_assert!(is_reopen);
                    }
                    let owner_may_change = matches!(cmd, TicketCommand::Reassign{..});
                    if !owner_may_change { prop_assert_eq!(&a.owner_email, &b.owner_email); }
                }
                state = next;
            }
        }

        /// A close without every piece of documentation never parses, so it can never be decided.
        #[test]
        fn closing_without_documentation_is_rejected(
            cat in prop::sample::select(vec!["", " ", "product", "nonsense"]),
            rc in prop::sample::select(vec!["", "  \t", "the upgrade broke sso"]),
            act in prop::sample::select(vec!["", "\n", "hotfix shipped, call held"]),
        ) {
            let complete = RootCauseCategory::parse("c", cat).is_ok()
                && !rc.trim().is_empty() && !act.trim().is_empty();
            prop_assert_eq!(Closure::parse(cat, rc, act, None).is_ok(), complete);
        }

        /// Replaying any request id gives back the original sequence and writes nothing.
        #[test]
        fn retries_are_idempotent(cmds in prop::collection::vec(arb_command(), 1..20), pick in 0usize..20) {
            let id = TicketId::for_manual_request(&rid("p"));
            let mut state = None;
            let mut seq = 0;
            let mut written = Vec::new();
            for (i, cmd) in cmds.iter().enumerate() {
                let (next, d) = run(id, state, &mut seq, &format!("r{i}"), cmd);
                if let Ok(Decision::Append(_)) = d { written.push((i, seq)); }
                state = next;
            }
            if let Some(&(i, s)) = written.get(pick % written.len().max(1)) {
                let before = seq;
                let (_, d) = run(id, state, &mut seq, &format!("r{i}"), &cmds[i]);
                prop_assert_eq!(d, Ok(Decision::AlreadyApplied { sequence: s }));
                prop_assert_eq!(seq, before);
            }
        }
    }
}
