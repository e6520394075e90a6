//! Durable, side-effecting consumers with a dead-letter stream.
//!
//! [`run_consumer`] pulls messages of one filter subject through a durable
//! pull consumer in batches of up to [`ConsumerSpec::max_batch`] and hands
//! each to one of 64 lanes by [`Handler::key`] (by default the subject, i.e.
//! one aggregate): messages with the same key are handled in order, different
//! keys concurrently, so the stages of the pipeline overlap their broker
//! round trips instead of awaiting them one at a time.
//!
//! What a handler makes of a message ([`Verdict`]):
//! * `Done`: acknowledged;
//! * `DeadLetter(reason)`: parked in `<PREFIX>_DLQ` under
//!   `<prefix>.dlq.<original subject without prefix>` with the reason in
//!   headers, then acknowledged: nothing is silently dropped;
//! * `Retry(why)`: negatively acknowledged with the delay the spec's
//!   [`RetryPolicy`] gives this delivery (broker trouble, a read model that
//!   has not caught up). Later messages of the same key already queued are
//!   retried too, so their order holds. At its last delivery a message that
//!   still cannot be processed is parked like a dead letter, with the last
//!   reason; so is one the broker delivered more often than that without an
//!   answer (its handler crashed or hung).
//!
//! Handlers must be idempotent: a message can be delivered again after a
//! crash between the side effect and the acknowledgement.

use std::future::Future;
use std::time::{Duration, SystemTime};

use async_nats::HeaderMap;
use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, pull},
    stream::{self, RetentionPolicy, StorageType},
};
use futures::StreamExt;

use crate::{Envelope, Prefix, StoredEvent};

/// Headers on a dead-lettered message.
pub mod dlq_headers {
    pub const REASON: &str = "Closeloop-Dead-Letter-Reason";
    pub const ORIGINAL_SUBJECT: &str = "Closeloop-Original-Subject";
    pub const ORIGINAL_SEQUENCE: &str = "Closeloop-Original-Sequence";
    pub const DEAD_LETTERED_AT: &str = "Closeloop-Dead-Lettered-At";
    /// The durable consumer that parked it.
    pub const CONSUMER: &str = "Closeloop-Consumer";
}

/// `<PREFIX>_DLQ`: the install's dead-letter stream.
pub fn dlq_stream(prefix: &Prefix) -> String {
    format!(
        "{}_DLQ",
        prefix.as_str().to_ascii_uppercase().replace('-', "_")
    )
}

/// Where a message from `original` is parked.
pub fn dlq_subject(prefix: &Prefix, original: &str) -> String {
    let rest = original
        .strip_prefix(&format!("{prefix}."))
        .unwrap_or(original);
    format!("{prefix}.dlq.{rest}")
}

/// Creates (or finds) the dead-letter stream.
pub async fn ensure_dlq(js: &jetstream::Context, prefix: &Prefix) -> Result<(), String> {
    crate::store::ensure_stream(
        js,
        stream::Config {
            name: dlq_stream(prefix),
            description: Some(
                "closeloop dead letters: messages that could not be processed, with the reason"
                    .into(),
            ),
            subjects: vec![format!("{prefix}.dlq.>")],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        },
    )
    .await
    .map(|_| ())
}

/// Why a consumer stopped (it is restarted a second later).
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("dead-letter stream unavailable: {0}")]
    DeadLetterStream(String),
    #[error("stream {stream} unavailable: {reason}")]
    Stream { stream: String, reason: String },
    #[error("cannot set up durable consumer {durable}: {reason}")]
    Durable { durable: String, reason: String },
    #[error("reading messages failed: {0}")]
    Read(String),
    #[error("acknowledging message {sequence} failed: {reason}")]
    Ack { sequence: u64, reason: String },
    #[error("parking message {sequence} failed: {reason}")]
    Park { sequence: u64, reason: String },
    #[error("a consumer lane stopped")]
    LaneStopped,
}

/// What a handler made of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Processed: acknowledge.
    Done,
    /// Can never be processed as it is: park it with this reason.
    DeadLetter(String),
    /// Could not be processed now: redeliver later.
    Retry(String),
}

/// Handles the messages of one consumer.
pub trait Handler: Send + Sync {
    /// Messages with the same key are handled in order; by default the subject.
    fn key(&self, msg: &jetstream::Message) -> String {
        msg.subject.to_string()
    }

    fn handle(&self, msg: &jetstream::Message) -> impl Future<Output = Verdict> + Send;
}

/// A handler of one aggregate type's events, given them decoded (through
/// the type's [`crate::Contract`]) with their envelope: what routing,
/// ticketing and the coming services implement.
/// [`Decoded`] makes one a [`Handler`]; a message that does not decode (a
/// newer closeloop's event, a damaged payload) is parked with the decoder's
/// reason, never handed on.
pub trait EventHandler: Send + Sync {
    type Contract: crate::Contract;

    fn handle(
        &self,
        event: <crate::aggregate::Of<Self::Contract> as crate::Aggregate>::Recorded,
        envelope: Option<&Envelope>,
    ) -> impl Future<Output = Verdict> + Send;
}

/// An [`EventHandler`] as a [`Handler`] of the consumer's raw messages.
pub struct Decoded<H>(pub H);

impl<H: EventHandler> Handler for Decoded<H> {
    async fn handle(&self, msg: &jetstream::Message) -> Verdict {
        let stored = match stored_event(msg) {
            Ok(s) => s,
            Err(e) => return Verdict::DeadLetter(e),
        };
        match <H::Contract as crate::Contract>::decode(&stored) {
            Ok(event) => self.0.handle(event, stored.envelope.as_ref()).await,
            Err(e) => Verdict::DeadLetter(e.0),
        }
    }
}

/// Counters of one consumer, for `/metrics` and `closeloop status`.
#[derive(Debug, Default)]
pub struct ConsumerMetrics {
    pub done: std::sync::atomic::AtomicU64,
    pub dead_lettered: std::sync::atomic::AtomicU64,
    pub retried: std::sync::atomic::AtomicU64,
    /// Stream sequence of the last message delivered to the durable (as the
    /// server has it when consuming starts, then as messages arrive).
    pub position: std::sync::atomic::AtomicU64,
    /// Messages still to deliver after it (the consumer's lag).
    pub pending: std::sync::atomic::AtomicU64,
    /// Messages received and not yet answered (handled, or waiting in a
    /// lane): with `pending`, the work this consumer still has.
    pub in_flight: std::sync::atomic::AtomicU64,
    /// Subscribed and reading: false while its subscription cannot be set
    /// up (stream missing, broker down) and, within a second, while the
    /// broker is unreachable; `/readyz` reports it.
    pub consuming: std::sync::atomic::AtomicBool,
}

/// Which messages a durable consumer takes.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// The stream to consume.
    pub stream: String,
    /// Durable consumer name (one per role and purpose).
    pub durable: String,
    /// Subjects it takes. On NATS 2.9 a JetStream consumer has one filter,
    /// so each filter gets a durable of its own ([`ConsumerSpec::durable_for`])
    /// feeding the same ordered lanes: an aggregate's events are on one
    /// subject, so its order holds without ordering across filters.
    pub filters: Vec<String>,
    /// Most messages handled together.
    pub max_batch: usize,
    /// Lanes handling messages at once (a key's messages stay on one lane,
    /// in order). Fewer lanes: a side-effect consumer that takes less of
    /// the machine from the path users wait on.
    pub lanes: usize,
    /// A side-effect consumer (notifications): its backlog is not the
    /// user path's, and it yields to that path (see the runtime's
    /// `Pressure`).
    pub background: bool,
    /// Delay before redelivery when parking itself failed (broker trouble).
    pub retry_delay: Duration,
    /// How often, and how far apart, a `Retry` is redelivered.
    pub retry: RetryPolicy,
    /// When its durable is first created, start after the stream's current
    /// end instead of at its beginning (a side effect such as a notification
    /// is about what happens from then on, not about history).
    pub only_new: bool,
    pub metrics: std::sync::Arc<ConsumerMetrics>,
}

/// Bounded redelivery: a message is delivered at most `max_deliver` times,
/// each `Retry` waiting the next step of `backoff` (the last step repeats),
/// then parked with the reason. JetStream's own `max_deliver` is left
/// unlimited: on NATS 2.9 a message past it is dropped from the consumer
/// without a trace, while parking here keeps it, with the reason, for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_deliver: u64,
    pub backoff: Vec<Duration>,
}

impl Default for RetryPolicy {
    /// 12 deliveries over about 15 minutes: 1 s, 2 s, 5 s, 10 s, 30 s, 1 min,
    /// then every 2 min.
    fn default() -> Self {
        RetryPolicy {
            max_deliver: 12,
            backoff: [1, 2, 5, 10, 30, 60, 120]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
        }
    }
}

impl RetryPolicy {
    /// The delay before the delivery after delivery `delivered` (1-based).
    pub fn delay(&self, delivered: u64) -> Duration {
        let step = (delivered.max(1) - 1) as usize;
        self.backoff
            .get(step)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(Duration::from_secs(1))
    }
}

impl ConsumerSpec {
    pub fn new(stream: String, durable: &str, filter: String) -> ConsumerSpec {
        ConsumerSpec {
            stream,
            durable: durable.to_string(),
            filters: vec![filter],
            max_batch: 256,
            lanes: LANES,
            background: false,
            retry_delay: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            only_new: false,
            metrics: Default::default(),
        }
    }

    /// Its durable, when first created, takes only messages stored from
    /// then on (an existing durable keeps its position).
    pub fn only_new(mut self) -> ConsumerSpec {
        self.only_new = true;
        self
    }

    /// Marks it a side-effect consumer (see [`ConsumerSpec::background`]).
    pub fn background(mut self) -> ConsumerSpec {
        self.background = true;
        self
    }

    /// Handles at most `lanes` messages at once (at least 1).
    pub fn lanes(mut self, lanes: usize) -> ConsumerSpec {
        self.lanes = lanes.max(1);
        self
    }

    /// Takes `filter`'s subjects too.
    pub fn also(mut self, filter: String) -> ConsumerSpec {
        self.filters.push(filter);
        self
    }

    /// The JetStream durable that reads filter `i`: the consumer's name for
    /// the first, `<name>-<i>` for the others.
    pub fn durable_for(&self, i: usize) -> String {
        if i == 0 {
            self.durable.clone()
        } else {
            format!("{}-{i}", self.durable)
        }
    }
}

/// A stored event from a consumer message (subject, stream sequence, envelope, payload).
pub fn stored_event(msg: &jetstream::Message) -> Result<StoredEvent, String> {
    let info = msg
        .info()
        .map_err(|e| format!("bad message metadata: {e}"))?;
    Ok(StoredEvent {
        subject: msg.subject.to_string(),
        sequence: info.stream_sequence,
        envelope: Envelope::from_headers(msg.headers.as_ref()),
        payload: msg.payload.clone(),
        pending: info.pending,
    })
}

/// Runs the consumer until `shutdown` resolves; failures (broker down) are
/// logged and the consumer restarts after a second.
pub async fn run_consumer<H: Handler>(
    js: jetstream::Context,
    prefix: Prefix,
    spec: ConsumerSpec,
    handler: H,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let r = tokio::select! {
            _ = &mut shutdown => return,
            r = consume(&js, &prefix, &spec, &handler) => r,
        };
        spec.metrics
            .consuming
            .store(false, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = r {
            tracing::error!(consumer = %spec.durable, error = %e, "consumer failed; restarting");
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
    spec: &ConsumerSpec,
    handler: &H,
) -> Result<(), ConsumeError> {
    ensure_dlq(js, prefix)
        .await
        .map_err(ConsumeError::DeadLetterStream)?;
    let stream = js
        .get_stream(&spec.stream)
        .await
        .map_err(|e| ConsumeError::Stream {
            stream: spec.stream.clone(),
            reason: e.to_string(),
        })?;
    let mut streams = Vec::with_capacity(spec.filters.len());
    // Where each durable stands on the server (its last delivered stream
    // sequence, and what is left): `/metrics` shows that from the start,
    // not 0 until the first message after a restart.
    let mut standing = Vec::with_capacity(spec.filters.len());
    for (i, filter) in spec.filters.iter().enumerate() {
        let durable = spec.durable_for(i);
        let consumer = stream
            .get_or_create_consumer(
                &durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: filter.clone(),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    max_ack_pending: (spec.max_batch * 4) as i64,
                    deliver_policy: if spec.only_new {
                        async_nats::jetstream::consumer::DeliverPolicy::New
                    } else {
                        async_nats::jetstream::consumer::DeliverPolicy::All
                    },
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| ConsumeError::Durable {
                durable: durable.clone(),
                reason: e.to_string(),
            })?;
        // As the server answered just now (looking the durable up, or
        // creating it): no second round trip.
        let info = consumer.cached_info();
        standing.push((info.delivered.stream_sequence, info.num_pending));
        streams.push(
            consumer
                .stream()
                .max_messages_per_batch(spec.max_batch)
                .messages()
                .await
                .map_err(|e| ConsumeError::Durable {
                    durable: durable.clone(),
                    reason: e.to_string(),
                })?,
        );
        tracing::info!(consumer = %spec.durable, durable = %durable, filter = %filter, "consuming");
    }
    spec.metrics
        .consuming
        .store(true, std::sync::atomic::Ordering::Relaxed);
    spec.metrics
        .in_flight
        .store(0, std::sync::atomic::Ordering::Relaxed);
    // One lane per slice of the key space: a key's messages go down one lane
    // in order; lanes run concurrently, so round trips overlap without
    // waiting for a whole batch.
    let mut senders = Vec::with_capacity(spec.lanes);
    let mut lanes = Vec::with_capacity(spec.lanes);
    for _ in 0..spec.lanes {
        let (tx, rx) = tokio::sync::mpsc::channel(LANE_DEPTH);
        senders.push(tx);
        lanes.push(lane(js, prefix, spec, handler, rx));
    }
    let mut lanes = std::pin::pin!(futures::future::try_join_all(lanes));
    let backlog: std::sync::Arc<[std::sync::atomic::AtomicU64]> = standing
        .iter()
        .map(|(_, pending)| std::sync::atomic::AtomicU64::new(*pending))
        .collect();
    {
        use std::sync::atomic::Ordering::Relaxed;
        let delivered = standing.iter().map(|(d, _)| *d).max().unwrap_or(0);
        spec.metrics.position.fetch_max(delivered, Relaxed);
        spec.metrics
            .pending
            .store(standing.iter().map(|(_, p)| *p).sum(), Relaxed);
    }
    let reader = futures::future::try_join_all(
        streams
            .into_iter()
            .enumerate()
            .map(|(i, m)| read(js, spec, handler, m, senders.clone(), (backlog.clone(), i))),
    );
    tokio::select! {
        // Lanes end early only on an error (they otherwise run until the reader stops).
        r = &mut lanes => r.map(|_| ()),
        r = reader => {
            // Let the lanes finish what they hold, then report.
            drop(senders);
            let drained = lanes.await;
            r?;
            drained.map(|_| ())
        }
    }
}

/// Lanes per consumer (by default), and messages queued per lane.
const LANES: usize = 64;
const LANE_DEPTH: usize = 32;

/// Pulls messages and hands each to its key's lane until the stream ends or
/// the connection is re-established (a restarted server may have lost the
/// subscription's interest).
async fn read<H: Handler>(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    handler: &H,
    mut messages: pull::Stream,
    lanes: Vec<tokio::sync::mpsc::Sender<(String, jetstream::Message)>>,
    (backlog, slot): (std::sync::Arc<[std::sync::atomic::AtomicU64]>, usize),
) -> Result<(), ConsumeError> {
    let connects = || {
        js.client()
            .statistics()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let connected = connects();
    let mut watchdog = tokio::time::interval(Duration::from_secs(1));
    loop {
        let msg = tokio::select! {
            m = messages.next() => match m {
                Some(m) => m.map_err(|e| ConsumeError::Read(e.to_string()))?,
                None => return Ok(()),
            },
            _ = watchdog.tick() => {
                if connects() != connected {
                    tracing::info!(consumer = %spec.durable, "NATS reconnected; resubscribing");
                    return Ok(());
                }
                // Not consuming while the broker is away (reported by /readyz).
                let up = js.client().connection_state() == async_nats::connection::State::Connected;
                spec.metrics
                    .consuming
                    .store(up, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
        };
        if let Ok(info) = msg.info() {
            use std::sync::atomic::Ordering::Relaxed;
            spec.metrics
                .position
                .fetch_max(info.stream_sequence, Relaxed);
            backlog[slot].store(info.pending, Relaxed);
            let total = backlog.iter().map(|b| b.load(Relaxed)).sum();
            spec.metrics.pending.store(total, Relaxed);
        }
        let key = handler.key(&msg);
        let lane = lane_of(&key, lanes.len());
        spec.metrics
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if lanes[lane].send((key, msg)).await.is_err() {
            return Err(ConsumeError::LaneStopped);
        }
    }
}

fn lane_of(key: &str, lanes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % lanes as u64) as usize
}

/// Handles one lane's messages in order. After a `Retry`, later messages of
/// the same key are retried too (their order holds) until the lane is idle.
async fn lane<H: Handler>(
    js: &jetstream::Context,
    prefix: &Prefix,
    spec: &ConsumerSpec,
    handler: &H,
    mut rx: tokio::sync::mpsc::Receiver<(String, jetstream::Message)>,
) -> Result<(), ConsumeError> {
    let ack_failed = |sequence: u64| {
        move |e: async_nats::Error| ConsumeError::Ack {
            sequence,
            reason: e.to_string(),
        }
    };
    let mut held: std::collections::HashSet<String> = Default::default();
    while let Some((key, msg)) = rx.recv().await {
        let (seq, delivered) = msg
            .info()
            .map(|i| (i.stream_sequence, i.delivered.max(1) as u64))
            .unwrap_or((0, 1));
        let verdict = if delivered > spec.retry.max_deliver {
            Verdict::DeadLetter(format!(
                "delivered {delivered} times without an answer (the handler crashed or hung)"
            ))
        } else if held.contains(&key) {
            Verdict::Retry("an earlier message of the same key is being retried".into())
        } else {
            let span = tracing::info_span!(
                "consume",
                consumer = %spec.durable,
                subject = %msg.subject,
                sequence = seq,
                delivered
            );
            crate::trace::follow(
                &span,
                msg.headers
                    .as_ref()
                    .and_then(|h| h.get(crate::headers::TRACEPARENT))
                    .map(|v| v.as_str()),
            );
            match tracing::Instrument::instrument(handler.handle(&msg), span).await {
                Verdict::Retry(why) if delivered >= spec.retry.max_deliver => {
                    Verdict::DeadLetter(format!("gave up after {delivered} deliveries: {why}"))
                }
                v => v,
            }
        };
        let counter = match &verdict {
            Verdict::Done => &spec.metrics.done,
            Verdict::DeadLetter(_) => &spec.metrics.dead_lettered,
            Verdict::Retry(_) => &spec.metrics.retried,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _answered = Answered(&spec.metrics.in_flight);
        match verdict {
            Verdict::Done => msg.ack().await.map_err(ack_failed(seq))?,
            Verdict::DeadLetter(reason) => {
                match dead_letter(js, prefix, &spec.durable, &msg, seq, &reason).await {
                    Ok(()) => {
                        tracing::warn!(consumer = %spec.durable, sequence = seq, %reason, "message parked in the dead-letter stream");
                        msg.ack().await.map_err(ack_failed(seq))?;
                    }
                    Err(e) => {
                        tracing::error!(consumer = %spec.durable, sequence = seq, error = %e, "cannot dead-letter; will retry");
                        held.insert(key);
                        msg.ack_with(AckKind::Nak(Some(spec.retry_delay)))
                            .await
                            .map_err(ack_failed(seq))?;
                    }
                }
            }
            Verdict::Retry(why) => {
                let delay = spec.retry.delay(delivered);
                if held.insert(key) {
                    tracing::warn!(consumer = %spec.durable, sequence = seq, delivered, ?delay, %why, "message not processed; will retry");
                }
                msg.ack_with(AckKind::Nak(Some(delay)))
                    .await
                    .map_err(ack_failed(seq))?;
            }
        }
        if rx.is_empty() {
            held.clear();
        }
    }
    Ok(())
}

/// Counts a message out of `in_flight` when its answer is done with
/// (whichever way the lane's step ends).
struct Answered<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for Answered<'_> {
    fn drop(&mut self) {
        let _ = self.0.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |n| n.checked_sub(1),
        );
    }
}

async fn dead_letter(
    js: &jetstream::Context,
    prefix: &Prefix,
    consumer: &str,
    msg: &jetstream::Message,
    stream_sequence: u64,
    reason: &str,
) -> Result<(), ConsumeError> {
    let park_failed = |e: &dyn std::fmt::Display| ConsumeError::Park {
        sequence: stream_sequence,
        reason: e.to_string(),
    };
    let mut h = HeaderMap::new();
    // Header values are single lines; keep the reason readable and bounded.
    let reason: String = reason
        .replace(['\r', '\n'], " ")
        .chars()
        .take(2000)
        .collect();
    h.insert(dlq_headers::REASON, reason.as_str());
    h.insert(dlq_headers::ORIGINAL_SUBJECT, msg.subject.as_str());
    h.insert(
        dlq_headers::ORIGINAL_SEQUENCE,
        stream_sequence.to_string().as_str(),
    );
    h.insert(dlq_headers::CONSUMER, consumer);
    h.insert(
        dlq_headers::DEAD_LETTERED_AT,
        humantime::format_rfc3339_micros(SystemTime::now())
            .to_string()
            .as_str(),
    );
    // A redelivered message parks once.
    h.insert(
        "Nats-Msg-Id",
        format!("dlq-{consumer}-{stream_sequence}").as_str(),
    );
    js.publish_with_headers(
        dlq_subject(prefix, msg.subject.as_str()),
        h,
        msg.payload.clone(),
    )
    .await
    .map_err(|e| park_failed(&e))?
    .await
    .map_err(|e| park_failed(&e))?;
    Ok(())
}

#[cfg(test)]
mod retry_tests {
    use super::*;

    #[test]
    fn the_backoff_schedule_steps_then_repeats_its_last_delay() {
        let p = RetryPolicy::default();
        let secs: Vec<u64> = (1..=9).map(|d| p.delay(d).as_secs()).collect();
        assert_eq!(secs, [1, 2, 5, 10, 30, 60, 120, 120, 120]);
        assert_eq!(p.delay(0), Duration::from_secs(1));
        let empty = RetryPolicy {
            max_deliver: 3,
            backoff: vec![],
        };
        assert_eq!(empty.delay(5), Duration::from_secs(1));
    }
}
