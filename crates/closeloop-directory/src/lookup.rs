//! The directory as other components read it: its published queries.
//! Other roles never read the directory's tables themselves.
//!
//! The views answer first; a record a view does not have yet (an import
//! that finished a moment ago, or a process that projects no directory
//! view at all) is looked up in the record's own events, which are the
//! authority. Records are upserted, never deleted, so a record found once
//! stays found.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use closeloop_domain::directory::{Account, Person, Team};
use closeloop_domain::notification::{ChatHook, Preferences};
use closeloop_eventstore::{EventStore, Executor};
use closeloop_readmodel::Db;
use sqlx::Row;

use crate::records::{AccountKind, Directory, PersonKind, RecordKind, TeamKind};

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("directory view unavailable: {0}")]
    View(#[from] sqlx::Error),
    #[error("directory events unavailable: {0}")]
    Events(#[from] closeloop_eventstore::StoreError),
    #[error("directory record unreadable: {0}")]
    Record(String),
}

impl<R: std::fmt::Display> From<closeloop_eventstore::ExecuteError<R>> for LookupError {
    fn from(e: closeloop_eventstore::ExecuteError<R>) -> Self {
        match e {
            closeloop_eventstore::ExecuteError::Corrupt { sequence, reason } => {
                LookupError::Record(format!("event {sequence}: {reason}"))
            }
            other => LookupError::Record(other.to_string()),
        }
    }
}

fn unreadable(v: Vec<closeloop_domain::FieldViolation>) -> LookupError {
    LookupError::Record(
        v.iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// Which records exist. Cheap to clone.
#[derive(Clone)]
pub struct DirectoryLookup {
    db: Db,
    store: EventStore,
    accounts: Executor<Directory<AccountKind>>,
    people: Executor<Directory<PersonKind>>,
    teams: Executor<Directory<TeamKind>>,
    /// Records found before, as `<type>/<natural id>`: records are never
    /// deleted, so a positive answer stays true and costs no I/O again.
    known: Arc<Mutex<HashSet<String>>>,
}

/// Records remembered as found (the set is emptied when full).
const KNOWN_MAX: usize = 100_000;

/// A record kind whose view can answer "is it there?".
pub trait Viewed: RecordKind {
    /// One row if the record with natural id `$1` is in its view.
    const EXISTS_SQL: &'static str;
}

impl Viewed for AccountKind {
    const EXISTS_SQL: &'static str = "SELECT 1 FROM accounts WHERE id = $1";
}

impl Viewed for PersonKind {
    const EXISTS_SQL: &'static str = "SELECT 1 FROM people WHERE email = $1";
}

impl Viewed for TeamKind {
    const EXISTS_SQL: &'static str = "SELECT 1 FROM teams WHERE id = $1";
}

impl DirectoryLookup {
    pub fn new(db: Db, store: EventStore) -> Self {
        DirectoryLookup {
            db,
            accounts: Executor::new(store.clone()),
            people: Executor::new(store.clone()),
            teams: Executor::new(store.clone()),
            store,
            known: Arc::default(),
        }
    }

    /// Whether a record of kind `K` with `natural_id` (an account id, a
    /// person's normalised e-mail, a team id) is in the directory.
    pub async fn exists<K: Viewed>(&self, natural_id: &str) -> Result<bool, LookupError> {
        let memo = format!("{}/{natural_id}", K::TYPE);
        if self.known.lock().expect("known").contains(&memo) {
            return Ok(true);
        }
        let found = sqlx::query(K::EXISTS_SQL)
            .bind(natural_id)
            .fetch_optional(self.db.pool())
            .await?
            .is_some()
            || {
                let key = K::key(natural_id);
                let subject = self
                    .store
                    .prefix()
                    .aggregate_subject(K::TYPE, &key.to_string());
                self.store.has_events(&subject).await?
            };
        if found {
            let mut known = self.known.lock().expect("known");
            if known.len() >= KNOWN_MAX {
                known.clear();
            }
            known.insert(memo);
        }
        Ok(found)
    }

    /// Account `id` with its account team: from its view, else (not
    /// projected here yet) from its events.
    pub async fn account(&self, id: &str) -> Result<Option<Account>, LookupError> {
        let Some(v) = account_view(self.db.pool(), id).await? else {
            let stored = self.accounts.load(AccountKind::key(id)).await?;
            return Ok(stored.map(|s| s.record));
        };
        Account::parse(id, &v.name, &v.region, &v.segment, &v.team)
            .map(Some)
            .map_err(unreadable)
    }

    /// Team `id` with its members in rotation order: from its view, else
    /// from its events.
    pub async fn team(&self, id: &str) -> Result<Option<Team>, LookupError> {
        let Some(v) = team_view(self.db.pool(), id).await? else {
            let stored = self.teams.load(TeamKind::key(id)).await?;
            return Ok(stored.map(|s| s.record));
        };
        let mut team = Team::parse(id, &v.name, &v.members).map_err(unreadable)?;
        if let (Some(k), Some(u)) = (v.chat_kind, v.chat_url) {
            team.chat = Some(ChatHook::parse("chat", &k, &u).map_err(unreadable)?);
        }
        Ok(Some(team))
    }

    /// Person `email` (normalised) with their manager: from the view, else
    /// from their events.
    pub async fn person(&self, email: &str) -> Result<Option<Person>, LookupError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PERSON_COLUMNS} FROM people WHERE email = $1"
        )))
        .bind(email)
        .fetch_optional(self.db.pool())
        .await?;
        let Some(row) = row else {
            let stored = self.people.load(PersonKind::key(email)).await?;
            return Ok(stored.map(|s| s.record));
        };
        person_row(&row).map(Some)
    }

    /// How each of `emails` (normalised) is told: their preferences and,
    /// for those who want chat, the chat webhook they are told through
    /// (their own, else the first of their teams' by team id). From the
    /// view only, in one query: a person not (yet) in it is absent, and gets
    /// the defaults (e-mail, at once).
    pub async fn notification_targets(
        &self,
        emails: &[String],
    ) -> Result<HashMap<String, (Preferences, Option<ChatHook>)>, LookupError> {
        let mut out = HashMap::new();
        if emails.is_empty() {
            return Ok(out);
        }
        let marks: Vec<String> = (1..=emails.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {PERSON_COLUMNS} FROM people WHERE email IN ({})",
            marks.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for e in emails {
            q = q.bind(e.as_str());
        }
        for row in q.fetch_all(self.db.pool()).await? {
            let p = person_row(&row)?;
            let wants_chat = p
                .notify
                .channels
                .contains(&closeloop_domain::notification::NotifyChannel::Chat);
            let chat = match p.chat {
                Some(c) => Some(c),
                None if wants_chat => self.team_chat(p.email.as_str()).await?,
                None => None,
            };
            out.insert(p.email.to_string(), (p.notify, chat));
        }
        Ok(out)
    }

    /// Where chat notifications to `email` go: their own webhook, else
    /// their first team's (by team id) that has one.
    pub async fn chat_of(&self, email: &str) -> Result<Option<ChatHook>, LookupError> {
        match self.person(email).await? {
            Some(Person { chat: Some(c), .. }) => Ok(Some(c)),
            _ => self.team_chat(email).await,
        }
    }

    /// The chat webhook of the first team (by id) `email` belongs to that
    /// has one.
    async fn team_chat(&self, email: &str) -> Result<Option<ChatHook>, LookupError> {
        let row = sqlx::query(
            "SELECT t.chat_kind, t.chat_url FROM team_members m JOIN teams t ON t.id = m.team_id \
             WHERE m.email = $1 AND t.chat_url IS NOT NULL ORDER BY t.id LIMIT 1",
        )
        .bind(email)
        .fetch_optional(self.db.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let kind: String = row.try_get(0)?;
        let url: String = row.try_get(1)?;
        ChatHook::parse("chat", &kind, &url)
            .map(Some)
            .map_err(unreadable)
    }
}

/// An account as its view holds it, with its account team (by role).
pub(crate) struct AccountView {
    pub name: String,
    pub region: String,
    pub segment: String,
    pub sequence: i64,
    pub team: Vec<(String, String)>,
}

/// Account `id` and its team from the views, in one statement: the
/// projector rewrites an account's row and its team rows in one
/// transaction, and two statements could read the row before such a
/// commit and the team after it (one version's region beside the next
/// version's CSM).
pub(crate) async fn account_view(
    pool: &sqlx::AnyPool,
    id: &str,
) -> Result<Option<AccountView>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT a.name, a.region, a.segment, a.sequence, t.role, t.email \
         FROM accounts a LEFT JOIN account_team t ON t.account_id = a.id \
         WHERE a.id = $1 ORDER BY t.role",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut team = Vec::with_capacity(rows.len());
    for r in &rows {
        if let (Some(role), Some(email)) = (
            r.try_get::<Option<String>, _>(4)?,
            r.try_get::<Option<String>, _>(5)?,
        ) {
            team.push((role, email));
        }
    }
    Ok(Some(AccountView {
        name: first.try_get(0)?,
        region: first.try_get(1)?,
        segment: first.try_get(2)?,
        sequence: first.try_get(3)?,
        team,
    }))
}

/// A team as its view holds it, members in rotation order.
pub(crate) struct TeamView {
    pub name: String,
    pub sequence: i64,
    pub chat_kind: Option<String>,
    pub chat_url: Option<String>,
    pub members: Vec<String>,
}

/// Team `id` and its members from the views, in one statement (see
/// [`account_view`]).
pub(crate) async fn team_view(
    pool: &sqlx::AnyPool,
    id: &str,
) -> Result<Option<TeamView>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT t.name, t.sequence, t.chat_kind, t.chat_url, m.email \
         FROM teams t LEFT JOIN team_members m ON m.team_id = t.id \
         WHERE t.id = $1 ORDER BY m.position",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut members = Vec::with_capacity(rows.len());
    for r in &rows {
        if let Some(email) = r.try_get::<Option<String>, _>(4)? {
            members.push(email);
        }
    }
    Ok(Some(TeamView {
        name: first.try_get(0)?,
        sequence: first.try_get(1)?,
        chat_kind: first.try_get(2)?,
        chat_url: first.try_get(3)?,
        members,
    }))
}

pub(crate) const PERSON_COLUMNS: &str = "email, name, manager_email, notify_channels, digest_hour, digest_time_zone, chat_kind, chat_url";

/// A person from a `people` row of [`PERSON_COLUMNS`].
pub(crate) fn person_row(row: &sqlx::any::AnyRow) -> Result<Person, LookupError> {
    let email: String = row.try_get(0)?;
    let name: String = row.try_get(1)?;
    let manager: Option<String> = row.try_get(2)?;
    let channels: Option<String> = row.try_get(3)?;
    let hour: Option<i64> = row.try_get(4)?;
    let tz: Option<String> = row.try_get(5)?;
    let chat_kind: Option<String> = row.try_get(6)?;
    let chat_url: Option<String> = row.try_get(7)?;
    let person =
        Person::parse(&email, &name, manager.as_deref().unwrap_or("")).map_err(unreadable)?;
    let notify = match channels {
        None => Preferences::default(),
        Some(c) => Preferences::parse(
            "notify",
            &c.split_whitespace().map(str::to_string).collect::<Vec<_>>(),
            hour.map(|h| h.clamp(0, 24) as u32),
            tz.as_deref().unwrap_or(""),
        )
        .map_err(unreadable)?,
    };
    let chat = match (chat_kind, chat_url) {
        (Some(k), Some(u)) => Some(ChatHook::parse("chat", &k, &u).map_err(unreadable)?),
        _ => None,
    };
    Ok(person.with_notifications(notify, chat))
}
