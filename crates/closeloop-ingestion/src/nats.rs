//! Feedback published on NATS: `<prefix>.intake.feedback`.
//!
//! Upstream systems publish canonical JSON documents to the intake subject,
//! which a work-queue stream (`<PREFIX>_INTAKE`) makes durable. A durable
//! consumer turns each valid message into feedback; an invalid one is parked
//! in the dead-letter stream (`<PREFIX>_DLQ`, subject
//! `<prefix>.dlq.intake.feedback`) with the reason in headers, and only then
//! acknowledged, so nothing is silently dropped. A message that cannot be
//! stored right now (broker trouble) is retried later.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    stream::{self, RetentionPolicy, StorageType},
};
use closeloop_eventstore::consumer::ConsumerSpec;
use closeloop_eventstore::{Carried, Prefix};
use serde_json::Value;

use crate::intake::{Intake, SubmitError};

pub use closeloop_eventstore::consumer::{
    Handler, Verdict, dlq_headers as headers, dlq_stream, dlq_subject,
};

pub fn intake_stream(prefix: &Prefix) -> String {
    format!(
        "{}_INTAKE",
        prefix.as_str().to_ascii_uppercase().replace('-', "_")
    )
}

pub fn feedback_subject(prefix: &Prefix) -> String {
    format!("{prefix}.intake.feedback")
}

#[derive(Debug, thiserror::Error)]
#[error("cannot set up NATS intake: {0}")]
pub struct IntakeSetupError(String);

/// Creates (or finds) the intake and dead-letter streams.
pub async fn ensure_streams(
    js: &jetstream::Context,
    prefix: &Prefix,
) -> Result<(), IntakeSetupError> {
    closeloop_eventstore::ensure_stream(
        js,
        stream::Config {
            name: intake_stream(prefix),
            description: Some("closeloop intake: upstream messages until processed".into()),
            subjects: vec![format!("{prefix}.intake.>")],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        },
    )
    .await
    .map_err(IntakeSetupError)?;
    closeloop_eventstore::consumer::ensure_dlq(js, prefix)
        .await
        .map_err(IntakeSetupError)
}

impl Handler for Intake {
    async fn handle(&self, msg: &jetstream::Message) -> Verdict {
        handle_feedback(self, msg).await
    }
}

/// The trace and correlation headers of an intake message.
pub fn carried(msg: &jetstream::Message) -> Carried {
    Carried::from_lookup(|k| Some(msg.headers.as_ref()?.get(k)?.as_str().to_string()))
}

async fn handle_feedback(intake: &Intake, msg: &jetstream::Message) -> Verdict {
    let doc: Value = match serde_json::from_slice(&msg.payload) {
        Ok(v) => v,
        Err(e) => return Verdict::DeadLetter(format!("malformed JSON: {e}")),
    };
    match intake.submit(&doc, &carried(msg)).await {
        Ok(_) => Verdict::Done,
        Err(SubmitError::Invalid(problems)) => Verdict::DeadLetter(
            problems
                .iter()
                .map(|p| {
                    format!(
                        "{}: {}",
                        if p.pointer.is_empty() {
                            "/"
                        } else {
                            &p.pointer
                        },
                        p.detail
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Err(e) => Verdict::Retry(e.to_string()),
    }
}

/// The durable consumer `name` of one intake subject (on `<PREFIX>_INTAKE`;
/// run it with [`closeloop_eventstore::consumer::run_consumer`] after
/// [`ensure_streams`]).
pub fn intake_spec(prefix: &Prefix, name: &str, subject: String) -> ConsumerSpec {
    ConsumerSpec {
        retry_delay: Duration::from_secs(2),
        ..ConsumerSpec::new(intake_stream(prefix), name, subject)
    }
}

/// The consumer `feedback-intake` of `<prefix>.intake.feedback`.
pub fn feedback_intake_spec(prefix: &Prefix) -> ConsumerSpec {
    intake_spec(prefix, "feedback-intake", feedback_subject(prefix))
}
