//! The escalation role's views, projected from the SLA events:
//!
//! * `sla_history`: each ticket's SLA events, folded with the domain's
//!   `evolve` to know the ticket's state after each event;
//! * `sla_timers`: the due work, the ticket's [`closeloop_domain::sla::timers`]
//!   after its latest event (replaced as a whole, in the same transaction
//!   as the checkpoint), read by the timer worker by due time;
//! * `sla_tickets`: one row per ticket for reports and recomputes.
//!
//! On an empty database the projector replays the SLA events and the
//! timers come back as they were; a timer that fired is gone because its
//! firing is an event.

use std::hash::{Hash, Hasher};

use base64::Engine as _;
use closeloop_domain::sla::{self, ClockKind, Sla, SlaEvent, TimerKind};
use closeloop_domain::{SlaPolicy, TicketId};
use closeloop_eventstore::{Prefix, StoredEvent};
use closeloop_readmodel::{Db, Projection, ProjectionError};
use sqlx::{AnyConnection, Row as _};

/// Checkpoint name of the projection.
pub const NAME: &str = "sla_timers";

pub struct SlaView;

/// A stable fingerprint of a policy (to tell whether a recompute changes
/// anything).
pub fn policy_digest(p: &SlaPolicy) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{p:?}").hash(&mut h);
    format!("{:016x}", h.finish())
}

pub(crate) fn decode_row(
    id: TicketId,
    sequence: i64,
    payload: &str,
) -> Result<sla::RecordedSla, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .map_err(|e| e.to_string())?;
    closeloop_contracts::sla::decode_payload(id, sequence as u64, bytes.into()).map_err(|e| e.0)
}

/// The SLA state of ticket `id` from the `sla_history` rows on `conn`.
pub async fn load(conn: &mut AnyConnection, id: TicketId) -> Result<Option<Sla>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT sequence, payload FROM sla_history WHERE ticket_id = $1 ORDER BY sequence",
    )
    .bind(id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let mut state = None;
    for r in rows {
        let rec = decode_row(id, r.try_get(0)?, &r.try_get::<String, _>(1)?)
            .map_err(ProjectionError::Poison)?;
        state = sla::evolve(state, &rec);
    }
    Ok(state)
}

/// Like [`load`], on the pool.
pub async fn state(db: &Db, id: TicketId) -> Result<Option<Sla>, ProjectionError> {
    let mut conn = db.pool().acquire().await?;
    load(&mut conn, id).await
}

/// Deletes ticket `id`'s timer `key` (or, with `prefix`, every timer whose
/// key starts with it).
async fn delete_timers(
    conn: &mut AnyConnection,
    id: &str,
    key: &str,
    prefix: bool,
) -> Result<(), ProjectionError> {
    let q = if prefix {
        sqlx::query("DELETE FROM sla_timers WHERE ticket_id = $1 AND timer_key LIKE $2")
            .bind(id)
            .bind(format!("{key}%"))
    } else {
        sqlx::query("DELETE FROM sla_timers WHERE ticket_id = $1 AND timer_key = $2")
            .bind(id)
            .bind(key.to_string())
    };
    q.execute(&mut *conn).await?;
    Ok(())
}

impl Projection for SlaView {
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
        let rec =
            closeloop_contracts::sla::decode(event).map_err(|e| ProjectionError::Poison(e.0))?;
        let id = rec.ticket_id.to_string();
        sqlx::query(
            "INSERT INTO sla_history (ticket_id, sequence, payload) VALUES ($1, $2, $3) \
             ON CONFLICT (ticket_id, sequence) DO NOTHING",
        )
        .bind(&id)
        .bind(event.sequence as i64)
        .bind(base64::engine::general_purpose::STANDARD.encode(&event.payload))
        .execute(&mut *conn)
        .await?;
        // A firing removes its own timers and changes no due time: the
        // common case under load is a few row deletions, not a fold of the
        // ticket's history (what `timers` would give, without its cost).
        match &rec.event {
            SlaEvent::Warned { kind, run, pct, .. } => {
                return delete_timers(conn, &id, &format!("{kind}/{run}/warn{pct}"), false).await;
            }
            SlaEvent::Breached { kind, run, .. } => {
                delete_timers(conn, &id, &format!("{kind}/{run}/"), true).await?;
                sqlx::query(
                    "UPDATE sla_tickets SET breached = 1, sequence = $2 WHERE ticket_id = $1",
                )
                .bind(&id)
                .bind(event.sequence as i64)
                .execute(&mut *conn)
                .await?;
                return Ok(());
            }
            SlaEvent::Escalated { level, period, .. } => {
                delete_timers(
                    conn,
                    &id,
                    &format!("untouched/{period}/level{level}"),
                    false,
                )
                .await?;
                sqlx::query(
                    "UPDATE sla_tickets SET escalation_level = CASE WHEN escalation_level < $2 \
                     THEN $2 ELSE escalation_level END, sequence = $3 WHERE ticket_id = $1",
                )
                .bind(&id)
                .bind(i64::from(*level))
                .bind(event.sequence as i64)
                .execute(&mut *conn)
                .await?;
                return Ok(());
            }
            _ => {}
        }
        let Some(s) = load(conn, rec.ticket_id).await? else {
            return Ok(());
        };
        sqlx::query("DELETE FROM sla_timers WHERE ticket_id = $1")
            .bind(&id)
            .execute(&mut *conn)
            .await?;
        for t in sla::timers(&s) {
            let level = match t.what {
                TimerKind::Escalate { level, .. } => i64::from(level),
                _ => 0,
            };
            sqlx::query(
                "INSERT INTO sla_timers (ticket_id, timer_key, due_at, owner_email, program_id, \
                 level) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&id)
            .bind(&t.key)
            .bind(t.due_at.as_micros())
            .bind(s.owner.as_str())
            .bind(s.tracked.program_id.as_str())
            .bind(level)
            .execute(&mut *conn)
            .await?;
        }
        let due = |k: ClockKind| {
            s.current(k)
                .filter(|c| c.is_running())
                .map(|c| c.due_at.as_micros())
        };
        let breached = s
            .clocks
            .iter()
            .any(|c| c.breached_at.is_some() && c.is_running());
        let level = s
            .escalations
            .iter()
            .filter(|e| s.untouched.as_ref().is_some_and(|u| u.period == e.period))
            .map(|e| i64::from(e.level))
            .max()
            .unwrap_or(0);
        sqlx::query(
            "INSERT INTO sla_tickets (ticket_id, account_id, program_id, workflow_id, title, \
             region, owner_email, opened_at, closed, first_contact_due, close_due, breached, \
             escalation_level, policy_digest, sequence) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             ON CONFLICT (ticket_id) DO UPDATE SET owner_email = excluded.owner_email, \
             closed = excluded.closed, first_contact_due = excluded.first_contact_due, \
             close_due = excluded.close_due, breached = excluded.breached, \
             escalation_level = excluded.escalation_level, \
             policy_digest = excluded.policy_digest, sequence = excluded.sequence",
        )
        .bind(&id)
        .bind(s.tracked.account_id.as_str())
        .bind(s.tracked.program_id.as_str())
        .bind(s.tracked.workflow_id.as_str())
        .bind(s.tracked.title.as_str())
        .bind(s.tracked.region.as_str())
        .bind(s.owner.as_str())
        .bind(s.tracked.opened_at.as_micros())
        .bind(i64::from(s.closed))
        .bind(due(ClockKind::FirstContact))
        .bind(due(ClockKind::Closure))
        .bind(i64::from(breached))
        .bind(level)
        .bind(policy_digest(&s.tracked.policy))
        .bind(s.sequence as i64)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
