//! The `webhook_endpoints` view: every registered outbound webhook
//! endpoint, projected from the webhook events. The requester matches each
//! ticket event against the active ones; the delivery worker reads an
//! endpoint's URL and secrets here at each attempt (a rotated secret or a
//! disabled endpoint takes effect at the next attempt).

use std::time::SystemTime;

use closeloop_contracts::webhook::{EndpointEvent, WebhookContract};
use closeloop_domain::Timestamp;
use closeloop_eventstore::{Contract, Prefix, StoredEvent};
use closeloop_readmodel::{Db, Projection, ProjectionError};
use sqlx::{AnyConnection, Row as _};

/// Checkpoint name of the projection.
pub const NAME: &str = "webhook_endpoints";

pub struct EndpointView;

impl Projection for EndpointView {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, prefix: &Prefix) -> String {
        prefix.aggregate_filter(closeloop_contracts::webhook::AGGREGATE)
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        stored: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let r = WebhookContract::decode(stored).map_err(|e| ProjectionError::Poison(e.0))?;
        let id = stored.subject.rsplit('.').next().unwrap_or_default();
        let at = stored
            .envelope
            .as_ref()
            .map_or_else(SystemTime::now, |e| e.occurred_at);
        let at = crate::view::micros(at);
        let seq = r.sequence as i64;
        let q = match &r.event {
            EndpointEvent::Registered {
                url,
                events,
                description,
                secret,
            } => sqlx::query(
                "INSERT INTO webhook_endpoints (id, url, events, description, secret, status, \
                 registered_at, sequence) VALUES ($1, $2, $3, $4, $5, 'active', $6, $7) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(url.as_str())
            .bind(events.join(" "))
            .bind(description.as_str())
            .bind(secret.as_str())
            .bind(at)
            .bind(seq),
            EndpointEvent::SecretRotated {
                secret,
                previous_valid_until,
            } => sqlx::query(
                "UPDATE webhook_endpoints SET previous_secret = secret, secret = $2, \
                 previous_secret_until = $3, sequence = $4 WHERE id = $1 AND sequence < $4",
            )
            .bind(id)
            .bind(secret.as_str())
            .bind(previous_valid_until.as_micros())
            .bind(seq),
            EndpointEvent::Disabled { reason } => sqlx::query(
                "UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = $2, \
                 sequence = $3 WHERE id = $1 AND sequence < $3",
            )
            .bind(id)
            .bind(reason.as_str())
            .bind(seq),
            EndpointEvent::Enabled => sqlx::query(
                "UPDATE webhook_endpoints SET status = 'active', disabled_reason = NULL, \
                 sequence = $2 WHERE id = $1 AND sequence < $2",
            )
            .bind(id)
            .bind(seq),
            EndpointEvent::Removed => sqlx::query(
                "UPDATE webhook_endpoints SET status = 'removed', sequence = $2 \
                 WHERE id = $1 AND sequence < $2",
            )
            .bind(id)
            .bind(seq),
        };
        q.execute(&mut *conn).await?;
        Ok(())
    }
}

/// One endpoint as the view has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRow {
    pub id: String,
    pub url: String,
    /// Empty: all event types.
    pub events: Vec<String>,
    pub description: String,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<i64>,
    pub status: String,
    pub disabled_reason: Option<String>,
    pub registered_at: i64,
}

impl EndpointRow {
    /// Whether deliveries of `event_type` go here.
    pub fn wants(&self, event_type: &str) -> bool {
        self.status == "active"
            && (self.events.is_empty() || self.events.iter().any(|e| e == event_type))
    }

    /// The secrets a delivery at `now` (µs) is signed with.
    pub fn signing_secrets(&self, now: i64) -> Vec<&str> {
        let mut out = vec![self.secret.as_str()];
        if let (Some(old), Some(until)) = (&self.previous_secret, self.previous_secret_until)
            && now < until
        {
            out.push(old);
        }
        out
    }

    pub fn previous_until(&self) -> Option<Timestamp> {
        self.previous_secret_until.map(Timestamp::from_micros)
    }
}

const COLUMNS: &str = "id, url, events, description, secret, previous_secret, \
                       previous_secret_until, status, disabled_reason, registered_at";

fn row(r: &sqlx::any::AnyRow) -> Result<EndpointRow, sqlx::Error> {
    let events: String = r.try_get(2)?;
    Ok(EndpointRow {
        id: r.try_get(0)?,
        url: r.try_get(1)?,
        events: events.split_whitespace().map(str::to_string).collect(),
        description: r.try_get(3)?,
        secret: r.try_get(4)?,
        previous_secret: r.try_get(5)?,
        previous_secret_until: r.try_get(6)?,
        status: r.try_get(7)?,
        disabled_reason: r.try_get(8)?,
        registered_at: r.try_get(9)?,
    })
}

/// The active endpoints.
pub async fn active(db: &Db) -> Result<Vec<EndpointRow>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE status = 'active' ORDER BY registered_at, id"
    )))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(row).collect()
}

/// Every endpoint (the removed ones too when `all`), oldest first.
pub async fn list(db: &Db, all: bool) -> Result<Vec<EndpointRow>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE $1 OR status <> 'removed' \
         ORDER BY registered_at, id"
    )))
    .bind(all)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(row).collect()
}

/// Endpoint `id`.
pub async fn get(db: &Db, id: &str) -> Result<Option<EndpointRow>, sqlx::Error> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    r.as_ref().map(row).transpose()
}

/// Deliveries to endpoint `id` by status: (delivered, pending, gave up).
pub async fn counts(db: &Db, id: &str) -> Result<(u64, u64, u64), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT status, COUNT(*) FROM notifications WHERE recipient = $1 AND channel = 'webhook' \
         GROUP BY status",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await?;
    let mut c = (0, 0, 0);
    for r in rows {
        let n = r.try_get::<i64, _>(1)?.max(0) as u64;
        match r.try_get::<String, _>(0)?.as_str() {
            "delivered" => c.0 = n,
            "pending" => c.1 = n,
            "gave_up" => c.2 = n,
            _ => {}
        }
    }
    Ok(c)
}
