//! The `ticket_notifications` view: who was told about each ticket, on
//! which channel, and how it went, for `GetTicket` and `closeloop tickets
//! show`. Projected (`ticket_notifications`) from the notification events
//! through their contract; the notification role is their one writer.

use closeloop_contracts::notification::{NotificationEvent, Projected, projected};
use closeloop_eventstore::{Prefix, StoredEvent};
use closeloop_proto::{convert, v1};
use closeloop_readmodel::{Projection, ProjectionError};
use sqlx::{AnyConnection, Row as _};

/// Checkpoint name of the projection.
pub const NAME: &str = "ticket_notifications";

pub struct TicketNotifications;

impl Projection for TicketNotifications {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, prefix: &Prefix) -> String {
        prefix.aggregate_filter(closeloop_contracts::notification::AGGREGATE)
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let Projected {
            id,
            event: e,
            sequence,
            at,
        } = projected(event).map_err(|e| ProjectionError::Poison(e.0))?;
        let id = id.as_str();
        let sequence = sequence as i64;
        let q = match &e {
            NotificationEvent::Requested {
                ticket_id,
                recipient,
                channel,
                kind,
                ..
            } => sqlx::query(
                "INSERT INTO ticket_notifications (id, ticket_id, recipient, channel, kind, status, \
                 attempts, last_error, requested_at, finished_at, sequence) \
                 VALUES ($1, $2, $3, $4, $5, 'pending', 0, '', $6, NULL, $7) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(ticket_id.as_str())
            .bind(recipient.as_str())
            .bind(channel.as_str())
            .bind(kind.as_str())
            .bind(at)
            .bind(sequence),
            NotificationEvent::Attempted { attempt, outcome } => {
                let error = outcome.error().unwrap_or_default().to_string();
                sqlx::query(
                    "UPDATE ticket_notifications SET attempts = $2, last_error = $3, sequence = $4 \
                     WHERE id = $1 AND sequence < $4",
                )
                .bind(id)
                .bind(i64::from(*attempt))
                .bind(error)
                .bind(sequence)
            }
            NotificationEvent::Delivered { attempt } => sqlx::query(
                "UPDATE ticket_notifications SET status = 'delivered', attempts = $2, \
                 last_error = '', finished_at = $3, sequence = $4 WHERE id = $1 AND sequence < $4",
            )
            .bind(id)
            .bind(i64::from(*attempt))
            .bind(at)
            .bind(sequence),
            NotificationEvent::Redriven { .. } => sqlx::query(
                "UPDATE ticket_notifications SET status = 'pending', finished_at = NULL, \
                 sequence = $2 WHERE id = $1 AND sequence < $2",
            )
            .bind(id)
            .bind(sequence),
            NotificationEvent::GaveUp { reason, .. } => sqlx::query(
                "UPDATE ticket_notifications SET status = 'gave_up', last_error = $2, \
                 finished_at = $3, sequence = $4 WHERE id = $1 AND sequence < $4",
            )
            .bind(id)
            .bind(reason.as_str())
            .bind(at)
            .bind(sequence),
        };
        q.execute(&mut *conn).await?;
        Ok(())
    }
}

/// The notifications of ticket `id`, oldest first.
pub async fn of_ticket(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Vec<v1::TicketNotification>, sqlx::Error> {
    let ts = |us: i64| convert::timestamp(closeloop_domain::Timestamp::from_micros(us));
    sqlx::query(
        "SELECT id, recipient, channel, kind, status, attempts, last_error, requested_at, \
         finished_at, ticket_id FROM ticket_notifications WHERE ticket_id = $1 \
         ORDER BY requested_at, id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(v1::TicketNotification {
            id: r.try_get(0)?,
            recipient: r.try_get(1)?,
            channel: r.try_get(2)?,
            kind: r.try_get(3)?,
            status: r.try_get(4)?,
            attempts: r.try_get::<i64, _>(5)?.clamp(0, i64::from(u32::MAX)) as u32,
            last_error: r.try_get(6)?,
            requested_at: Some(ts(r.try_get(7)?)),
            finished_at: r.try_get::<Option<i64>, _>(8)?.map(ts),
            ticket_id: r.try_get(9)?,
        })
    })
    .collect()
}
