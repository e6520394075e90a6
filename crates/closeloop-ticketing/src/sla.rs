//! The ticket view's SLA: each clock's due time, remaining time, warnings,
//! breaches, pauses and escalations, for `GetTicket` and `closeloop
//! tickets show`. The escalation role writes the SLA events; this view
//! keeps each ticket's (`ticket_sla_events`) and folds them on read with
//! the domain's `evolve`, so it shows exactly what the escalation role
//! decided on.

use std::time::SystemTime;

use base64::Engine as _;
use closeloop_domain::sla::{self, ClockRun, Sla};
use closeloop_domain::{TicketId, Timestamp};
use closeloop_eventstore::{Prefix, StoredEvent};
use closeloop_proto::{convert, v1};
use closeloop_readmodel::{Projection, ProjectionError};
use sqlx::{AnyConnection, Row as _};

/// Checkpoint name of the projection.
pub const NAME: &str = "ticket_sla";

pub struct TicketSla;

impl Projection for TicketSla {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, prefix: &Prefix) -> String {
        prefix.aggregate_filter(closeloop_contracts::sla::AGGREGATE)
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        // Decoded once here so that a damaged event is parked, not shown.
        let rec =
            closeloop_contracts::sla::decode(event).map_err(|e| ProjectionError::Poison(e.0))?;
        sqlx::query(
            "INSERT INTO ticket_sla_events (ticket_id, sequence, payload) VALUES ($1, $2, $3) \
             ON CONFLICT (ticket_id, sequence) DO NOTHING",
        )
        .bind(rec.ticket_id.to_string())
        .bind(event.sequence as i64)
        .bind(base64::engine::general_purpose::STANDARD.encode(&event.payload))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// The SLA state of ticket `id` as its events in the view say (`None`
/// before its clocks started).
pub async fn state(conn: &mut AnyConnection, id: TicketId) -> Result<Option<Sla>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT sequence, payload FROM ticket_sla_events WHERE ticket_id = $1 ORDER BY sequence",
    )
    .bind(id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let mut state = None;
    for r in rows {
        let payload = base64::engine::general_purpose::STANDARD
            .decode(r.try_get::<String, _>(1)?)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let rec = closeloop_contracts::sla::decode_payload(
            id,
            r.try_get::<i64, _>(0)? as u64,
            payload.into(),
        )
        .map_err(|e| sqlx::Error::Decode(e.0.into()))?;
        state = sla::evolve(state, &rec);
    }
    Ok(state)
}

fn ts(t: Timestamp) -> Option<prost_types::Timestamp> {
    Some(convert::timestamp(t))
}

fn clock(c: &ClockRun, now: Timestamp) -> v1::TicketClock {
    let running = c.is_running();
    v1::TicketClock {
        clock: c.kind.as_str().to_string(),
        run: c.run,
        state: c.state().to_string(),
        started_at: ts(c.started_at),
        due_at: ts(c.due_at),
        original_due: ts(c.original_due),
        remaining_secs: if running {
            (c.due_at.as_micros() - now.as_micros()).div_euclid(1_000_000)
        } else {
            0
        },
        warned_pct: c.warned.clone(),
        breached_at: c.breached_at.and_then(ts),
        paused_secs: c.paused_secs,
        budget_secs: c.budget_secs,
        stopped_at: c.stopped.and_then(|(at, _)| ts(at)),
    }
}

/// The ticket's SLA as `GetTicket` answers it, remaining times as of `now`.
pub fn to_proto(s: &Sla, now: SystemTime) -> v1::TicketSla {
    let now = Timestamp::from_system_time(now);
    v1::TicketSla {
        clocks: s.clocks.iter().map(|c| clock(c, now)).collect(),
        escalations: s
            .escalations
            .iter()
            .map(|e| v1::TicketEscalation {
                level: e.level,
                at: ts(e.at),
                to_email: e.to.clone(),
                untouched_since: ts(e.untouched_since),
                fallback_reason: e.fallback_reason.clone(),
            })
            .collect(),
        untouched_since: s.untouched.as_ref().and_then(|u| ts(u.since)),
        next_escalations: s
            .untouched
            .iter()
            .flat_map(|u| u.level_due.iter())
            .filter(|(level, _)| !s.escalated_levels.contains(level))
            .map(|(level, at)| v1::SlaLevelDue {
                level: *level,
                due_at: ts(*at),
            })
            .collect(),
        calendar: s.tracked.calendar.clone(),
        flagged: s.escalations.iter().any(|e| !e.fallback_reason.is_empty()),
        sequence: s.sequence,
    }
}

/// `GetTicket`'s `sla`.
pub async fn of_ticket(
    conn: &mut AnyConnection,
    id: TicketId,
    now: SystemTime,
) -> Result<Option<v1::TicketSla>, sqlx::Error> {
    Ok(state(conn, id).await?.map(|s| to_proto(&s, now)))
}
