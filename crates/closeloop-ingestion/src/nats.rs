//! Feedback published on NATS: `<prefix>.intake.feedback`.
//!
//! Upstream systems publish canonical JSON documents to the intake subject,
//! which a work-queue stream (`<PREFIX>_INTAKE`) makes durable. A durable
//! consumer turns each valid message into feedback; an invalid one is parked
//! in the dead-letter stream (`<PREFIX>_DLQ`, subject
//! `<prefix>.dlq.intake.feedback`) with the reason in headers, and only then
//! acknowledged, so nothing is silently dropped. A message that cannot be
//! stored right now (broker trouble) is retried later.

use std::time::{Duration, SystemTime};

use async_nats::HeaderMap;
use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, pull},
    stream::{self, RetentionPolicy, StorageType},
};
use closeloop_eventstore::{Carried, Prefix};
use futures::StreamExt;
use serde_json::Value;

use crate::intake::{Intake, SubmitError};

/// Headers on a dead-lettered message.
pub mod headers {
    pub const REASON: &str = "Closeloop-Dead-Letter-Reason";
    pub const ORIGINAL_SUBJECT: &str = "Closeloop-Original-Subject";
    pub const ORIGINAL_SEQUENCE: &str = "Closeloop-Original-Sequence";
    pub const DEAD_LETTERED_AT: &str = "Closeloop-Dead-Lettered-At";
}

pub fn intake_stream(prefix: &Prefix) -> String {
    format!(
        "{}_INTAKE",
        prefix.as_str().to_ascii_uppercase().replace('-', "_")
    )
}

pub fn dlq_stream(prefix: &Prefix) -> String {
    format!(
        "{}_DLQ",
        prefix.as_str().to_ascii_uppercase().replace('-', "_")
    )
}

pub fn feedback_subject(prefix: &Prefix) -> String {
    format!("{prefix}.intake.feedback")
}

pub fn dlq_subject(prefix: &Prefix, original: &str) -> String {
    let rest = original
        .strip_prefix(&format!("{prefix}."))
        .unwrap_or(original);
    format!("{prefix}.dlq.{rest}")
}

#[derive(Debug, thiserror::Error)]
#[error("cannot set up NATS intake: {0}")]
pub struct IntakeSetupError(String);

/// Creates (or finds) the intake and dead-letter streams.
pub async fn ensure_streams(
    js: &jetstream::Context,
    prefix: &Prefix,
) -> Result<(), IntakeSetupError> {
    let err = |e: &dyn std::fmt::Display| IntakeSetupError(e.to_string());
    js.get_or_create_stream(stream::Config {
        name: intake_stream(prefix),
        description: Some("closeloop intake: upstream messages until processed".into()),
        subjects: vec![format!("{prefix}.intake.>")],
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .map_err(|e| err(&e))?;
    js.get_or_create_stream(stream::Config {
        name: dlq_stream(prefix),
        description: Some(
            "closeloop dead letters: messages that could not be processed, with the reason".into(),
        ),
        subjects: vec![format!("{prefix}.dlq.>")],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .map_err(|e| err(&e))?;
    Ok(())
}

/// What a handler made of one intake message.
pub enum Verdict {
    /// Processed: acknowledge.
    Done,
    /// Can never be processed as it is: park it with this reason.
    DeadLetter(String),
    /// Could not be processed now (e.g. broker trouble): redeliver later.
    Retry(String),
}

/// Handles one message of an intake subject.
pub trait Handler: Send + Sync {
    fn handle(&self, msg: &jetstream::Message)
    -> impl std::future::Future<Output = Verdict> + Send;
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

async fn dead_letter(
    js: &jetstream::Context,
    prefix: &Prefix,
    msg: &jetstream::Message,
    stream_sequence: u64,
    reason: &str,
) -> Result<(), String> {
    let mut h = HeaderMap::new();
    // Header values are single lines; keep the reason readable and bounded.
    let reason: String = reason
        .replace(['\r', '\n'], " ")
        .chars()
        .take(2000)
        .collect();
    h.insert(headers::REASON, reason.as_str());
    h.insert(headers::ORIGINAL_SUBJECT, msg.subject.as_str());
    h.insert(
        headers::ORIGINAL_SEQUENCE,
        stream_sequence.to_string().as_str(),
    );
    h.insert(
        headers::DEAD_LETTERED_AT,
        humantime::format_rfc3339_millis(SystemTime::now())
            .to_string()
            .as_str(),
    );
    // A redelivered message parks once.
    h.insert(
        "Nats-Msg-Id",
        format!("dlq-{}-{stream_sequence}", intake_stream(prefix)).as_str(),
    );
    js.publish_with_headers(
        dlq_subject(prefix, msg.subject.as_str()),
        h,
        msg.payload.clone(),
    )
    .await
    .map_err(|e| e.to_string())?
    .await
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// Consumes `<prefix>.intake.feedback` until `shutdown` resolves.
pub async fn run_feedback_intake(
    js: jetstream::Context,
    prefix: Prefix,
    intake: Intake,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let subject = feedback_subject(&prefix);
    run_intake(js, prefix, "feedback-intake", subject, intake, shutdown).await
}

/// Consumes one intake subject with a durable consumer named `name`, passing
/// each message to `handler`, until `shutdown` resolves.
pub async fn run_intake<H: Handler>(
    js: jetstream::Context,
    prefix: Prefix,
    name: &'static str,
    subject: String,
    handler: H,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let r = tokio::select! {
            _ = &mut shutdown => return,
            r = consume(&js, &prefix, name, &subject, &handler) => r,
        };
        if let Err(e) = r {
            tracing::error!(consumer = name, error = %e, "intake consumer failed; restarting");
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn consume<H: Handler>(
    js: &jetstream::Context,
    prefix: &Prefix,
    name: &str,
    subject: &str,
    handler: &H,
) -> Result<(), String> {
    ensure_streams(js, prefix)
        .await
        .map_err(|e| e.to_string())?;
    let stream = js
        .get_stream(intake_stream(prefix))
        .await
        .map_err(|e| e.to_string())?;
    let consumer = stream
        .get_or_create_consumer(
            name,
            pull::Config {
                durable_name: Some(name.into()),
                filter_subject: subject.to_string(),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(256)
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(consumer = name, %subject, "intake consuming");
    while let Some(msg) = messages.next().await {
        let msg = msg.map_err(|e| e.to_string())?;
        let seq = msg.info().map(|i| i.stream_sequence).unwrap_or_default();
        match handler.handle(&msg).await {
            Verdict::Done => msg.ack().await.map_err(|e| e.to_string())?,
            Verdict::DeadLetter(reason) => {
                match dead_letter(js, prefix, &msg, seq, &reason).await {
                    Ok(()) => {
                        tracing::warn!(sequence = seq, %reason, "intake message parked in the dead-letter stream");
                        msg.ack().await.map_err(|e| e.to_string())?;
                    }
                    Err(e) => {
                        tracing::error!(sequence = seq, error = %e, "cannot dead-letter; will retry");
                        msg.ack_with(AckKind::Nak(Some(Duration::from_secs(2))))
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
            Verdict::Retry(why) => {
                tracing::warn!(sequence = seq, %why, "intake message not stored; will retry");
                msg.ack_with(AckKind::Nak(Some(Duration::from_secs(2))))
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
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
pub async fn redrive(
    js: &jetstream::Context,
    prefix: &Prefix,
    sequence: u64,
) -> Result<String, String> {
    let stream = js
        .get_stream(dlq_stream(prefix))
        .await
        .map_err(|e| e.to_string())?;
    let m = stream
        .get_raw_message(sequence)
        .await
        .map_err(|e| format!("no dead letter {sequence}: {e}"))?;
    let original = m
        .headers
        .get(headers::ORIGINAL_SUBJECT)
        .map(|v| v.as_str().to_string())
        .ok_or_else(|| {
            format!(
                "dead letter {sequence} has no {} header",
                headers::ORIGINAL_SUBJECT
            )
        })?;
    let mut h = HeaderMap::new();
    h.insert("Closeloop-Redrive-Of", sequence.to_string().as_str());
    js.publish_with_headers(original.clone(), h, m.payload.clone())
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    stream
        .delete_message(sequence)
        .await
        .map_err(|e| format!("redriven, but could not remove dead letter {sequence}: {e}"))?;
    Ok(original)
}
