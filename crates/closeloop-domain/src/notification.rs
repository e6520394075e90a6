//! Who hears what: one pure function from a ticket event to the notices it
//! causes ([`notices`]), and the life of one notice as an aggregate
//! ([`NotificationAggregate`]: requested, attempted, delivered, gave up).
//!
//! The decision, case by case:
//! * the **owner** of a new or reassigned ticket gets an actionable alert,
//!   and a customer reply on the ticket; owner alerts are always immediate;
//! * **stakeholders** get an FYI when the ticket opens, is reassigned or is
//!   reopened, and the documented outcome when it closes, immediately or in
//!   their daily digest as they prefer;
//! * the previous owner of a reassigned ticket gets an FYI;
//! * a person who would hear one event twice (the owner is also a
//!   stakeholder) hears it once, in the owner's role;
//! * a person whose channel is `none` hears nothing.
//!
//! A new kind of event (escalations) is one new arm of [`notices`].

use crate::ticket::{Ticket, TicketEvent};
use crate::{Decision, FieldViolation, Timestamp};

/// Where a person is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NotifyChannel {
    Email,
    Chat,
    /// A registered webhook endpoint (the recipient is its id).
    Webhook,
}

impl NotifyChannel {
    /// The channel named `s` (as [`NotifyChannel::as_str`] writes it).
    pub fn parse(s: &str) -> Option<NotifyChannel> {
        [
            NotifyChannel::Email,
            NotifyChannel::Chat,
            NotifyChannel::Webhook,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyChannel::Email => "email",
            NotifyChannel::Chat => "chat",
            NotifyChannel::Webhook => "webhook",
        }
    }
}

/// When a person hears stakeholder FYIs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Cadence {
    /// As they happen (the default).
    #[default]
    Immediate,
    /// One message a day at `hour` (0-23) local time in time zone `tz`
    /// (an IANA name), listing the day's FYIs.
    DailyDigest { hour: u8, tz: String },
}

/// A person's notification preferences (from the directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preferences {
    /// Empty: the person is told nothing (`none`).
    pub channels: Vec<NotifyChannel>,
    pub cadence: Cadence,
}

impl Cadence {
    /// A daily digest at `hour` (0-23) in IANA time zone `tz`, checked.
    pub fn daily_digest(field: &str, hour: u32, tz: &str) -> Result<Cadence, FieldViolation> {
        if hour > 23 {
            return Err(FieldViolation::new(
                format!("{field}.digest_hour"),
                format!("{hour} is not an hour of the day (0-23)"),
            ));
        }
        let tz = tz.trim();
        if jiff::tz::TimeZone::get(tz).is_err() {
            return Err(FieldViolation::new(
                format!("{field}.digest_time_zone"),
                format!(
                    "{tz:?} is not an IANA time zone (e.g. Europe/Paris, America/New_York, UTC)"
                ),
            ));
        }
        Ok(Cadence::DailyDigest {
            hour: hour as u8,
            tz: tz.to_string(),
        })
    }
}

/// When the daily digest at `hour` o'clock local time in time zone `tz`
/// that an FYI at `after` goes into is sent: the first such time strictly
/// after `after`. On a day whose `hour` o'clock does not exist (clocks
/// jump over it) it is the instant the clocks jump to; on one where it
/// happens twice, the first. `None` for an unknown time zone.
pub fn next_digest_at(after: Timestamp, hour: u8, tz: &str) -> Option<Timestamp> {
    let zone = jiff::tz::TimeZone::get(tz).ok()?;
    let at = jiff::Timestamp::from_microsecond(after.as_micros()).ok()?;
    let mut day = at.to_zoned(zone.clone()).date();
    for _ in 0..3 {
        let candidate = day
            .at(i8::try_from(hour).ok()?, 0, 0, 0)
            .to_zoned(zone.clone())
            .ok()?
            .timestamp();
        if candidate > at {
            return Some(Timestamp::from_micros(candidate.as_microsecond()));
        }
        day = day.tomorrow().ok()?;
    }
    None
}

impl Preferences {
    /// A person's preferences as the directory records them: `channels`
    /// (`email`, `chat`; `none` alone: told nothing; empty: e-mail), and a
    /// daily digest for stakeholder FYIs when `digest_hour` is set. Every
    /// bad field is reported, named under `field`.
    pub fn parse(
        field: &str,
        channels: &[String],
        digest_hour: Option<u32>,
        digest_time_zone: &str,
    ) -> Result<Preferences, Vec<FieldViolation>> {
        let mut bad = Vec::new();
        let mut list = Vec::new();
        let mut none = false;
        for (i, c) in channels.iter().enumerate() {
            let c = c.trim().to_ascii_lowercase();
            match c.as_str() {
                "none" => none = true,
                "email" | "chat" => {
                    let ch = NotifyChannel::parse(&c).expect("named above");
                    if !list.contains(&ch) {
                        list.push(ch);
                    }
                }
                _ => bad.push(FieldViolation::new(
                    format!("{field}.channels[{i}]"),
                    format!("{c:?} is not a channel: use email, chat or none"),
                )),
            }
        }
        if none && !list.is_empty() {
            bad.push(FieldViolation::new(
                format!("{field}.channels"),
                "none means no channel: it cannot be listed with others",
            ));
        }
        let cadence = match digest_hour {
            None if digest_time_zone.trim().is_empty() => Cadence::Immediate,
            None => {
                bad.push(FieldViolation::new(
                    format!("{field}.digest_hour"),
                    "a digest time zone needs a digest hour (0-23)",
                ));
                Cadence::Immediate
            }
            Some(h) => {
                let tz = match digest_time_zone.trim() {
                    "" => "UTC",
                    tz => tz,
                };
                Cadence::daily_digest(field, h, tz).unwrap_or_else(|e| {
                    bad.push(e);
                    Cadence::Immediate
                })
            }
        };
        if !bad.is_empty() {
            return Err(bad);
        }
        if !none && list.is_empty() {
            list.push(NotifyChannel::Email);
        }
        Ok(Preferences {
            channels: list,
            cadence,
        })
    }
}

/// Which chat tool an incoming webhook belongs to (their JSON differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatKind {
    /// Slack incoming webhooks (`{"text", "blocks"}`).
    Slack,
    /// Microsoft Teams webhooks (Workflows), an Adaptive Card message.
    Teams,
}

impl ChatKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatKind::Slack => "slack",
            ChatKind::Teams => "teams",
        }
    }
}

/// A chat incoming-webhook a person or team is told through.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChatHook {
    pub kind: ChatKind,
    pub url: String,
}

impl ChatHook {
    /// Checks a chat webhook as the directory records it (`kind`: slack or
    /// teams; `url`: an http(s) URL; where it may point is checked when it
    /// is called).
    pub fn parse(field: &str, kind: &str, url: &str) -> Result<ChatHook, Vec<FieldViolation>> {
        let mut bad = Vec::new();
        let kind = match kind.trim().to_ascii_lowercase().as_str() {
            "slack" => Some(ChatKind::Slack),
            "teams" => Some(ChatKind::Teams),
            other => {
                bad.push(FieldViolation::new(
                    format!("{field}.kind"),
                    format!("{other:?} is not a chat tool: use slack or teams"),
                ));
                None
            }
        };
        let url = url.trim();
        let host = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
        if !matches!(host, Some(h) if !h.is_empty()) || url.chars().any(char::is_whitespace) {
            bad.push(FieldViolation::new(
                format!("{field}.url"),
                format!("{url:?} is not an http(s) URL (the chat tool's incoming-webhook URL)"),
            ));
        }
        match (kind, bad.is_empty()) {
            (Some(kind), true) => Ok(ChatHook {
                kind,
                url: url.to_string(),
            }),
            _ => Err(bad),
        }
    }
}

impl Default for Preferences {
    /// E-mail, immediately: what a person not in the directory gets.
    fn default() -> Self {
        Preferences {
            channels: vec![NotifyChannel::Email],
            cadence: Cadence::Immediate,
        }
    }
}

/// Why someone is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// The owner of a new ticket: act on it.
    OwnerAssigned,
    /// The new owner of a reassigned ticket: act on it.
    OwnerReassigned,
    /// The owner: the customer replied on the ticket.
    CustomerReplied,
    /// A stakeholder: a ticket was opened.
    OpenedFyi,
    /// A stakeholder or the previous owner: the ticket changed hands.
    ReassignedFyi,
    /// A stakeholder: the ticket was closed; here is what was done.
    ClosedOutcome,
    /// A stakeholder: a closed ticket was reopened.
    ReopenedFyi,
    /// A connected system (a webhook endpoint): the ticket event itself.
    Webhook,
    /// The owner: an SLA clock is about to be breached.
    SlaWarning,
    /// The owner: an SLA clock was breached.
    SlaBreach,
    /// The owner's manager (or further up, or the program's fallback): the
    /// ticket has been untouched too long.
    Escalation,
    /// The owner, in copy of an escalation about their ticket.
    EscalationFyi,
    /// A region's sales-operations list: the weekly open-ticket report
    /// (its own templates; not about one ticket).
    WeeklyReport,
}

impl NoticeKind {
    /// Every kind a person is told (each has a template).
    pub const ALL: [NoticeKind; 11] = [
        NoticeKind::OwnerAssigned,
        NoticeKind::OwnerReassigned,
        NoticeKind::CustomerReplied,
        NoticeKind::OpenedFyi,
        NoticeKind::ReassignedFyi,
        NoticeKind::ClosedOutcome,
        NoticeKind::ReopenedFyi,
        NoticeKind::SlaWarning,
        NoticeKind::SlaBreach,
        NoticeKind::Escalation,
        NoticeKind::EscalationFyi,
    ];

    /// The kind named `s` (as [`NoticeKind::as_str`] writes it).
    pub fn parse(s: &str) -> Option<NoticeKind> {
        NoticeKind::ALL
            .into_iter()
            .chain([NoticeKind::Webhook, NoticeKind::WeeklyReport])
            .find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::OwnerAssigned => "owner_assigned",
            NoticeKind::OwnerReassigned => "owner_reassigned",
            NoticeKind::CustomerReplied => "customer_replied",
            NoticeKind::OpenedFyi => "opened_fyi",
            NoticeKind::ReassignedFyi => "reassigned_fyi",
            NoticeKind::ClosedOutcome => "closed_outcome",
            NoticeKind::ReopenedFyi => "reopened_fyi",
            NoticeKind::Webhook => "webhook",
            NoticeKind::SlaWarning => "sla_warning",
            NoticeKind::SlaBreach => "sla_breach",
            NoticeKind::Escalation => "escalation",
            NoticeKind::EscalationFyi => "escalation_fyi",
            NoticeKind::WeeklyReport => "weekly_report",
        }
    }

    /// Kinds caused by an SLA event (not a ticket event).
    pub fn is_sla(self) -> bool {
        matches!(
            self,
            NoticeKind::SlaWarning
                | NoticeKind::SlaBreach
                | NoticeKind::Escalation
                | NoticeKind::EscalationFyi
        )
    }

    /// Owner alerts (and SLA alerts) are actionable and always immediate.
    pub fn is_owner_alert(self) -> bool {
        matches!(
            self,
            NoticeKind::OwnerAssigned
                | NoticeKind::OwnerReassigned
                | NoticeKind::CustomerReplied
                | NoticeKind::SlaWarning
                | NoticeKind::SlaBreach
                | NoticeKind::Escalation
                | NoticeKind::EscalationFyi
        )
    }
}

/// One person told one thing on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub recipient: String,
    pub kind: NoticeKind,
    pub channel: NotifyChannel,
    /// `None`: send now; else in the recipient's daily digest.
    pub digest: Option<Cadence>,
}

impl Notice {
    /// When this notice goes out when it comes from an event at `at`:
    /// `None` now, else its digest's time.
    pub fn not_before(&self, at: Timestamp) -> Option<Timestamp> {
        match &self.digest {
            Some(Cadence::DailyDigest { hour, tz }) => next_digest_at(at, *hour, tz),
            _ => None,
        }
    }
}

/// The notices ticket event `event` causes, given the ticket after it
/// (`ticket`) and each person's preferences (`prefs`, by e-mail). Pure.
pub fn notices(
    event: &TicketEvent,
    ticket: &Ticket,
    prefs: &dyn Fn(&str) -> Preferences,
) -> Vec<Notice> {
    let owner = ticket.owner_email.as_str();
    let stakeholders = || ticket.plan.stakeholders.iter().map(String::as_str);
    let mut who: Vec<(&str, NoticeKind)> = Vec::new();
    match event {
        TicketEvent::Opened { .. } => {
            who.push((owner, NoticeKind::OwnerAssigned));
            who.extend(stakeholders().map(|s| (s, NoticeKind::OpenedFyi)));
        }
        TicketEvent::OwnerReassigned {
            previous_owner_email,
            ..
        } => {
            who.push((owner, NoticeKind::OwnerReassigned));
            who.push((previous_owner_email.as_str(), NoticeKind::ReassignedFyi));
            who.extend(stakeholders().map(|s| (s, NoticeKind::ReassignedFyi)));
        }
        TicketEvent::CustomerReplied { .. } => who.push((owner, NoticeKind::CustomerReplied)),
        TicketEvent::Closed { .. } => {
            who.extend(stakeholders().map(|s| (s, NoticeKind::ClosedOutcome)));
        }
        TicketEvent::Reopened { .. } => {
            who.extend(stakeholders().map(|s| (s, NoticeKind::ReopenedFyi)));
        }
        TicketEvent::ContactLogged { .. }
        | TicketEvent::NoteAdded { .. }
        | TicketEvent::FeedbackRevised { .. }
        | TicketEvent::AwaitingCustomer { .. }
        | TicketEvent::WaitEnded { .. } => {}
    }
    let mut out: Vec<Notice> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (person, kind) in who {
        let person = person.trim().to_ascii_lowercase();
        // The first reason wins: the owner's role before a stakeholder's.
        if person.is_empty() || seen.contains(&person) {
            continue;
        }
        seen.push(person.clone());
        let p = prefs(&person);
        let digest = match (&p.cadence, kind.is_owner_alert()) {
            (Cadence::DailyDigest { .. }, false) => Some(p.cadence.clone()),
            _ => None,
        };
        for channel in &p.channels {
            out.push(Notice {
                recipient: person.clone(),
                kind,
                channel: *channel,
                digest: digest.clone(),
            });
        }
    }
    out
}

/// The notices SLA event `event`, recorded at `at`, causes: a warning or a
/// breach tells the ticket's owner; an escalation tells its target with the
/// owner in copy. A warning recorded at or after its clock's due time (its
/// timer fired late: the role was down, or a simulated clock jumped past
/// the due time) tells nobody: the breach recorded with it does, and "due
/// soon" would no longer be true. Pure.
pub fn sla_notices(
    event: &crate::sla::SlaEvent,
    at: Timestamp,
    prefs: &dyn Fn(&str) -> Preferences,
) -> Vec<Notice> {
    use crate::sla::SlaEvent;
    let who: Vec<(&str, NoticeKind)> = match event {
        SlaEvent::Warned { due_at, .. } if at >= *due_at => Vec::new(),
        SlaEvent::Warned { owner, .. } => vec![(owner.as_str(), NoticeKind::SlaWarning)],
        SlaEvent::Breached { owner, .. } => vec![(owner.as_str(), NoticeKind::SlaBreach)],
        SlaEvent::Escalated { to, owner, .. } => {
            vec![
                (to.as_str(), NoticeKind::Escalation),
                (owner.as_str(), NoticeKind::EscalationFyi),
            ]
        }
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (person, kind) in who {
        let person = person.trim().to_ascii_lowercase();
        if person.is_empty() || seen.contains(&person) {
            continue;
        }
        seen.push(person.clone());
        for channel in &prefs(&person).channels {
            out.push(Notice {
                recipient: person.clone(),
                kind,
                channel: *channel,
                digest: None,
            });
        }
    }
    out
}

/// Namespace of notification ids (UUIDv5).
const NOTIFICATION_NS: uuid::Uuid =
    uuid::Uuid::from_u128(0x6c0e_1f0b_5d3a_4b7e_9a51_7f3c_2e8d_0040);

/// A notification's id: UUIDv5 of (causing event id, recipient, channel).
/// Deterministic: a redelivered or replayed event names the same
/// notifications, so nothing is sent twice under a new id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NotificationId(uuid::Uuid);

impl NotificationId {
    pub fn of(event_id: &str, recipient: &str, channel: NotifyChannel) -> NotificationId {
        NotificationId(uuid::Uuid::new_v5(
            &NOTIFICATION_NS,
            format!(
                "{event_id}/{}/{}",
                recipient.to_ascii_lowercase(),
                channel.as_str()
            )
            .as_bytes(),
        ))
    }
}

impl NotificationId {
    /// A notification id as written.
    pub fn parse(s: &str) -> Option<NotificationId> {
        uuid::Uuid::try_parse(s).ok().map(NotificationId)
    }
}

impl std::fmt::Display for NotificationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver accepted it (SMTP 250, HTTP 2xx).
    Delivered,
    /// A failure worth retrying (timeouts, 5xx, 429), with the receiver's
    /// status code when there was one, and how long it asked us to wait
    /// (HTTP `Retry-After`, seconds) if it did.
    Retryable {
        status: Option<u16>,
        error: String,
        retry_after: Option<u64>,
    },
    /// A failure retrying cannot fix (a refused address, HTTP 410).
    Permanent { status: Option<u16>, error: String },
}

impl AttemptOutcome {
    /// The failure's message (`None` when delivered).
    pub fn error(&self) -> Option<&str> {
        match self {
            AttemptOutcome::Delivered => None,
            AttemptOutcome::Retryable { error, .. } | AttemptOutcome::Permanent { error, .. } => {
                Some(error)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationCommand {
    Request {
        ticket_id: String,
        cause_event_id: String,
        recipient: String,
        channel: NotifyChannel,
        kind: NoticeKind,
        /// In a daily digest: not before this time (the digest's).
        not_before: Option<Timestamp>,
    },
    RecordAttempt {
        attempt: u32,
        outcome: AttemptOutcome,
    },
    /// The last retry failed: stop.
    GiveUp { reason: String },
    /// An operator sends a notification that gave up again (after fixing
    /// the cause): a new round of attempts on the same schedule.
    Redrive,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationEvent {
    Requested {
        ticket_id: String,
        cause_event_id: String,
        recipient: String,
        channel: NotifyChannel,
        kind: NoticeKind,
        /// In a daily digest: sent with the recipient's other FYIs of that
        /// digest at this time; `None`: at once.
        not_before: Option<Timestamp>,
    },
    Attempted {
        attempt: u32,
        outcome: AttemptOutcome,
    },
    Delivered {
        attempt: u32,
    },
    GaveUp {
        attempts: u32,
        reason: String,
    },
    /// Sent again by an operator after giving up, after `attempts` attempts.
    Redriven {
        attempts: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    GaveUp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub ticket_id: String,
    pub recipient: String,
    pub channel: NotifyChannel,
    pub kind: NoticeKind,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// Attempts before the current round (0 until a redrive).
    pub round_start: u32,
    pub last_error: Option<String>,
    pub sequence: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationRule {
    #[error("notification {0} was never requested")]
    NotRequested(NotificationId),
    #[error("notification {0} is finished ({1:?}); nothing more is recorded")]
    Finished(NotificationId, DeliveryStatus),
    #[error("notification {0} is {1:?}: only one that gave up can be redriven")]
    NotGivenUp(NotificationId, DeliveryStatus),
}

/// A notification event as stored, with its stream sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNotification {
    pub event: NotificationEvent,
    pub sequence: u64,
}

/// One notification's life as an [`crate::Aggregate`].
pub struct NotificationAggregate;

impl crate::Aggregate for NotificationAggregate {
    type Id = NotificationId;
    type State = Notification;
    type Command = NotificationCommand;
    type Event = NotificationEvent;
    type Rule = NotificationRule;
    type Recorded = StoredNotification;

    const TYPE: &'static str = "notification";

    fn decide(
        id: NotificationId,
        state: Option<&Notification>,
        _request_id: &str,
        cmd: &NotificationCommand,
    ) -> Result<Decision<NotificationEvent>, NotificationRule> {
        match (state, cmd) {
            (
                None,
                NotificationCommand::Request {
                    ticket_id,
                    cause_event_id,
                    recipient,
                    channel,
                    kind,
                    not_before,
                },
            ) => Ok(Decision::Append(NotificationEvent::Requested {
                ticket_id: ticket_id.clone(),
                cause_event_id: cause_event_id.clone(),
                recipient: recipient.clone(),
                channel: *channel,
                kind: *kind,
                not_before: *not_before,
            })),
            // Requested again (a redelivered event): it already exists.
            (Some(s), NotificationCommand::Request { .. }) => Ok(Decision::AlreadyApplied {
                sequence: s.sequence,
            }),
            (None, _) => Err(NotificationRule::NotRequested(id)),
            (Some(s), NotificationCommand::Redrive) => match s.status {
                DeliveryStatus::GaveUp => Ok(Decision::Append(NotificationEvent::Redriven {
                    attempts: s.attempts,
                })),
                other => Err(NotificationRule::NotGivenUp(id, other)),
            },
            (Some(s), _) if s.status != DeliveryStatus::Pending => {
                Err(NotificationRule::Finished(id, s.status))
            }
            // An attempt recorded before (a retried record): nothing new.
            (Some(s), NotificationCommand::RecordAttempt { attempt, .. })
                if *attempt <= s.attempts =>
            {
                Ok(Decision::AlreadyApplied {
                    sequence: s.sequence,
                })
            }
            (Some(_), NotificationCommand::RecordAttempt { attempt, outcome }) => {
                Ok(Decision::Append(match outcome {
                    AttemptOutcome::Delivered => NotificationEvent::Delivered { attempt: *attempt },
                    other => NotificationEvent::Attempted {
                        attempt: *attempt,
                        outcome: other.clone(),
                    },
                }))
            }
            (Some(s), NotificationCommand::GiveUp { reason }) => {
                Ok(Decision::Append(NotificationEvent::GaveUp {
                    attempts: s.attempts,
                    reason: reason.clone(),
                }))
            }
        }
    }

    fn evolve(state: Option<Notification>, r: &StoredNotification) -> Option<Notification> {
        let mut s = match (state, &r.event) {
            (
                None,
                NotificationEvent::Requested {
                    ticket_id,
                    recipient,
                    channel,
                    kind,
                    ..
                },
            ) => Notification {
                ticket_id: ticket_id.clone(),
                recipient: recipient.clone(),
                channel: *channel,
                kind: *kind,
                status: DeliveryStatus::Pending,
                attempts: 0,
                round_start: 0,
                last_error: None,
                sequence: 0,
            },
            (None, _) => return None,
            (Some(s), NotificationEvent::Requested { .. }) => s,
            (Some(mut s), NotificationEvent::Attempted { attempt, outcome }) => {
                s.attempts = s.attempts.max(*attempt);
                s.last_error = outcome.error().map(str::to_string);
                s
            }
            (Some(mut s), NotificationEvent::Delivered { attempt }) => {
                s.attempts = s.attempts.max(*attempt);
                s.status = DeliveryStatus::Delivered;
                s
            }
            (Some(mut s), NotificationEvent::GaveUp { reason, .. }) => {
                s.status = DeliveryStatus::GaveUp;
                s.last_error = Some(reason.clone());
                s
            }
            (Some(mut s), NotificationEvent::Redriven { attempts }) => {
                s.status = DeliveryStatus::Pending;
                s.attempts = s.attempts.max(*attempts);
                s.round_start = s.attempts;
                s
            }
        };
        s.sequence = r.sequence;
        Some(s)
    }

    fn sequence(state: &Notification) -> u64 {
        state.sequence
    }
}

/// Seconds between a failed attempt and the next: 30 s doubling to an
/// hour, then 2, 4, 6 and 8 hours, about 22 hours in all.
const RETRY_SCHEDULE: [u64; 11] = [
    30, 60, 120, 300, 600, 1800, 3600, 7200, 14_400, 21_600, 28_800,
];

/// Attempts a notification gets in a round before it gives up: the first,
/// and one after each step of the schedule.
pub const MAX_ATTEMPTS: u32 = RETRY_SCHEDULE.len() as u32 + 1;

/// The longest wait a receiver's `Retry-After` can ask for (longer asks
/// are cut to this): a day, the length of the whole schedule.
pub const MAX_RETRY_AFTER: u64 = 24 * 3600;

/// When to try notification `id` again after failed attempt `attempt`
/// (1-based, within its round): the schedule's step with a deterministic
/// jitter of up to ±10% (so endpoints that failed together do not retry
/// together, and every replica and replay computes the same time), or the
/// receiver's `retry_after` (seconds, at most [`MAX_RETRY_AFTER`]) when it
/// asks for longer. `None` after the last attempt: give up.
pub fn next_attempt_delay(
    id: &str,
    attempt: u32,
    retry_after: Option<u64>,
) -> Option<std::time::Duration> {
    let step = retry_delay(attempt)?.as_millis() as u64;
    let h = uuid::Uuid::new_v5(&NOTIFICATION_NS, format!("{id}/{attempt}").as_bytes());
    let r = u64::from(u16::from_le_bytes([h.as_bytes()[0], h.as_bytes()[1]]));
    // step × (0.9 .. 1.1)
    let jittered = step * 9 / 10 + step * r / (5 * 65_535);
    let asked = retry_after.unwrap_or(0).min(MAX_RETRY_AFTER) * 1000;
    Some(std::time::Duration::from_millis(jittered.max(asked)))
}

/// How long to wait after failed attempt `attempt` (1-based, within its
/// round) before the next one; `None` after the last attempt: give up.
pub fn retry_delay(attempt: u32) -> Option<std::time::Duration> {
    let i = usize::try_from(attempt.checked_sub(1)?).ok()?;
    RETRY_SCHEDULE
        .get(i)
        .map(|s| std::time::Duration::from_secs(*s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Aggregate;
    use crate::ticket::{Origin, Plan, Status};
    use crate::{TicketId, Timestamp};

    fn ticket(owner: &str, stakeholders: &[&str]) -> Ticket {
        Ticket {
            id: TicketId::for_feedback("f", "w"),
            status: Status::Open,
            account_id: "ACME-001".into(),
            owner_email: owner.into(),
            program_id: "relationship-nps".into(),
            title: "t".into(),
            origin: Origin::Manual,
            plan: Plan {
                stakeholders: stakeholders.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            feedback_revision: 0,
            opened_at: Timestamp::from_micros(0),
            last_touched_at: Timestamp::from_micros(0),
            first_contact_at: None,
            closed_at: None,
            closure: None,
            contact_count: 0,
            note_count: 0,
            reply_count: 0,
            reopen_count: 0,
            waiting: None,
            sequence: 1,
            applied: Default::default(),
        }
    }

    fn email_now(_: &str) -> Preferences {
        Preferences::default()
    }

    fn who(n: &[Notice]) -> Vec<(&str, NoticeKind)> {
        n.iter().map(|n| (n.recipient.as_str(), n.kind)).collect()
    }

    fn opened() -> TicketEvent {
        TicketEvent::Opened {
            account_id: "ACME-001".into(),
            owner_email: "o@v.io".into(),
            program_id: "p".into(),
            title: "t".into(),
            origin: Origin::Manual,
            plan: Box::default(),
        }
    }

    #[test]
    fn opening_alerts_the_owner_and_tells_stakeholders() {
        let t = ticket("o@v.io", &["s1@v.io", "s2@v.io"]);
        let n = notices(&opened(), &t, &email_now);
        assert_eq!(
            who(&n),
            [
                ("o@v.io", NoticeKind::OwnerAssigned),
                ("s1@v.io", NoticeKind::OpenedFyi),
                ("s2@v.io", NoticeKind::OpenedFyi)
            ]
        );
        assert!(
            n.iter()
                .all(|n| n.channel == NotifyChannel::Email && n.digest.is_none())
        );
    }

    #[test]
    fn an_owner_who_is_also_a_stakeholder_hears_once_as_owner() {
        let t = ticket("o@v.io", &["O@v.io", "s@v.io"]);
        let n = notices(&opened(), &t, &email_now);
        assert_eq!(
            who(&n),
            [
                ("o@v.io", NoticeKind::OwnerAssigned),
                ("s@v.io", NoticeKind::OpenedFyi)
            ]
        );
    }

    #[test]
    fn reassignment_alerts_the_new_owner_and_tells_the_previous_one() {
        let t = ticket("new@v.io", &["s@v.io"]);
        let e = TicketEvent::OwnerReassigned {
            previous_owner_email: "old@v.io".into(),
            new_owner_email: "new@v.io".into(),
            reason: "holiday".into(),
        };
        assert_eq!(
            who(&notices(&e, &t, &email_now)),
            [
                ("new@v.io", NoticeKind::OwnerReassigned),
                ("old@v.io", NoticeKind::ReassignedFyi),
                ("s@v.io", NoticeKind::ReassignedFyi)
            ]
        );
    }

    #[test]
    fn replies_go_to_the_owner_closures_and_reopens_to_stakeholders() {
        let t = ticket("o@v.io", &["s@v.io"]);
        let reply = TicketEvent::CustomerReplied { text: "hi".into() };
        assert_eq!(
            who(&notices(&reply, &t, &email_now)),
            [("o@v.io", NoticeKind::CustomerReplied)]
        );
        let closed = TicketEvent::Closed {
            root_cause_category: "product".into(),
            root_cause: "r".into(),
            actions_taken: "a".into(),
            opportunity: None,
        };
        assert_eq!(
            who(&notices(&closed, &t, &email_now)),
            [("s@v.io", NoticeKind::ClosedOutcome)]
        );
        let reopened = TicketEvent::Reopened { reason: "r".into() };
        assert_eq!(
            who(&notices(&reopened, &t, &email_now)),
            [("s@v.io", NoticeKind::ReopenedFyi)]
        );
        for quiet in [
            TicketEvent::NoteAdded { text: "n".into() },
            TicketEvent::FeedbackRevised {
                revision: 1,
                summary: "s".into(),
            },
        ] {
            assert!(notices(&quiet, &t, &email_now).is_empty());
        }
    }

    #[test]
    fn preferences_choose_channels_and_digest_stakeholder_fyis_only() {
        let t = ticket("o@v.io", &["s@v.io", "quiet@v.io"]);
        let digest = Cadence::DailyDigest {
            hour: 8,
            tz: "Europe/Paris".into(),
        };
        let prefs = |p: &str| match p {
            "quiet@v.io" => Preferences {
                channels: vec![],
                cadence: Cadence::Immediate,
            },
            _ => Preferences {
                channels: vec![NotifyChannel::Email, NotifyChannel::Chat],
                cadence: digest.clone(),
            },
        };
        let n = notices(&opened(), &t, &prefs);
        let owner: Vec<_> = n.iter().filter(|n| n.recipient == "o@v.io").collect();
        assert_eq!(owner.len(), 2);
        assert!(
            owner.iter().all(|n| n.digest.is_none()),
            "owner alerts are immediate"
        );
        let s: Vec<_> = n.iter().filter(|n| n.recipient == "s@v.io").collect();
        assert_eq!(s.len(), 2);
        assert!(s.iter().all(|n| n.digest.as_ref() == Some(&digest)));
        assert!(n.iter().all(|n| n.recipient != "quiet@v.io"));
    }

    #[test]
    fn retries_back_off_for_about_a_day_then_stop() {
        assert_eq!(retry_delay(0), None);
        assert_eq!(retry_delay(1), Some(std::time::Duration::from_secs(30)));
        let total: u64 = (1..MAX_ATTEMPTS)
            .map(|a| retry_delay(a).unwrap().as_secs())
            .sum();
        assert!((20 * 3600..26 * 3600).contains(&total), "{total}");
        assert_eq!(retry_delay(MAX_ATTEMPTS), None);
        for a in 1..MAX_ATTEMPTS - 1 {
            assert!(retry_delay(a) < retry_delay(a + 1));
        }
    }

    #[test]
    fn preferences_parse_channels_none_and_digests() {
        let ch = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            Preferences::parse("notify", &[], None, "").unwrap(),
            Preferences::default()
        );
        let p = Preferences::parse(
            "notify",
            &ch(&["Chat", "email", "chat"]),
            Some(8),
            "Europe/Paris",
        )
        .unwrap();
        assert_eq!(p.channels, [NotifyChannel::Chat, NotifyChannel::Email]);
        assert_eq!(
            p.cadence,
            Cadence::DailyDigest {
                hour: 8,
                tz: "Europe/Paris".into()
            }
        );
        assert!(
            Preferences::parse("notify", &ch(&["none"]), None, "")
                .unwrap()
                .channels
                .is_empty()
        );
        let bad = Preferences::parse(
            "notify",
            &ch(&["sms", "none", "email"]),
            Some(24),
            "Mars/Olympus",
        )
        .unwrap_err();
        let fields: Vec<&str> = bad.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "notify.channels[0]",
                "notify.channels",
                "notify.digest_hour"
            ]
        );
        let tz = Preferences::parse("notify", &[], Some(7), "Mars/Olympus").unwrap_err();
        assert_eq!(tz[0].field, "notify.digest_time_zone");
        assert_eq!(
            Preferences::parse("notify", &[], None, "UTC").unwrap_err()[0].field,
            "notify.digest_hour"
        );
        assert!(ChatHook::parse("chat", "slack", "https://hooks.slack.com/services/T/B/x").is_ok());
        let bad = ChatHook::parse("chat", "irc", "ftp://x").unwrap_err();
        assert_eq!(bad.len(), 2);
        assert!(ChatHook::parse("chat", "teams", "https://").is_err());
    }

    fn ts(s: &str) -> Timestamp {
        Timestamp::from_micros(s.parse::<jiff::Timestamp>().unwrap().as_microsecond())
    }

    #[test]
    fn digests_go_out_at_the_next_local_hour_across_dst() {
        // Paris is UTC+1 in winter: 08:00 local is 07:00Z.
        assert_eq!(
            next_digest_at(ts("2026-11-23T06:59:59Z"), 8, "Europe/Paris"),
            Some(ts("2026-11-23T07:00:00Z"))
        );
        // At the digest's very time: the next day's.
        assert_eq!(
            next_digest_at(ts("2026-11-23T07:00:00Z"), 8, "Europe/Paris"),
            Some(ts("2026-11-24T07:00:00Z"))
        );
        // Across the spring change (29 March 2026): 08:00 is 06:00Z after it.
        assert_eq!(
            next_digest_at(ts("2026-03-28T08:00:00Z"), 8, "Europe/Paris"),
            Some(ts("2026-03-29T06:00:00Z"))
        );
        // 02:30 does not exist that night: the instant clocks jump to.
        assert_eq!(
            next_digest_at(ts("2026-03-28T23:00:00Z"), 2, "Europe/Paris"),
            Some(ts("2026-03-29T01:00:00Z"))
        );
        // 02:00 happens twice on 25 October 2026: the first.
        assert_eq!(
            next_digest_at(ts("2026-10-24T23:30:00Z"), 2, "Europe/Paris"),
            Some(ts("2026-10-25T00:00:00Z"))
        );
        // Auckland (UTC+13 in its summer) is a day ahead: 12:00Z on the
        // 23rd is 01:00 on the 24th there, whose 08:00 is 19:00Z the 23rd.
        assert_eq!(
            next_digest_at(ts("2026-11-23T12:00:00Z"), 8, "Pacific/Auckland"),
            Some(ts("2026-11-23T19:00:00Z"))
        );
        assert_eq!(
            next_digest_at(ts("2026-11-23T12:00:00Z"), 8, "Nowhere/Else"),
            None
        );
    }

    proptest::proptest! {
        /// The digest time is after the FYI, within about a day, and (on
        /// any day the hour exists) at that hour, local time.
        #[test]
        fn digest_time_is_the_next_local_hour(
            micros in 0i64..4_102_444_800_000_000,
            hour in 0u8..24,
            zone in proptest::sample::select(vec![
                "UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata",
                "Australia/Lord_Howe", "Pacific/Chatham", "America/Santiago",
            ]),
        ) {
            let at = Timestamp::from_micros(micros);
            let next = next_digest_at(at, hour, zone).unwrap();
            proptest::prop_assert!(next > at);
            proptest::prop_assert!(next.as_micros() - at.as_micros() <= 26 * 3_600_000_000);
            let tz = jiff::tz::TimeZone::get(zone).unwrap();
            let local = jiff::Timestamp::from_microsecond(next.as_micros()).unwrap().to_zoned(tz);
            // The hour exists that day when the wall time `hour`:00 maps to
            // itself (in a gap it maps to where clocks jump to, which may be
            // the same hour: Lord Howe jumps from 02:00 to 02:30).
            let exists = local.date().at(hour as i8, 0, 0, 0).to_zoned(local.time_zone().clone())
                .map(|z| (z.hour(), z.minute()) == (hour as i8, 0))
                .unwrap_or(false);
            if exists {
                proptest::prop_assert_eq!((local.hour(), local.minute()), (hour as i8, 0));
            }
            // Nothing in between: an FYI a second before the digest time
            // gets that same digest.
            proptest::prop_assert_eq!(
                next_digest_at(Timestamp::from_micros(next.as_micros() - 1_000_000), hour, zone),
                Some(next)
            );
        }
    }

    #[test]
    fn retries_jitter_deterministically_and_honour_retry_after() {
        for a in 1..MAX_ATTEMPTS {
            let step = retry_delay(a).unwrap();
            let d = next_attempt_delay("n1", a, None).unwrap();
            assert!(d >= step * 9 / 10 && d <= step * 11 / 10, "{a}: {d:?}");
            assert_eq!(next_attempt_delay("n1", a, None), Some(d));
        }
        let spread: std::collections::BTreeSet<_> = (0..20)
            .map(|i| next_attempt_delay(&format!("n{i}"), 3, None))
            .collect();
        assert!(spread.len() > 10, "jitter spreads endpoints apart");
        assert_eq!(
            next_attempt_delay("n1", 1, Some(600)),
            Some(std::time::Duration::from_secs(600))
        );
        assert_eq!(
            next_attempt_delay("n1", 1, Some(10 * 24 * 3600)),
            Some(std::time::Duration::from_secs(MAX_RETRY_AFTER))
        );
        assert!(next_attempt_delay("n1", 1, Some(1)).unwrap().as_secs() >= 27);
        assert_eq!(next_attempt_delay("n1", MAX_ATTEMPTS, Some(60)), None);
    }

    #[test]
    fn notification_ids_are_deterministic_per_event_recipient_and_channel() {
        let a = NotificationId::of("e1", "O@v.io", NotifyChannel::Email);
        assert_eq!(a, NotificationId::of("e1", "o@v.io", NotifyChannel::Email));
        assert_ne!(a, NotificationId::of("e1", "o@v.io", NotifyChannel::Chat));
        assert_ne!(a, NotificationId::of("e2", "o@v.io", NotifyChannel::Email));
    }

    fn fold(events: &[NotificationEvent]) -> Option<Notification> {
        events.iter().zip(1..).fold(None, |s, (e, sequence)| {
            NotificationAggregate::evolve(
                s,
                &StoredNotification {
                    event: e.clone(),
                    sequence,
                },
            )
        })
    }

    #[test]
    fn a_notification_is_requested_once_attempted_then_delivered_or_given_up() {
        let id = NotificationId::of("e1", "o@v.io", NotifyChannel::Email);
        let request = NotificationCommand::Request {
            ticket_id: "t".into(),
            cause_event_id: "e1".into(),
            recipient: "o@v.io".into(),
            channel: NotifyChannel::Email,
            kind: NoticeKind::OwnerAssigned,
            not_before: None,
        };
        let attempt = |attempt, outcome| NotificationCommand::RecordAttempt { attempt, outcome };
        assert_eq!(
            NotificationAggregate::decide(id, None, "r", &attempt(1, AttemptOutcome::Delivered)),
            Err(NotificationRule::NotRequested(id))
        );
        let Ok(Decision::Append(requested)) =
            NotificationAggregate::decide(id, None, "r", &request)
        else {
            panic!()
        };
        let s = fold(std::slice::from_ref(&requested)).unwrap();
        assert_eq!(
            NotificationAggregate::decide(id, Some(&s), "r", &request),
            Ok(Decision::AlreadyApplied { sequence: 1 })
        );
        let failed = AttemptOutcome::Retryable {
            status: Some(503),
            error: "busy".into(),
            retry_after: None,
        };
        let Ok(Decision::Append(e2)) =
            NotificationAggregate::decide(id, Some(&s), "r", &attempt(1, failed.clone()))
        else {
            panic!()
        };
        let s = fold(&[requested.clone(), e2.clone()]).unwrap();
        assert_eq!((s.attempts, s.last_error.as_deref()), (1, Some("busy")));
        // The same attempt recorded again writes nothing.
        assert_eq!(
            NotificationAggregate::decide(id, Some(&s), "r", &attempt(1, failed)),
            Ok(Decision::AlreadyApplied { sequence: 2 })
        );
        let Ok(Decision::Append(e3)) = NotificationAggregate::decide(
            id,
            Some(&s),
            "r",
            &attempt(2, AttemptOutcome::Delivered),
        ) else {
            panic!()
        };
        let s = fold(&[requested.clone(), e2.clone(), e3]).unwrap();
        assert_eq!(s.status, DeliveryStatus::Delivered);
        assert!(matches!(
            NotificationAggregate::decide(
                id,
                Some(&s),
                "r",
                &NotificationCommand::GiveUp { reason: "x".into() }
            ),
            Err(NotificationRule::Finished(_, DeliveryStatus::Delivered))
        ));
        let gave_up = fold(&[
            requested,
            e2,
            NotificationEvent::GaveUp {
                attempts: 1,
                reason: "24 h of failures".into(),
            },
        ])
        .unwrap();
        assert_eq!(gave_up.status, DeliveryStatus::GaveUp);
        // Redriven: pending again, a new round counted from here.
        let Ok(Decision::Append(redriven)) =
            NotificationAggregate::decide(id, Some(&gave_up), "r", &NotificationCommand::Redrive)
        else {
            panic!()
        };
        assert_eq!(redriven, NotificationEvent::Redriven { attempts: 1 });
        let again = NotificationAggregate::evolve(
            Some(gave_up),
            &StoredNotification {
                event: redriven,
                sequence: 9,
            },
        )
        .unwrap();
        assert_eq!(
            (again.status, again.attempts, again.round_start),
            (DeliveryStatus::Pending, 1, 1)
        );
        assert!(matches!(
            NotificationAggregate::decide(id, Some(&again), "r", &NotificationCommand::Redrive),
            Err(NotificationRule::NotGivenUp(_, DeliveryStatus::Pending))
        ));
        // The next attempt is number 2, the first of the new round.
        assert!(matches!(
            NotificationAggregate::decide(
                id,
                Some(&again),
                "r",
                &NotificationCommand::RecordAttempt {
                    attempt: 2,
                    outcome: AttemptOutcome::Delivered
                }
            ),
            Ok(Decision::Append(NotificationEvent::Delivered {
                attempt: 2
            }))
        ));
    }

    #[test]
    fn a_warning_recorded_after_its_due_time_tells_nobody() {
        use crate::sla::{ClockKind, SlaEvent};
        let due = Timestamp::from_micros(48 * 3_600_000_000);
        let warned = SlaEvent::Warned {
            kind: ClockKind::FirstContact,
            run: 1,
            pct: 75,
            due_at: due,
            owner: "dana@vendor.example".into(),
        };
        let prefs = |_: &str| Preferences::default();
        let told = |at: i64| {
            sla_notices(&warned, Timestamp::from_micros(at), &prefs)
                .into_iter()
                .map(|n| (n.recipient, n.kind))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            told(due.as_micros() - 1),
            vec![("dana@vendor.example".to_string(), NoticeKind::SlaWarning)]
        );
        assert!(told(due.as_micros()).is_empty());
        assert!(told(due.as_micros() + 86_400_000_000).is_empty());
        // A breach is told whenever it is recorded.
        let breached = SlaEvent::Breached {
            kind: ClockKind::FirstContact,
            run: 1,
            original_due: due,
            due_at: due,
            owner: "dana@vendor.example".into(),
        };
        assert_eq!(
            sla_notices(
                &breached,
                Timestamp::from_micros(due.as_micros() + 1),
                &prefs
            )
            .len(),
            1
        );
    }
}
