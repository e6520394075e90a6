//! `closeloop.v1.DirectoryService` and the directory queries.

use std::time::Duration;

use closeloop_domain::{AccountId, Email, FieldViolation};
use closeloop_eventstore::{Carried, EventContext, ExecuteError};
use closeloop_proto::status::invalid_argument;
use closeloop_proto::v1;
use closeloop_proto::v1::directory_service_server::DirectoryService;
use closeloop_readmodel::{Db, Progress, wait_for};
use sqlx::Row;
use tonic::{Request, Response, Status};
use tonic_types::StatusExt;

use crate::projection::{ACCOUNT_VIEW, PERSON_VIEW, TEAM_VIEW};
use crate::writer::{DirectoryWriter, Upserted, WriteError};

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
    writer: DirectoryWriter,
    db: Db,
    progress: DirectoryProgress,
}

fn sql_error(e: sqlx::Error) -> Status {
    Status::unavailable(format!("read model unavailable: {e}"))
}

fn write_error(e: WriteError) -> Status {
    match e {
        WriteError::Invalid(v) => invalid_argument(v),
        WriteError::Store(e) => match e {
            ExecuteError::Rule(reused) => Status::with_error_details(
                tonic::Code::FailedPrecondition,
                reused.to_string(),
                tonic_types::ErrorDetails::with_error_info(
                    "REQUEST_ID_REUSED",
                    "closeloop.dev",
                    std::collections::HashMap::new(),
                ),
            ),
            ExecuteError::Contention(_) => Status::aborted(e.to_string()),
            ExecuteError::Unavailable(_) => Status::unavailable(e.to_string()),
            ExecuteError::Corrupt { .. } => Status::internal(e.to_string()),
        },
    }
}

fn actor(a: &str) -> Result<String, Status> {
    if a.trim().is_empty() {
        return Ok(String::new());
    }
    Email::parse("actor", a)
        .map(|e| e.to_string())
        .map_err(|v| invalid_argument(vec![v]))
}

/// The request id (optional), checked, and a context builder for it.
fn request<T>(
    req: &Request<T>,
    request_id: &str,
    actor_email: &str,
) -> Result<(Option<String>, impl FnOnce(&str) -> EventContext), Status> {
    let actor = actor(actor_email)?;
    let rid = if request_id.trim().is_empty() {
        None
    } else {
        Some(
            closeloop_domain::RequestId::parse("request_id", request_id)
                .map_err(|v| invalid_argument(vec![v]))?
                .to_string(),
        )
    };
    let md = req.metadata();
    let carried = Carried::from_lookup(|k| md.get(k)?.to_str().ok().map(str::to_string));
    let ctx = move |rid: &str| carried.context(rid, actor);
    Ok((rid, ctx))
}

fn answer(u: Upserted) -> Response<v1::UpsertResponse> {
    Response::new(v1::UpsertResponse {
        sequence: u.sequence,
        changed: u.changed,
    })
}

fn required(field: &str) -> Status {
    invalid_argument(vec![FieldViolation::new(field, "is required")])
}

impl DirectoryGrpc {
    pub fn new(writer: DirectoryWriter, db: Db, progress: DirectoryProgress) -> Self {
        DirectoryGrpc {
            writer,
            db,
            progress,
        }
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
        let (rid, ctx) = request(&req, &req.get_ref().request_id, &req.get_ref().actor)?;
        let a = req
            .get_ref()
            .account
            .as_ref()
            .ok_or_else(|| required("account"))?;
        let u = self
            .writer
            .account(a, rid.as_deref(), ctx)
            .await
            .map_err(write_error)?;
        Ok(answer(u))
    }

    async fn upsert_person(
        &self,
        req: Request<v1::UpsertPersonRequest>,
    ) -> Result<Response<v1::UpsertResponse>, Status> {
        let (rid, ctx) = request(&req, &req.get_ref().request_id, &req.get_ref().actor)?;
        let p = req
            .get_ref()
            .person
            .as_ref()
            .ok_or_else(|| required("person"))?;
        let u = self
            .writer
            .person(p, rid.as_deref(), ctx)
            .await
            .map_err(write_error)?;
        Ok(answer(u))
    }

    async fn upsert_team(
        &self,
        req: Request<v1::UpsertTeamRequest>,
    ) -> Result<Response<v1::UpsertResponse>, Status> {
        let (rid, ctx) = request(&req, &req.get_ref().request_id, &req.get_ref().actor)?;
        let t = req
            .get_ref()
            .team
            .as_ref()
            .ok_or_else(|| required("team"))?;
        let u = self
            .writer
            .team(t, rid.as_deref(), ctx)
            .await
            .map_err(write_error)?;
        Ok(answer(u))
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
        let a = crate::lookup::account_view(self.db.pool(), id.as_str())
            .await
            .map_err(sql_error)?
            .ok_or_else(|| Status::not_found(format!("account {id} is not in the directory")))?;
        Ok(Response::new(v1::Account {
            id: id.to_string(),
            name: a.name,
            region: a.region,
            segment: a.segment,
            team: a
                .team
                .into_iter()
                .map(|(role, email)| v1::AccountTeamMember { role, email })
                .collect(),
            sequence: a.sequence as u64,
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
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {}, sequence FROM people WHERE email = $1",
            crate::lookup::PERSON_COLUMNS
        )))
        .bind(email.as_str())
        .fetch_optional(self.db.pool())
        .await
        .map_err(sql_error)?
        .ok_or_else(|| Status::not_found(format!("person {email} is not in the directory")))?;
        let person = crate::lookup::person_row(&row)
            .map_err(|e| Status::internal(format!("person {email}: {e}")))?;
        Ok(Response::new(
            closeloop_contracts::directory::person_to_proto(&person, row.get::<i64, _>(8) as u64),
        ))
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
        let t = crate::lookup::team_view(self.db.pool(), id.as_str())
            .await
            .map_err(sql_error)?
            .ok_or_else(|| Status::not_found(format!("team {id} is not in the directory")))?;
        Ok(Response::new(v1::Team {
            id,
            name: t.name,
            members: t.members,
            sequence: t.sequence as u64,
            chat: match (t.chat_kind, t.chat_url) {
                (Some(kind), Some(url)) => Some(v1::ChatWebhook { kind, url }),
                _ => None,
            },
        }))
    }
}
