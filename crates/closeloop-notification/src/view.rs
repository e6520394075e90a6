//! The `notifications` view, one row per notification, projected from the
//! notification events. It is also the delivery outbox: a `pending` row is
//! due at `next_attempt_at`, which each failed attempt moves along the
//! domain's retry schedule ([`next_attempt_delay`]).
//!
//! Delivery workers take a due row by claiming it in
//! `notification_claims` (a row per notification being sent, with an
//! expiry), so two replicas never send one notification at once, and a
//! worker that died mid-send leaves a claim that simply expires.

use std::time::{SystemTime, UNIX_EPOCH};

use closeloop_contracts::notification::{AttemptOutcome, NotificationEvent, projected};
use closeloop_domain::notification::next_attempt_delay;
use closeloop_eventstore::{Prefix, StoredEvent};
use closeloop_readmodel::{Db, Projection, ProjectionError};
use sqlx::{AnyConnection, Connection as _, Row as _};

/// Checkpoint name of the projection.
pub const NAME: &str = "notifications";

/// Microseconds since the epoch.
pub fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

pub struct NotificationView;

impl Projection for NotificationView {
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
        let p = projected(event).map_err(|e| ProjectionError::Poison(e.0))?;
        apply(conn, &p.id, &p.event, p.at, p.sequence as i64).await?;
        Ok(())
    }
}

async fn apply(
    conn: &mut AnyConnection,
    id: &str,
    e: &NotificationEvent,
    at: i64,
    sequence: i64,
) -> Result<(), sqlx::Error> {
    match e {
        NotificationEvent::Requested {
            ticket_id,
            cause_event_id,
            recipient,
            channel,
            kind,
            not_before,
        } => {
            let digest_at = not_before.map(|t| t.as_micros());
            sqlx::query(
                "INSERT INTO notifications (id, ticket_id, cause_event_id, recipient, channel, \
                 kind, status, attempts, last_error, requested_at, next_attempt_at, finished_at, \
                 sequence, digest_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, NULL, $7, \
                 COALESCE($9, $7), NULL, $8, $9) ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(ticket_id.as_str())
            .bind(cause_event_id.as_str())
            .bind(recipient.as_str())
            .bind(channel.as_str())
            .bind(kind.as_str())
            .bind(at)
            .bind(sequence)
            .bind(digest_at)
            .execute(&mut *conn)
            .await?;
        }
        NotificationEvent::Redriven { attempts } => {
            sqlx::query(
                "UPDATE notifications SET status = 'pending', round_start = $2, \
                 next_attempt_at = $3, finished_at = NULL, sequence = $4 \
                 WHERE id = $1 AND sequence < $4",
            )
            .bind(id)
            .bind(i64::from(*attempts))
            .bind(at)
            .bind(sequence)
            .execute(&mut *conn)
            .await?;
        }
        NotificationEvent::Attempted { attempt, outcome } => {
            let error = outcome.error().unwrap_or_default().to_string();
            // The next attempt's time on the schedule of this round; after
            // the last one the worker gives up (recorded as its own event),
            // so the row stays due until then.
            let row = sqlx::query(
                "SELECT round_start, recipient, channel, digest_at FROM notifications WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
            let (round_start, jitter_key) = match row {
                Some(r) => {
                    let digest_at: Option<i64> = r.try_get(3)?;
                    // A digest's notifications retry together (one
                    // message): their jitter is the digest's.
                    let key = match digest_at {
                        Some(d) => format!(
                            "{}/{}/{d}",
                            r.try_get::<String, _>(1)?,
                            r.try_get::<String, _>(2)?
                        ),
                        None => id.to_string(),
                    };
                    (r.try_get::<i64, _>(0)?, key)
                }
                None => (0, id.to_string()),
            };
            let in_round = attempt.saturating_sub(round_start.clamp(0, i64::from(u32::MAX)) as u32);
            let retry_after = match outcome {
                AttemptOutcome::Retryable { retry_after, .. } => *retry_after,
                _ => None,
            };
            let next = at
                + next_attempt_delay(&jitter_key, in_round, retry_after)
                    .map(|d| d.as_micros() as i64)
                    .unwrap_or(0);
            sqlx::query(
                "UPDATE notifications SET attempts = $2, last_error = $3, next_attempt_at = $4, \
                 sequence = $5 WHERE id = $1 AND sequence < $5",
            )
            .bind(id)
            .bind(i64::from(*attempt))
            .bind(error)
            .bind(next)
            .bind(sequence)
            .execute(&mut *conn)
            .await?;
        }
        NotificationEvent::Delivered { attempt } => {
            sqlx::query(
                "UPDATE notifications SET status = 'delivered', attempts = $2, last_error = NULL, \
                 finished_at = $3, sequence = $4 WHERE id = $1 AND sequence < $4",
            )
            .bind(id)
            .bind(i64::from(*attempt))
            .bind(at)
            .bind(sequence)
            .execute(&mut *conn)
            .await?;
        }
        NotificationEvent::GaveUp { reason, .. } => {
            sqlx::query(
                "UPDATE notifications SET status = 'gave_up', last_error = $2, finished_at = $3, \
                 sequence = $4 WHERE id = $1 AND sequence < $4",
            )
            .bind(id)
            .bind(reason.as_str())
            .bind(at)
            .bind(sequence)
            .execute(&mut *conn)
            .await?;
        }
    }
    sqlx::query("DELETE FROM notification_claims WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// One notification as the view has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRow {
    pub id: String,
    pub ticket_id: String,
    pub cause_event_id: String,
    pub recipient: String,
    pub channel: String,
    pub kind: String,
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub requested_at: i64,
    pub next_attempt_at: i64,
    pub finished_at: Option<i64>,
    /// Attempts before the current round (a redrive starts a new one).
    pub round_start: u32,
    /// In a daily digest: the digest's time (µs).
    pub digest_at: Option<i64>,
}

const COLUMNS: &str = "id, ticket_id, cause_event_id, recipient, channel, kind, status, \
                       attempts, last_error, requested_at, next_attempt_at, finished_at, \
                       round_start, digest_at";

fn row(r: &sqlx::any::AnyRow) -> Result<NotificationRow, sqlx::Error> {
    Ok(NotificationRow {
        id: r.try_get(0)?,
        ticket_id: r.try_get(1)?,
        cause_event_id: r.try_get(2)?,
        recipient: r.try_get(3)?,
        channel: r.try_get(4)?,
        kind: r.try_get(5)?,
        status: r.try_get(6)?,
        attempts: r.try_get::<i64, _>(7)?.clamp(0, i64::from(u32::MAX)) as u32,
        last_error: r.try_get(8)?,
        requested_at: r.try_get(9)?,
        next_attempt_at: r.try_get(10)?,
        finished_at: r.try_get(11)?,
        round_start: r.try_get::<i64, _>(12)?.clamp(0, i64::from(u32::MAX)) as u32,
        digest_at: r.try_get(13)?,
    })
}

/// `channel IN (...)` of the channels a worker delivers (names from
/// [`closeloop_contracts::notification::NotifyChannel::as_str`], never input).
fn channel_in(channels: &[&'static str]) -> String {
    let list: Vec<String> = channels.iter().map(|c| format!("'{c}'")).collect();
    format!("channel IN ({})", list.join(", "))
}

/// "Now" for [`due`], in µs since the epoch: `due` on the install's clock
/// (what due times are written in), `wall` on the wall clock (what claims,
/// leases between processes, are written in). The two differ only on a
/// simulated clock.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub due: i64,
    pub wall: i64,
}

/// Pending notifications on `channels` due at `now` (µs) that nobody holds
/// a claim on, oldest first (a row just sent stays pending until the view
/// records the attempt; its claim keeps it out of the way meanwhile), but
/// none to the `(channel, recipient)` destinations in `full` (those with
/// no room for another delivery now): the rows of a slow destination never
/// stand in front of other destinations' rows.
pub async fn due(
    db: &Db,
    now: Now,
    channels: &[&'static str],
    full: &[(String, String)],
    limit: i64,
) -> Result<Vec<NotificationRow>, sqlx::Error> {
    if channels.is_empty() {
        return Ok(Vec::new());
    }
    let skip: String = (0..full.len())
        .map(|i| {
            format!(
                " AND NOT (channel = ${} AND recipient = ${})",
                4 + 2 * i,
                5 + 2 * i
            )
        })
        .collect();
    let sql = format!(
        "SELECT {COLUMNS} FROM notifications WHERE status = 'pending' AND next_attempt_at <= $1 \
         AND {}{skip} AND NOT EXISTS (SELECT 1 FROM notification_claims c \
         WHERE c.id = notifications.id AND c.claimed_until >= $3) \
         ORDER BY next_attempt_at LIMIT $2",
        channel_in(channels)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now.due)
        .bind(limit)
        .bind(now.wall);
    for (channel, recipient) in full {
        q = q.bind(channel.as_str()).bind(recipient.as_str());
    }
    let rows = q.fetch_all(db.pool()).await?;
    rows.iter().map(row).collect()
}

/// When the earliest pending notification on `channels` is due, if any.
pub async fn next_due(db: &Db, channels: &[&'static str]) -> Result<Option<i64>, sqlx::Error> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT MIN(next_attempt_at) FROM notifications WHERE status = 'pending' AND {}",
        channel_in(channels)
    )))
    .fetch_one(db.pool())
    .await?;
    r.try_get::<Option<i64>, _>(0)
}

/// Notification `id`, as the view has it now.
pub async fn get(db: &Db, id: &str) -> Result<Option<NotificationRow>, sqlx::Error> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM notifications WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    r.as_ref().map(row).transpose()
}

/// Gives up worker `me`'s claim on `id`.
pub async fn release(db: &Db, id: &str, me: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM notification_claims WHERE id = $1 AND claimed_by = $2")
        .bind(id)
        .bind(me)
        .execute(&mut *db.writer().await?)
        .await?;
    Ok(())
}

/// Removes expired claims (anyone may take those anyway).
pub async fn sweep_claims(db: &Db, now: i64) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM notification_claims WHERE claimed_until < $1")
            .bind(now)
            .execute(&mut *db.writer().await?)
            .await?
            .rows_affected(),
    )
}

/// Notifications, newest first, with `status` and of `ticket_id` when
/// given (`closeloop notifications failed` lists `gave_up`).
pub async fn list(
    db: &Db,
    status: Option<&str>,
    ticket_id: Option<&str>,
    limit: i64,
) -> Result<Vec<NotificationRow>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM notifications WHERE ($1 = '' OR status = $1) \
         AND ($2 = '' OR ticket_id = $2) ORDER BY requested_at DESC, id LIMIT $3"
    )))
    .bind(status.unwrap_or_default())
    .bind(ticket_id.unwrap_or_default())
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(row).collect()
}

/// Claims notification `id` for worker `me` until `until` (µs): true when
/// nobody (this worker included: it may have sent it a moment ago, before
/// the view caught up) holds an unexpired claim on it. Projecting the
/// notification's next event removes the claim, so a worker that read the
/// row before that projection must read it again after claiming (see
/// [`get`]) before it sends.
pub async fn claim(db: &Db, id: &str, me: &str, now: i64, until: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO notification_claims (id, claimed_by, claimed_until) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET claimed_by = excluded.claimed_by, \
         claimed_until = excluded.claimed_until \
         WHERE notification_claims.claimed_until < $4",
    )
    .bind(id)
    .bind(me)
    .bind(until)
    .bind(now)
    .execute(&mut *db.writer().await?)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The pending notifications of one digest: `recipient`'s on `channel` at
/// `digest_at`, oldest first.
pub async fn digest(
    db: &Db,
    recipient: &str,
    channel: &str,
    digest_at: i64,
) -> Result<Vec<NotificationRow>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM notifications WHERE recipient = $1 AND channel = $2 \
         AND digest_at = $3 AND status = 'pending' ORDER BY requested_at, id"
    )))
    .bind(recipient)
    .bind(channel)
    .bind(digest_at)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(row).collect()
}

/// Claims each of `ids` for worker `me` until `until` (µs), in one
/// transaction (one write for a whole round of deliveries): the ids this
/// worker now holds (those nobody else holds an unexpired claim on). Like
/// [`claim`], a worker must read each row again after claiming it.
pub async fn claim_all(
    db: &Db,
    ids: &[String],
    me: &str,
    now: i64,
    until: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let mut writer = db.writer().await?;
    let mut tx = writer.begin().await?;
    let mut got = Vec::with_capacity(ids.len());
    for id in ids {
        let done = sqlx::query(
            "INSERT INTO notification_claims (id, claimed_by, claimed_until) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET claimed_by = excluded.claimed_by, \
             claimed_until = excluded.claimed_until \
             WHERE notification_claims.claimed_until < $4",
        )
        .bind(id)
        .bind(me)
        .bind(until)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            got.push(id.clone());
        }
    }
    tx.commit().await?;
    Ok(got)
}
