//! Dead-letter administration, for every consumer: list what was parked and
//! why, redrive an intake message after fixing its cause, and replay an
//! event consumer from a stream sequence (events are never published twice;
//! the consumer reads them again and its idempotent handler skips what it
//! had already done).

use async_nats::HeaderMap;
use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, pull},
};
use futures::StreamExt;

use crate::Prefix;
use crate::consumer::{dlq_headers as headers, dlq_stream};

/// One parked message.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Sequence in the dead-letter stream: the id to redrive.
    pub sequence: u64,
    /// The durable consumer that parked it.
    pub consumer: String,
    pub original_subject: String,
    /// Its sequence in the stream it came from (the sequence to replay from).
    pub original_sequence: u64,
    pub reason: String,
    pub dead_lettered_at: String,
    pub payload: bytes::Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("no dead letter {sequence}: {reason}")]
    NotFound { sequence: u64, reason: String },
    /// Events are immutable history: publishing one again would append a
    /// copy. A parked event is replayed by its consumer instead.
    #[error(
        "dead letter {sequence} is the event {subject}, parked by consumer {consumer:?}; only intake \
         messages can be redriven (events are never published twice): fix the cause, then \
         `closeloop dlq replay --consumer {consumer} --from {original_sequence}`"
    )]
    ParkedEvent {
        sequence: u64,
        subject: String,
        consumer: String,
        original_sequence: u64,
    },
    #[error("dead letter {sequence} has no {header} header")]
    Malformed { sequence: u64, header: &'static str },
    #[error("no durable consumer {consumer:?} on stream {stream}")]
    NoConsumer { stream: String, consumer: String },
    #[error(
        "{consumer:?} consumes intake messages, which are removed once handled: redrive its \
         dead letters instead (`closeloop dlq redrive SEQ`)"
    )]
    IntakeConsumer { consumer: String },
    #[error("NATS unavailable: {0}")]
    Unavailable(String),
}

fn unavailable(e: impl std::fmt::Display) -> DlqError {
    DlqError::Unavailable(e.to_string())
}

fn header(h: Option<&HeaderMap>, k: &str) -> String {
    h.and_then(|h| h.get(k))
        .map(|v| v.as_str().to_string())
        .unwrap_or_default()
}

/// Every parked message (of `consumer`, if given), oldest first.
pub async fn list(
    js: &jetstream::Context,
    prefix: &Prefix,
    consumer: Option<&str>,
) -> Result<Vec<DeadLetter>, DlqError> {
    let mut stream = js.get_stream(dlq_stream(prefix)).await.map_err(|e| {
        unavailable(format!(
            "no dead-letter stream {} (has closeloop run with this --prefix?): {e}",
            dlq_stream(prefix)
        ))
    })?;
    let info = stream.info().await.map_err(unavailable)?;
    if info.state.messages == 0 {
        return Ok(Vec::new());
    }
    let reader = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: format!("{prefix}.dlq.>"),
            ..Default::default()
        })
        .await
        .map_err(unavailable)?;
    let mut messages = reader.messages().await.map_err(unavailable)?;
    let mut out = Vec::new();
    while let Some(m) = messages.next().await {
        let m = m.map_err(unavailable)?;
        let info = m.info().map_err(unavailable)?;
        let (sequence, pending) = (info.stream_sequence, info.pending);
        let h = |k| header(m.headers.as_ref(), k);
        let letter = DeadLetter {
            sequence,
            consumer: h(headers::CONSUMER),
            original_subject: h(headers::ORIGINAL_SUBJECT),
            original_sequence: h(headers::ORIGINAL_SEQUENCE).parse().unwrap_or(0),
            reason: h(headers::REASON),
            dead_lettered_at: h(headers::DEAD_LETTERED_AT),
            payload: m.payload.clone(),
        };
        if consumer.is_none_or(|c| c == letter.consumer) {
            out.push(letter);
        }
        if pending == 0 {
            break;
        }
    }
    Ok(out)
}

/// The durable consumers on `streams` (not the ephemeral ones readers
/// make), by the name their dead letters carry
/// (a consumer over several filters is one name: its server-side siblings
/// `NAME-1`, `NAME-2`, ... are folded into it), sorted. A stream that does
/// not exist (its role never ran) has none.
pub async fn consumer_names(
    js: &jetstream::Context,
    streams: &[String],
) -> Result<Vec<String>, DlqError> {
    let mut names = std::collections::BTreeSet::new();
    for stream in streams {
        let s = match js.get_stream(stream).await {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(_)
                ) =>
            {
                continue;
            }
            Err(e) => return Err(unavailable(e)),
        };
        // Durable ones only: readers' ordered consumers are ephemeral.
        let mut listed = s.consumers();
        while let Some(info) = listed.next().await {
            if let Some(name) = info.map_err(unavailable)?.config.durable_name {
                names.insert(name);
            }
        }
    }
    let folded = names
        .iter()
        .filter(|n| {
            !n.rsplit_once('-').is_some_and(|(base, k)| {
                !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) && names.contains(base)
            })
        })
        .cloned()
        .collect();
    Ok(folded)
}

/// Publishes a parked intake message to its original subject again (after
/// the cause was fixed, e.g. the account imported) and removes it from the
/// dead letters; returns that subject.
pub async fn redrive(
    js: &jetstream::Context,
    prefix: &Prefix,
    sequence: u64,
) -> Result<String, DlqError> {
    let stream = js
        .get_stream(dlq_stream(prefix))
        .await
        .map_err(unavailable)?;
    let m = stream
        .get_raw_message(sequence)
        .await
        .map_err(|e| DlqError::NotFound {
            sequence,
            reason: e.to_string(),
        })?;
    let original = m
        .headers
        .get(headers::ORIGINAL_SUBJECT)
        .map(|v| v.as_str().to_string())
        .ok_or(DlqError::Malformed {
            sequence,
            header: headers::ORIGINAL_SUBJECT,
        })?;
    if !original.starts_with(&format!("{prefix}.intake.")) {
        return Err(DlqError::ParkedEvent {
            sequence,
            subject: original,
            consumer: header(Some(&m.headers), headers::CONSUMER),
            original_sequence: header(Some(&m.headers), headers::ORIGINAL_SEQUENCE)
                .parse()
                .unwrap_or(0),
        });
    }
    let mut h = HeaderMap::new();
    h.insert("Closeloop-Redrive-Of", sequence.to_string().as_str());
    js.publish_with_headers(original.clone(), h, m.payload.clone())
        .await
        .map_err(unavailable)?
        .await
        .map_err(unavailable)?;
    stream.delete_message(sequence).await.map_err(|e| {
        unavailable(format!(
            "redriven, but could not remove dead letter {sequence}: {e}"
        ))
    })?;
    Ok(original)
}

/// Makes durable consumer `consumer` of `stream` (and its siblings
/// `<consumer>-<n>`, one per further subject filter) deliver again every
/// message from stream sequence `from` on (after the cause of a parked event
/// was fixed). Each is recreated with its configuration and that start;
/// running processes pick it up within a second or two, and handlers, being
/// idempotent, skip what they had already done. Returns how many messages
/// their filters have from `from` on.
pub async fn replay(
    js: &jetstream::Context,
    stream: &str,
    consumer: &str,
    from: u64,
) -> Result<u64, DlqError> {
    let mut s = js.get_stream(stream).await.map_err(unavailable)?;
    let sibling = |name: &str| {
        name == consumer
            || name
                .strip_prefix(consumer)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut names = Vec::new();
    let mut listed = s.consumer_names();
    while let Some(name) = listed.next().await {
        let name = name.map_err(unavailable)?;
        if sibling(&name) {
            names.push(name);
        }
    }
    if !names.iter().any(|n| n == consumer) {
        return Err(DlqError::NoConsumer {
            stream: stream.to_string(),
            consumer: consumer.to_string(),
        });
    }
    let mut total = 0;
    for name in names {
        total += replay_one(&mut s, &name, from).await?;
    }
    Ok(total)
}

async fn replay_one(
    s: &mut jetstream::stream::Stream,
    consumer: &str,
    from: u64,
) -> Result<u64, DlqError> {
    let info = s.consumer_info(consumer).await.map_err(unavailable)?;
    let config = info.config.clone();
    s.delete_consumer(consumer).await.map_err(unavailable)?;
    let mut created = s
        .create_consumer(pull::Config {
            durable_name: config.durable_name.clone(),
            filter_subject: config.filter_subject.clone(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from.max(1),
            },
            ack_policy: config.ack_policy,
            ack_wait: config.ack_wait,
            max_deliver: config.max_deliver,
            max_ack_pending: config.max_ack_pending,
            description: config.description.clone(),
            ..Default::default()
        })
        .await
        .map_err(unavailable)?;
    created
        .info()
        .await
        .map(|i| i.num_pending)
        .map_err(unavailable)
}
