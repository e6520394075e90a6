//! `closeloop.v1.DirectoryService` and the directory queries.

use std::convert::Infallible;
use std::time::Duration;

use closeloop_domain::{AccountId, Email, FieldViolation};
use closeloop_eventstore::{EventContext, ExecuteError, Executor};
use closeloop_proto::status::invalid_argument;
use closeloop_proto::v1;
use closeloop_proto::v1::directory_service_server::DirectoryService;
use closeloop_readmodel::{Db, Progress, wait_for};
use sqlx::Row;
use tonic::{Request, Response, Status};

use crate::projection::{ACCOUNT_VIEW, PERSON_VIEW, TEAM_VIEW};
use crate::records::{
    AccountKind, Directory, PersonKind, RecordKey, RecordKind, TeamKind, account_from_proto,
    content_request_id, person_from_proto, team_from_proto,
};

/// Longest a query waits for its view to reach `min_sequence`.
const READ_YOUR_WRITES_TIMEOUT: Duration = Duration::from_secs(10);

/// Progress of the three directory views.
#[derive(Clone)]
pub struct DirectoryProgress {
    pub accounts: Progress,
    pub people: Progress,
    pub teams: Progress,
}

#[derive(Clone)]
pub struct DirectoryGrpc {
    accounts: Executor<Directory<AccountKind>>,
    people: Executor<Directory<PersonKind>>,
    teams: Executor<Directory<TeamKind>>,
    db: Db,
    progress: DirectoryProgress,
}

fn execute_error(e: ExecuteError<Infallible>) -> Status {
    match e {
        ExecuteError::Rule(never) => match never {},
        ExecuteError::Contention(_) => Status::aborted(e.to_string()),
        ExecuteError::Unavailable(_) => Status::unavailable(e.to_string()),
        ExecuteError::Corrupt { .. } => Status::internal(e.to_string()),
    }
}

fn sql_error(e: sqlx::Error) -> Status {
    Status::unavailable(format!("read model unavailable: {e}"))
}

/// Prefixes field names with the record's name (`account.team.csm`).
fn nested(prefix: &str, v: Vec<FieldViolation>) -> Vec<FieldViolation> {
    v.into_iter()
        .map(|f| FieldViolation::new(format!("{prefix}.{}", f.field), f.description))
        .collect()
}

fn actor(a: &str) -> Result<String, Status> {
    if a.trim().is_empty() {
        return Ok(String::new());
    }
    Email::parse("actor", a)
        .map(|e| e.to_string())
        .map_err(|v| invalid_argument(vec![v]))
}

impl DirectoryGrpc {
    pub fn new(
        store: closeloop_eventstore::EventStore,
        db: Db,
        progress: DirectoryProgress,
    ) -> Self {
        DirectoryGrpc {
            accounts: Executor::new(store.clone()),
            people: Executor::new(store.clone()),
            teams: Executor::new(store),
            db,
            progress,
        }
    }

    async fn upsert<K: RecordKind, T>(
        &self,
        exec: &Executor<Directory<K>>,
        req: &Request<T>,
        request_id: &str,
        actor: String,
        record: K::Record,
    ) -> Result<Response<v1::UpsertResponse>, Status> {
        let request_id = if request_id.trim().is_empty() {
            content_request_id(&K::to_body(&record))
        } else {
            closeloop_domain::RequestId::parse("request_id", request_id)
                .map_err(|v| invalid_argument(vec![v]))?
                .to_string()
        };
        let md = req.metadata();
        let ctx = EventContext::for_request(
            |k| md.get(k).and_then(|v| v.to_str().ok()).map(str::to_string),
            &request_id,
            actor,
        );
        let key = RecordKey::of::<K>(&K::natural_id(&record));
        let done = exec
            .execute(key, &request_id, &ctx, &record)
            .await
            .map_err(execute_error)?;
        Ok(Response::new(v1::UpsertResponse {
            sequence: done.sequence,
            changed: !done.replayed,
        }))
    }

    async fn catch_up(&self, view: &str, progress: &Progress, min: u64) -> Result<(), Status> {
        if min == 0 {
            return Ok(());
        }
        let mut p = progress.clone();
        wait_for(&self.db, view, &mut p, min, READ_YOUR_WRITES_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|at| {
                Status::unavailable(format!(
                    "read model has applied sequence {at}, not yet {min}; retry shortly"
                ))
            })
    }
}

#[tonic::async_trait]
impl DirectoryService for DirectoryGrpc {
    async fn upsert_account(
        &self,
        req: Request<v1::UpsertAccountRequest>,
    ) -> Result<Response<v1::UpsertResponse>, Status> {
        let r = req.get_ref();
        let actor = actor(&r.actor)?;
        let account = r
            .account
            .as_ref()
            .ok_or_else(|| invalid_argument(vec![FieldViolation::new("account", "is required")]))
            .and_then(|a| {
                account_from_proto(a).map_err(|v| invalid_argument(nested("account", v)))
            })?;
        self.upsert(&self.accounts, &req, &r.request_id, actor, account)
            .await
    }

    async fn upsert_person(
        &self,
        req: Request<v1::UpsertPersonRequest>,
    ) -> Result<Response<v1::UpsertResponse>, Status> {
        let r = req.get_ref();
        let actor = actor(&r.actor)?;
        let person = r
            .person
            .as_ref()
            .ok_or_else(|| invalid_argument(vec![FieldViolation::new("person", "is required")]))
            .and_then(|p| {
                person_from_proto(p).map_err(|v| invalid_argument(nested("person", v)))
            })?;
        self.upsert(&self.people, &req, &r.request_id, actor, person)
            .await
    }

    async fn upsert_team(
        &self,
        req: Request<v1::UpsertTeamRequest>,
    ) -> Result<Response<v1::UpsertResponse>, Status> {
        let r = req.get_ref();
        let actor = actor(&r.actor)?;
        let team = r
            .team
            .as_ref()
            .ok_or_else(|| invalid_argument(vec![FieldViolation::new("team", "is required")]))
            .and_then(|t| team_from_proto(t).map_err(|v| invalid_argument(nested("team", v))))?;
        self.upsert(&self.teams, &req, &r.request_id, actor, team)
            .await
    }

    async fn get_account(
        &self,
        req: Request<v1::GetAccountRequest>,
    ) -> Result<Response<v1::Account>, Status> {
        let r = req.into_inner();
        let id =
            AccountId::parse("account_id", &r.account_id).map_err(|v| invalid_argument(vec![v]))?;
        self.catch_up(ACCOUNT_VIEW, &self.progress.accounts, r.min_sequence)
            .await?;
        let row = sqlx::query("SELECT name, region, segment, sequence FROM accounts WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.db.pool())
            .await
            .map_err(sql_error)?
            .ok_or_else(|| Status::not_found(format!("account {id} is not in the directory")))?;
        let team =
            sqlx::query("SELECT role, email FROM account_team WHERE account_id = $1 ORDER BY role")
                .bind(id.as_str())
                .fetch_all(self.db.pool())
                .await
                .map_err(sql_error)?
                .iter()
                .map(|t| v1::AccountTeamMember {
                    role: t.get(0),
                    email: t.get(1),
                })
                .collect();
        Ok(Response::new(v1::Account {
            id: id.to_string(),
            name: row.get(0),
            region: row.get(1),
            segment: row.get(2),
            team,
            sequence: row.get::<i64, _>(3) as u64,
        }))
    }

    async fn get_person(
        &self,
        req: Request<v1::GetPersonRequest>,
    ) -> Result<Response<v1::Person>, Status> {
        let r = req.into_inner();
        let email = Email::parse("email", &r.email).map_err(|v| invalid_argument(vec![v]))?;
        self.catch_up(PERSON_VIEW, &self.progress.people, r.min_sequence)
            .await?;
        let row = sqlx::query("SELECT name, manager_email, sequence FROM people WHERE email = $1")
            .bind(email.as_str())
            .fetch_optional(self.db.pool())
            .await
            .map_err(sql_error)?
            .ok_or_else(|| Status::not_found(format!("person {email} is not in the directory")))?;
        Ok(Response::new(v1::Person {
            email: email.to_string(),
            name: row.get(0),
            manager_email: row.get::<Option<String>, _>(1).unwrap_or_default(),
            sequence: row.get::<i64, _>(2) as u64,
        }))
    }

    async fn get_team(
        &self,
        req: Request<v1::GetTeamRequest>,
    ) -> Result<Response<v1::Team>, Status> {
        let r = req.into_inner();
        let id = closeloop_domain::directory::parse_token("team_id", &r.team_id)
            .map_err(|v| invalid_argument(vec![v]))?;
        self.catch_up(TEAM_VIEW, &self.progress.teams, r.min_sequence)
            .await?;
        let row = sqlx::query("SELECT name, sequence FROM teams WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.db.pool())
            .await
            .map_err(sql_error)?
            .ok_or_else(|| Status::not_found(format!("team {id} is not in the directory")))?;
        let members =
            sqlx::query("SELECT email FROM team_members WHERE team_id = $1 ORDER BY position")
                .bind(id.as_str())
                .fetch_all(self.db.pool())
                .await
                .map_err(sql_error)?
                .iter()
                .map(|m| m.get(0))
                .collect();
        Ok(Response::new(v1::Team {
            id,
            name: row.get(0),
            members,
            sequence: row.get::<i64, _>(1) as u64,
        }))
    }
}
