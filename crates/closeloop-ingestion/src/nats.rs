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

use async_nats::HeaderMap;
use async_nats::jetstream::{
    self,
    consumer::pull,
    stream::{self, RetentionPolicy, StorageType},
};
use closeloop_eventstore::consumer::ConsumerSpec;
use closeloop_eventstore::{Carried, Prefix};
use futures::StreamExt;
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

/// One parked message.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// Sequence in the dead-letter stream: the id to redrive.
    pub sequence: u64,
    pub original_subject: String,
    pub reason: String,
    pub dead_lettered_at: String,
    pub payload: bytes::Bytes,
}

/// Every message in the dead-letter stream, oldest first.
pub async fn list_rejected(
    js: &jetstream::Context,
    prefix: &Prefix,
) -> Result<Vec<Rejected>, String> {
    let mut stream = js.get_stream(dlq_stream(prefix)).await.map_err(|e| {
        format!(
            "no dead-letter stream {} (has closeloop run with this --prefix?): {e}",
            dlq_stream(prefix)
        )
    })?;
    let info = stream.info().await.map_err(|e| e.to_string())?;
    if info.state.messages == 0 {
        return Ok(Vec::new());
    }
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: format!("{prefix}.dlq.>"),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(m) = messages.next().await {
        let m = m.map_err(|e| e.to_string())?;
        let info = m.info().map_err(|e| e.to_string())?;
        let (sequence, pending) = (info.stream_sequence, info.pending);
        let h = |k: &str| {
            m.headers
                .as_ref()
                .and_then(|h| h.get(k))
                .map(|v| v.as_str().to_string())
                .unwrap_or_default()
        };
        out.push(Rejected {
            sequence,
            original_subject: h(headers::ORIGINAL_SUBJECT),
            reason: h(headers::REASON),
            dead_lettered_at: h(headers::DEAD_LETTERED_AT),
            payload: m.payload.clone(),
        });
        if pending == 0 {
            break;
        }
    }
    Ok(out)
}

/// Publishes a parked message to its original subject again (after the cause
/// was fixed, e.g. the account imported) and removes it from the dead letters.
/// Why a dead letter was not redriven.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error("no dead letter {sequence}: {reason}")]
    NotFound { sequence: u64, reason: String },
    /// Events are immutable history: publishing one again would append a
    /// copy. A parked event is replayed by fixing the cause and resetting the
    /// consumer named in its headers.
    #[error(
        "dead letter {sequence} is the event {subject}, parked by consumer {consumer:?}; only intake \
         messages can be redriven (events are never published twice)"
    )]
    ParkedEvent {
        sequence: u64,
        subject: String,
        consumer: String,
    },
    #[error("dead letter {sequence} has no {header} header")]
    Malformed { sequence: u64, header: &'static str },
    #[error("NATS unavailable: {0}")]
    Unavailable(String),
}

pub async fn redrive(
    js: &jetstream::Context,
    prefix: &Prefix,
    sequence: u64,
) -> Result<String, RedriveError> {
    let unavailable = |e: &dyn std::fmt::Display| RedriveError::Unavailable(e.to_string());
    let stream = js
        .get_stream(dlq_stream(prefix))
        .await
        .map_err(|e| unavailable(&e))?;
    let m = stream
        .get_raw_message(sequence)
        .await
        .map_err(|e| RedriveError::NotFound {
            sequence,
            reason: e.to_string(),
        })?;
    let original = m
        .headers
        .get(headers::ORIGINAL_SUBJECT)
        .map(|v| v.as_str().to_string())
        .ok_or(RedriveError::Malformed {
            sequence,
            header: headers::ORIGINAL_SUBJECT,
        })?;
    if !original.starts_with(&format!("{prefix}.intake.")) {
        return Err(RedriveError::ParkedEvent {
            sequence,
            subject: original,
            consumer: m
                .headers
                .get(headers::CONSUMER)
                .map(|v| v.as_str().to_string())
                .unwrap_or_default(),
        });
    }
    let mut h = HeaderMap::new();
    h.insert("Closeloop-Redrive-Of", sequence.to_string().as_str());
    js.publish_with_headers(original.clone(), h, m.payload.clone())
        .await
        .map_err(|e| unavailable(&e))?
        .await
        .map_err(|e| unavailable(&e))?;
    stream.delete_message(sequence).await.map_err(|e| {
        unavailable(&format!(
            "redriven, but could not remove dead letter {sequence}: {e}"
        ))
    })?;
    Ok(original)
}
