//! Accepting feedback: validate, check the account, append durably.

use std::sync::Arc;

use closeloop_directory::lookup::DirectoryLookup;
use closeloop_directory::records::AccountKind;
use closeloop_eventstore::{Carried, ExecuteError, Executor};
use closeloop_programs::Catalog;
use closeloop_readmodel::Db;
use futures::StreamExt;
use serde_json::Value;

use crate::canonical::{self, Problem};
use closeloop_contracts::feedback::{FeedbackContract, FeedbackId, submission};

/// Most responses in one batch.
pub const BATCH_MAX: usize = 500;
/// Batch items in flight at once: their appends are pipelined rather than
/// each awaiting the broker's ack in turn (items for one response still queue).
const BATCH_CONCURRENCY: usize = 64;

/// What became of an accepted submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// First time this response was seen.
    Received,
    /// The response was seen before with other content: recorded as an update.
    Updated,
    /// Exactly this content was already accepted: nothing written.
    Duplicate,
    /// An older revision than the current one (by `revised_at`, else
    /// `submitted_at`, then content) arrived late: recorded as superseded,
    /// the newer revision stays current.
    Superseded,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Received => "received",
            Outcome::Updated => "updated",
            Outcome::Duplicate => "duplicate",
            Outcome::Superseded => "superseded",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Accepted {
    pub feedback_id: FeedbackId,
    pub outcome: Outcome,
    /// Stream sequence of the feedback's current version.
    pub sequence: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("feedback is invalid")]
    Invalid(Vec<Problem>),
    /// The write did not happen (broker down): nothing was accepted.
    #[error("feedback could not be stored: {0}")]
    Unavailable(String),
    #[error("no programs file is configured (start closeloop with --programs FILE)")]
    NoPrograms,
}

/// The intake shared by every way in (HTTP, gRPC, NATS).
#[derive(Clone)]
pub struct Intake {
    catalog: Option<Arc<Catalog>>,
    directory: DirectoryLookup,
    feedback: Executor<FeedbackContract>,
    clock: closeloop_eventstore::Clock,
}

impl Intake {
    pub fn new(
        catalog: Option<Arc<Catalog>>,
        db: Db,
        store: closeloop_eventstore::EventStore,
    ) -> Self {
        Intake {
            catalog,
            clock: store.clock().clone(),
            feedback: Executor::new(store.clone()),
            directory: DirectoryLookup::new(db, store),
        }
    }

    /// The feedback executor's counters, for `/metrics`.
    pub fn metrics(&self) -> Arc<closeloop_eventstore::ExecutorMetrics> {
        self.feedback.metrics()
    }

    /// Validates one canonical document and stores it durably before
    /// answering; `carried` is the request's trace and correlation metadata.
    /// An invalid document is answered with every problem at once, the
    /// directory check included.
    pub async fn submit(&self, doc: &Value, carried: &Carried) -> Result<Accepted, SubmitError> {
        let catalog = self.catalog.as_ref().ok_or(SubmitError::NoPrograms)?;
        let parsed = canonical::parse(doc, catalog, self.clock.now());
        let account = match &parsed {
            Ok(f) => Some(f.account_id.clone()),
            // The other fields' problems do not hide an unknown account.
            Err(_) => doc
                .get("account_id")
                .and_then(Value::as_str)
                .and_then(|a| closeloop_domain::AccountId::parse("account_id", a).ok()),
        };
        let unknown = match account {
            Some(a) if !self.account_known(a.as_str()).await? => Some(Problem {
                pointer: "/account_id".into(),
                detail: format!(
                    "{a} is not an account in the directory (import it first: closeloop directory import)"
                ),
            }),
            _ => None,
        };
        let feedback = match (parsed, unknown) {
            (Ok(f), None) => f,
            (Ok(_), Some(p)) => return Err(SubmitError::Invalid(vec![p])),
            (Err(mut problems), unknown) => {
                problems.extend(unknown);
                return Err(SubmitError::Invalid(problems));
            }
        };
        let id = FeedbackId::of(&feedback.source, &feedback.response_id);
        let (submission, request_id) = submission(feedback);
        let ctx = carried.context(&request_id, String::new());
        let done = self
            .feedback
            .execute(id, &request_id, &ctx, &submission)
            .await
            .map_err(|e| match e {
                ExecuteError::Rule(never) => match never {},
                other => SubmitError::Unavailable(other.to_string()),
            })?;
        let outcome = if done.replayed {
            Outcome::Duplicate
        } else if done.state.digest != submission.digest {
            Outcome::Superseded
        } else if done.state.revision == 0 {
            Outcome::Received
        } else {
            Outcome::Updated
        };
        Ok(Accepted {
            feedback_id: id,
            outcome,
            sequence: done.sequence,
        })
    }

    /// Whether the account is in the directory (remembered once found).
    async fn account_known(&self, account: &str) -> Result<bool, SubmitError> {
        self.directory
            .exists::<AccountKind>(account)
            .await
            .map_err(|e| SubmitError::Unavailable(e.to_string()))
    }

    /// Submits each document on its own (results in input order). Items are
    /// stored concurrently; a failed item does not stop the others.
    pub async fn submit_batch(
        &self,
        docs: Vec<Value>,
        carried: Carried,
    ) -> Vec<Result<Accepted, SubmitError>> {
        let carried = &carried;
        let mut results: Vec<(usize, Result<Accepted, SubmitError>)> =
            futures::stream::iter(docs.into_iter().enumerate())
                .map(|(i, d)| async move { (i, self.submit(&d, carried).await) })
                .buffer_unordered(BATCH_CONCURRENCY)
                .collect()
                .await;
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, r)| r).collect()
    }
}
