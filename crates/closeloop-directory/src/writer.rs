//! The single writer of directory records, shared by gRPC and the NATS intake.

use closeloop_domain::FieldViolation;
use closeloop_eventstore::{EventContext, EventStore, ExecuteError, Executed, Executor};
use closeloop_proto::v1;

use crate::records::{
    AccountKind, Directory, PersonKind, RecordKind, RecordState, RequestIdReused, TeamKind,
    account_from_proto, content_request_id, person_from_proto, team_from_proto, upsert,
};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("invalid record: {}", .0.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldViolation>),
    #[error(transparent)]
    Store(#[from] ExecuteError<RequestIdReused>),
}

/// Prefixes field names with the record's name (`account.team.csm`).
fn nested(prefix: &str, v: Vec<FieldViolation>) -> Vec<FieldViolation> {
    v.into_iter()
        .map(|f| FieldViolation::new(format!("{prefix}.{}", f.field), f.description))
        .collect()
}

#[derive(Clone)]
pub struct DirectoryWriter {
    pub(crate) accounts: Executor<Directory<AccountKind>>,
    pub(crate) people: Executor<Directory<PersonKind>>,
    pub(crate) teams: Executor<Directory<TeamKind>>,
}

/// What an upsert did: the record's current sequence and whether it changed.
pub struct Upserted {
    pub sequence: u64,
    pub changed: bool,
}

impl<S> From<Executed<S>> for Upserted {
    fn from(e: Executed<S>) -> Self {
        Upserted {
            sequence: e.sequence,
            changed: !e.replayed,
        }
    }
}

impl DirectoryWriter {
    pub fn new(store: EventStore) -> Self {
        DirectoryWriter {
            accounts: Executor::new(store.clone()),
            people: Executor::new(store.clone()),
            teams: Executor::new(store),
        }
    }

    async fn upsert<K: RecordKind>(
        exec: &Executor<Directory<K>>,
        record: K::Record,
        request_id: Option<&str>,
        ctx: impl FnOnce(&str) -> EventContext,
    ) -> Result<Executed<RecordState<K::Record>>, WriteError> {
        let key = K::key(&K::natural_id(&record));
        let command = upsert::<K>(record);
        let request_id = match request_id {
            Some(r) if !r.trim().is_empty() => r.to_string(),
            _ => content_request_id(&command),
        };
        let ctx = ctx(&request_id);
        Ok(exec.execute(key, &request_id, &ctx, &command).await?)
    }

    /// The executors' counters by aggregate type, for `/metrics`.
    pub fn metrics(
        &self,
    ) -> Vec<(
        &'static str,
        std::sync::Arc<closeloop_eventstore::ExecutorMetrics>,
    )> {
        vec![
            (AccountKind::TYPE, self.accounts.metrics()),
            (PersonKind::TYPE, self.people.metrics()),
            (TeamKind::TYPE, self.teams.metrics()),
        ]
    }

    pub async fn account(
        &self,
        a: &v1::Account,
        request_id: Option<&str>,
        ctx: impl FnOnce(&str) -> EventContext,
    ) -> Result<Upserted, WriteError> {
        let record =
            account_from_proto(a).map_err(|v| WriteError::Invalid(nested("account", v)))?;
        Ok(Self::upsert(&self.accounts, record, request_id, ctx)
            .await?
            .into())
    }

    pub async fn person(
        &self,
        p: &v1::Person,
        request_id: Option<&str>,
        ctx: impl FnOnce(&str) -> EventContext,
    ) -> Result<Upserted, WriteError> {
        let record = person_from_proto(p).map_err(|v| WriteError::Invalid(nested("person", v)))?;
        Ok(Self::upsert(&self.people, record, request_id, ctx)
            .await?
            .into())
    }

    pub async fn team(
        &self,
        t: &v1::Team,
        request_id: Option<&str>,
        ctx: impl FnOnce(&str) -> EventContext,
    ) -> Result<Upserted, WriteError> {
        let record = team_from_proto(t).map_err(|v| WriteError::Invalid(nested("team", v)))?;
        Ok(Self::upsert(&self.teams, record, request_id, ctx)
            .await?
            .into())
    }
}
