//! Directory views: one projection (and checkpoint) per record type, since a
//! NATS 2.9 consumer follows one subject filter.

use closeloop_domain::directory::{Account, Person, Team};
use closeloop_domain::notification::{Cadence, Preferences};
use closeloop_eventstore::{Prefix, StoredEvent};
use closeloop_readmodel::{Projection, ProjectionError};
use sqlx::AnyConnection;

use crate::records::{AccountKind, PersonKind, RecordKind, TeamKind, decode_record};

/// The record an upsert wrote, and its sequence.
fn decode<K: RecordKind>(ev: &StoredEvent) -> Result<(K::Record, u64), ProjectionError> {
    decode_record::<K>(ev)
        .map(|(r, _)| (r, ev.sequence))
        .map_err(|e| ProjectionError::Poison(e.0))
}

/// Keeps only the newest version of a record (a replayed older one is skipped).
fn newer(table: &str) -> String {
    format!("WHERE excluded.sequence > {table}.sequence")
}

pub struct AccountView;
pub const ACCOUNT_VIEW: &str = "directory_accounts";

impl Projection for AccountView {
    fn name(&self) -> &'static str {
        ACCOUNT_VIEW
    }

    fn filter(&self, prefix: &Prefix) -> String {
        prefix.aggregate_filter(AccountKind::TYPE)
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        ev: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let (a, sequence) = decode::<AccountKind>(ev)?;
        upsert_account(conn, &a, sequence).await?;
        Ok(())
    }
}

async fn upsert_account(
    conn: &mut AnyConnection,
    a: &Account,
    seq: u64,
) -> Result<(), sqlx::Error> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO accounts (id, name, region, segment, sequence) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, region = excluded.region, \
         segment = excluded.segment, sequence = excluded.sequence {}",
        newer("accounts")
    )))
    .bind(a.id.as_str())
    .bind(a.name.as_str())
    .bind(a.region.as_str())
    .bind(a.segment.as_str())
    .bind(seq as i64)
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() == 0 {
        return Ok(());
    }
    sqlx::query("DELETE FROM account_team WHERE account_id = $1")
        .bind(a.id.as_str())
        .execute(&mut *conn)
        .await?;
    for (role, email) in &a.team {
        sqlx::query("INSERT INTO account_team (account_id, role, email) VALUES ($1, $2, $3)")
            .bind(a.id.as_str())
            .bind(role.as_str())
            .bind(email.as_str())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub struct PersonView;
pub const PERSON_VIEW: &str = "directory_people";

impl Projection for PersonView {
    fn name(&self) -> &'static str {
        PERSON_VIEW
    }

    fn filter(&self, prefix: &Prefix) -> String {
        prefix.aggregate_filter(PersonKind::TYPE)
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        ev: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let (p, sequence) = decode::<PersonKind>(ev)?;
        upsert_person(conn, &p, sequence).await?;
        Ok(())
    }
}

async fn upsert_person(conn: &mut AnyConnection, p: &Person, seq: u64) -> Result<(), sqlx::Error> {
    let default = p.notify == Preferences::default();
    let channels = (!default).then(|| {
        if p.notify.channels.is_empty() {
            "none".to_string()
        } else {
            let c: Vec<&str> = p.notify.channels.iter().map(|c| c.as_str()).collect();
            c.join(" ")
        }
    });
    let (hour, tz) = match &p.notify.cadence {
        Cadence::DailyDigest { hour, tz } => (Some(i64::from(*hour)), Some(tz.as_str())),
        Cadence::Immediate => (None, None),
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO people (email, name, manager_email, sequence, notify_channels, digest_hour, \
         digest_time_zone, chat_kind, chat_url) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (email) DO UPDATE SET name = excluded.name, \
         manager_email = excluded.manager_email, sequence = excluded.sequence, \
         notify_channels = excluded.notify_channels, digest_hour = excluded.digest_hour, \
         digest_time_zone = excluded.digest_time_zone, chat_kind = excluded.chat_kind, \
         chat_url = excluded.chat_url {}",
        newer("people")
    )))
    .bind(p.email.as_str())
    .bind(p.name.as_str())
    .bind(p.manager.as_ref().map(|m| m.as_str()))
    .bind(seq as i64)
    .bind(channels)
    .bind(hour)
    .bind(tz)
    .bind(p.chat.as_ref().map(|c| c.kind.as_str()))
    .bind(p.chat.as_ref().map(|c| c.url.as_str()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub struct TeamView;
pub const TEAM_VIEW: &str = "directory_teams";

impl Projection for TeamView {
    fn name(&self) -> &'static str {
        TEAM_VIEW
    }

    fn filter(&self, prefix: &Prefix) -> String {
        prefix.aggregate_filter(TeamKind::TYPE)
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        ev: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let (t, sequence) = decode::<TeamKind>(ev)?;
        upsert_team(conn, &t, sequence).await?;
        Ok(())
    }
}

async fn upsert_team(conn: &mut AnyConnection, t: &Team, seq: u64) -> Result<(), sqlx::Error> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO teams (id, name, sequence, chat_kind, chat_url) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, sequence = excluded.sequence, \
         chat_kind = excluded.chat_kind, chat_url = excluded.chat_url {}",
        newer("teams")
    )))
    .bind(t.id.as_str())
    .bind(t.name.as_str())
    .bind(seq as i64)
    .bind(t.chat.as_ref().map(|c| c.kind.as_str()))
    .bind(t.chat.as_ref().map(|c| c.url.as_str()))
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() == 0 {
        return Ok(());
    }
    sqlx::query("DELETE FROM team_members WHERE team_id = $1")
        .bind(t.id.as_str())
        .execute(&mut *conn)
        .await?;
    for (i, m) in t.members.iter().enumerate() {
        sqlx::query("INSERT INTO team_members (team_id, position, email) VALUES ($1, $2, $3)")
            .bind(t.id.as_str())
            .bind(i as i64)
            .bind(m.as_str())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
