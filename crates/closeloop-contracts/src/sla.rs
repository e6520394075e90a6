//! Ticket SLAs: `<prefix>.events.sla.<ticket_id>`, written only by the
//! escalation role. The domain's pure `decide`/`evolve`
//! ([`closeloop_domain::sla`]) and the protobuf codec (payload
//! `closeloop.v1.SlaEvent`).

use std::time::SystemTime;

use bytes::Bytes;
use closeloop_domain::sla::{
    ClockKind, ClockStart, RecordedSla, SlaEvent, StartCause, StopReason, Tracked, UntouchedPeriod,
};
use closeloop_domain::{Aggregate, TicketId, Timestamp};
use closeloop_eventstore::{Contract, DecodeError, Envelope, EventContext, StoredEvent};
use closeloop_proto::{convert, v1};
use v1::sla_event::Event as Body;

pub use closeloop_domain::sla::SlaAggregate;

/// Aggregate type name: subjects are `<prefix>.events.sla.<ticket_id>`.
pub const AGGREGATE: &str = SlaAggregate::TYPE;

fn ts(t: Timestamp) -> Option<prost_types::Timestamp> {
    Some(convert::timestamp(t))
}

fn from_ts(t: &Option<prost_types::Timestamp>) -> Timestamp {
    t.as_ref().map(convert::from_timestamp).unwrap_or_default()
}

fn clock(k: ClockKind) -> i32 {
    match k {
        ClockKind::FirstContact => v1::SlaClock::FirstContact as i32,
        ClockKind::Closure => v1::SlaClock::Closure as i32,
    }
}

fn from_clock(c: i32) -> Result<ClockKind, String> {
    match v1::SlaClock::try_from(c) {
        Ok(v1::SlaClock::FirstContact) => Ok(ClockKind::FirstContact),
        Ok(v1::SlaClock::Closure) => Ok(ClockKind::Closure),
        _ => Err(format!("unknown SLA clock {c}")),
    }
}

fn warnings(w: &[(u32, Timestamp)]) -> Vec<v1::SlaWarning> {
    w.iter()
        .map(|(pct, at)| v1::SlaWarning {
            pct: *pct,
            at: ts(*at),
        })
        .collect()
}

fn from_warnings(w: &[v1::SlaWarning]) -> Vec<(u32, Timestamp)> {
    w.iter().map(|w| (w.pct, from_ts(&w.at))).collect()
}

fn period(u: &UntouchedPeriod) -> v1::UntouchedPeriod {
    v1::UntouchedPeriod {
        period: u.period,
        since: ts(u.since),
        levels: u
            .level_due
            .iter()
            .map(|(level, at)| v1::SlaLevelDue {
                level: *level,
                due_at: ts(*at),
            })
            .collect(),
    }
}

fn from_period(u: &v1::UntouchedPeriod) -> UntouchedPeriod {
    UntouchedPeriod {
        period: u.period,
        since: from_ts(&u.since),
        level_due: u
            .levels
            .iter()
            .map(|l| (l.level, from_ts(&l.due_at)))
            .collect(),
    }
}

/// The protobuf body and event type name of `e`.
pub fn body(e: &SlaEvent) -> (&'static str, Body) {
    match e {
        SlaEvent::ClocksStarted {
            ticket_sequence,
            at,
            cause,
            owner,
            tracked,
            clocks,
            replaced,
            untouched,
        } => (
            "closeloop.v1.SlaClocksStarted",
            Body::ClocksStarted(v1::SlaClocksStarted {
                ticket_sequence: *ticket_sequence,
                at: ts(*at),
                cause: cause.as_str().to_string(),
                owner_email: owner.clone(),
                tracked: tracked.as_ref().map(|t| v1::SlaTracked {
                    account_id: t.account_id.clone(),
                    program_id: t.program_id.clone(),
                    workflow_id: t.workflow_id.clone(),
                    title: t.title.clone(),
                    opened_at: ts(t.opened_at),
                    policy: Some(convert::sla(&t.policy)),
                    calendar: t.calendar.clone(),
                    region: t.region.clone(),
                }),
                clocks: clocks
                    .iter()
                    .map(|c| v1::SlaClockStart {
                        clock: clock(c.kind),
                        run: c.run,
                        budget_secs: c.budget_secs,
                        started_at: ts(c.started_at),
                        due_at: ts(c.due_at),
                        warnings: warnings(&c.warn_at),
                    })
                    .collect(),
                replaced: replaced.iter().map(|k| clock(*k)).collect(),
                untouched: Some(period(untouched)),
            }),
        ),
        SlaEvent::Touched {
            ticket_sequence,
            at,
            action,
            owner,
            stopped,
            untouched,
        } => (
            "closeloop.v1.SlaTouched",
            Body::Touched(v1::SlaTouched {
                ticket_sequence: *ticket_sequence,
                at: ts(*at),
                action: action.clone(),
                owner_email: owner.clone(),
                stopped: stopped
                    .iter()
                    .map(|(k, r)| v1::SlaClockStop {
                        clock: clock(*k),
                        reason: r.as_str().to_string(),
                    })
                    .collect(),
                untouched: untouched.as_ref().map(period),
            }),
        ),
        SlaEvent::ClockPaused {
            ticket_sequence,
            at,
            kind,
            reason,
            consumed_micros,
        } => (
            "closeloop.v1.SlaClockPaused",
            Body::ClockPaused(v1::SlaClockPaused {
                ticket_sequence: *ticket_sequence,
                at: ts(*at),
                clock: clock(*kind),
                reason: reason.clone(),
                consumed_micros: *consumed_micros,
            }),
        ),
        SlaEvent::ClockResumed {
            ticket_sequence,
            at,
            kind,
            reason,
            paused_secs,
            due_at,
            warn_at,
        } => (
            "closeloop.v1.SlaClockResumed",
            Body::ClockResumed(v1::SlaClockResumed {
                ticket_sequence: *ticket_sequence,
                at: ts(*at),
                clock: clock(*kind),
                reason: reason.clone(),
                paused_secs: *paused_secs,
                due_at: ts(*due_at),
                warnings: warnings(warn_at),
            }),
        ),
        SlaEvent::Warned {
            kind,
            run,
            pct,
            due_at,
            owner,
        } => (
            "closeloop.v1.SlaWarned",
            Body::Warned(v1::SlaWarned {
                clock: clock(*kind),
                run: *run,
                pct: *pct,
                due_at: ts(*due_at),
                owner_email: owner.clone(),
            }),
        ),
        SlaEvent::Breached {
            kind,
            run,
            owner,
            original_due,
            due_at,
        } => (
            "closeloop.v1.SlaBreached",
            Body::Breached(v1::SlaBreached {
                clock: clock(*kind),
                run: *run,
                original_due: ts(*original_due),
                due_at: ts(*due_at),
                owner_email: owner.clone(),
            }),
        ),
        SlaEvent::Escalated {
            level,
            period,
            untouched_since,
            owner,
            to,
            fallback_reason,
        } => (
            "closeloop.v1.SlaEscalated",
            Body::Escalated(v1::SlaEscalated {
                level: *level,
                period: *period,
                untouched_since: ts(*untouched_since),
                owner_email: owner.clone(),
                to_email: to.clone(),
                fallback_reason: fallback_reason.clone(),
            }),
        ),
    }
}

/// The domain event of a protobuf body.
pub fn from_body(b: Body) -> Result<SlaEvent, String> {
    Ok(match b {
        Body::ClocksStarted(c) => SlaEvent::ClocksStarted {
            ticket_sequence: c.ticket_sequence,
            at: from_ts(&c.at),
            cause: StartCause::parse(&c.cause)
                .ok_or_else(|| format!("unknown start cause {:?}", c.cause))?,
            owner: c.owner_email,
            tracked: c.tracked.map(|t| {
                Box::new(Tracked {
                    account_id: t.account_id,
                    program_id: t.program_id,
                    workflow_id: t.workflow_id,
                    title: t.title,
                    opened_at: from_ts(&t.opened_at),
                    policy: t.policy.as_ref().map(convert::from_sla).unwrap_or_default(),
                    calendar: t.calendar,
                    region: t.region,
                })
            }),
            clocks: c
                .clocks
                .iter()
                .map(|s| {
                    Ok(ClockStart {
                        kind: from_clock(s.clock)?,
                        run: s.run,
                        budget_secs: s.budget_secs,
                        started_at: from_ts(&s.started_at),
                        due_at: from_ts(&s.due_at),
                        warn_at: from_warnings(&s.warnings),
                    })
                })
                .collect::<Result<_, String>>()?,
            replaced: c
                .replaced
                .iter()
                .map(|k| from_clock(*k))
                .collect::<Result<_, String>>()?,
            untouched: c
                .untouched
                .as_ref()
                .map(from_period)
                .ok_or("clocks started without an untouched period")?,
        },
        Body::Touched(t) => SlaEvent::Touched {
            ticket_sequence: t.ticket_sequence,
            at: from_ts(&t.at),
            action: t.action,
            owner: t.owner_email,
            stopped: t
                .stopped
                .iter()
                .map(|s| {
                    Ok((
                        from_clock(s.clock)?,
                        StopReason::parse(&s.reason)
                            .ok_or_else(|| format!("unknown stop reason {:?}", s.reason))?,
                    ))
                })
                .collect::<Result<_, String>>()?,
            untouched: t.untouched.as_ref().map(from_period),
        },
        Body::ClockPaused(p) => SlaEvent::ClockPaused {
            ticket_sequence: p.ticket_sequence,
            at: from_ts(&p.at),
            kind: from_clock(p.clock)?,
            reason: p.reason,
            consumed_micros: p.consumed_micros,
        },
        Body::ClockResumed(r) => SlaEvent::ClockResumed {
            ticket_sequence: r.ticket_sequence,
            at: from_ts(&r.at),
            kind: from_clock(r.clock)?,
            reason: r.reason,
            paused_secs: r.paused_secs,
            due_at: from_ts(&r.due_at),
            warn_at: from_warnings(&r.warnings),
        },
        Body::Warned(w) => SlaEvent::Warned {
            kind: from_clock(w.clock)?,
            run: w.run,
            pct: w.pct,
            due_at: from_ts(&w.due_at),
            owner: w.owner_email,
        },
        Body::Breached(b) => SlaEvent::Breached {
            kind: from_clock(b.clock)?,
            run: b.run,
            owner: b.owner_email,
            original_due: from_ts(&b.original_due),
            due_at: from_ts(&b.due_at),
        },
        Body::Escalated(e) => SlaEvent::Escalated {
            level: e.level,
            period: e.period,
            untouched_since: from_ts(&e.untouched_since),
            owner: e.owner_email,
            to: e.to_email,
            fallback_reason: e.fallback_reason,
        },
    })
}

/// Decodes an SLA event's payload kept by a view (ticket `id`, stream
/// sequence `sequence`), as [`decode`] does a stored one.
pub fn decode_payload(
    id: TicketId,
    sequence: u64,
    payload: Bytes,
) -> Result<RecordedSla, DecodeError> {
    decode(&StoredEvent {
        subject: format!("view.events.{AGGREGATE}.{id}"),
        sequence,
        envelope: None,
        payload,
        pending: 0,
    })
}

/// Decodes a stored SLA event.
pub fn decode(stored: &StoredEvent) -> Result<RecordedSla, DecodeError> {
    let (meta, body) = crate::codec::decode::<v1::SlaEvent>(stored)?;
    let msg_id = stored
        .subject
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_string();
    let ticket_id = TicketId::parse("ticket_id", &msg_id)
        .map_err(|_| DecodeError::from(format!("subject {:?} names no ticket", stored.subject)))?;
    Ok(RecordedSla {
        ticket_id,
        sequence: stored.sequence,
        occurred_at: from_ts(&meta.occurred_at),
        request_id: meta.request_id,
        event: from_body(body).map_err(DecodeError::from)?,
    })
}

/// The wire contract of [`SlaAggregate`]: payload `closeloop.v1.SlaEvent`.
pub struct SlaContract;

impl Contract for SlaContract {
    type Aggregate = SlaAggregate;

    fn encode(
        id: TicketId,
        event_id: &str,
        request_id: &str,
        at: SystemTime,
        ctx: &EventContext,
        event: &SlaEvent,
    ) -> (Envelope, Bytes) {
        let (name, body) = body(event);
        crate::codec::encode::<v1::SlaEvent>(
            &id.to_string(),
            event_id,
            name,
            request_id,
            at,
            ctx,
            body,
        )
    }

    fn decode(stored: &StoredEvent) -> Result<RecordedSla, DecodeError> {
        decode(stored)
    }

    fn recorded(
        id: TicketId,
        event: &SlaEvent,
        sequence: u64,
        request_id: &str,
        at: SystemTime,
        _ctx: &EventContext,
    ) -> RecordedSla {
        RecordedSla {
            ticket_id: id,
            sequence,
            occurred_at: Timestamp::from_system_time(at),
            request_id: request_id.to_string(),
            event: event.clone(),
        }
    }
}
