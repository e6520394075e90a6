//! JetStream-backed append and replay.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, pull::OrderedConfig},
    context::PublishErrorKind,
    stream::{self, LastRawMessageErrorKind, RetentionPolicy, StorageType},
};
use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::envelope::{Envelope, headers};
use crate::prefix::Prefix;

/// Where a durable consumer stands (see [`EventStore::consumer_position`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerPosition {
    /// Every message of its filter up to this stream sequence is acked
    /// (handled).
    pub ack_floor: u64,
    /// Nothing of its filter is waiting or being handled: it has handled
    /// everything in the stream.
    pub idle: bool,
}

/// How the event stream is provisioned.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub prefix: Prefix,
    /// Stream replicas: 1 for a single server, 3 for a production cluster.
    pub replicas: usize,
    /// Window in which the server drops a repeated `Nats-Msg-Id`.
    pub duplicate_window: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            prefix: Prefix::default(),
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot provision stream {stream}: {reason}")]
    Provision { stream: String, reason: String },
    #[error(
        "stream {stream} exists with an incompatible configuration: {problems}. \
         Fix or remove the stream (events are immutable: back it up first), or use another --prefix"
    )]
    Incompatible { stream: String, problems: String },
    #[error("NATS JetStream unavailable: {0}")]
    Unavailable(String),
    #[error("reading {subject} timed out after {secs}s")]
    Timeout { subject: String, secs: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Someone else appended to the subject first: reload and decide again.
    #[error("another writer appended to {subject} first (expected last sequence {expected})")]
    Conflict { subject: String, expected: u64 },
    #[error("NATS JetStream did not accept the event: {0}")]
    Unavailable(String),
}

/// Result of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Stream sequence of the stored event.
    pub sequence: u64,
    /// True when the server recognised the `Nats-Msg-Id` and kept the earlier copy.
    pub duplicate: bool,
}

/// One stored event as read back from the stream.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub subject: String,
    pub sequence: u64,
    /// `None` when the message lacks closeloop headers (not written by closeloop).
    pub envelope: Option<Envelope>,
    pub payload: Bytes,
    /// Events matching the reader's filter still to come after this one
    /// when it was delivered (its lag); 0 when not read through a consumer.
    pub pending: u64,
}

/// Handle on the install's event stream. Cheap to clone.
#[derive(Clone)]
pub struct EventStore {
    js: jetstream::Context,
    stream: jetstream::stream::Stream,
    prefix: Prefix,
    clock: crate::Clock,
}

const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest history read backwards by direct gets (longer ones are read
/// with a consumer, which costs the server more but one round trip less
/// per event).
const WALK_BACK: usize = 8;

/// A stored event from a message read by sequence.
fn raw_event(m: async_nats::jetstream::message::StreamMessage) -> StoredEvent {
    StoredEvent {
        subject: m.subject.to_string(),
        sequence: m.sequence,
        envelope: Envelope::from_headers(Some(&m.headers)),
        payload: m.payload,
        pending: 0,
    }
}

impl EventStore {
    /// Creates the event stream if it is missing and verifies it otherwise.
    /// Safe to call from every replica at every start.
    pub async fn open(client: async_nats::Client, cfg: StoreConfig) -> Result<Self, StoreError> {
        let js = jetstream::new(client);
        let name = cfg.prefix.events_stream();
        let wanted = stream::Config {
            name: name.clone(),
            description: Some(format!(
                "closeloop events for prefix '{}' (immutable)",
                cfg.prefix
            )),
            subjects: vec![cfg.prefix.events_filter()],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            num_replicas: cfg.replicas,
            duplicate_window: cfg.duplicate_window,
            allow_direct: true,
            deny_delete: true,
            deny_purge: true,
            ..Default::default()
        };
        let mut stream =
            ensure_stream(&js, wanted.clone())
                .await
                .map_err(|reason| StoreError::Provision {
                    stream: name.clone(),
                    reason,
                })?;
        let info = stream.info().await.map_err(|e| StoreError::Provision {
            stream: name.clone(),
            reason: e.to_string(),
        })?;
        let problems = incompatibilities(&wanted, &info.config);
        if !problems.is_empty() {
            return Err(StoreError::Incompatible {
                stream: name,
                problems: problems.join("; "),
            });
        }
        if info.config.duplicate_window != wanted.duplicate_window {
            tracing::warn!(
                stream = %name,
                have = ?info.config.duplicate_window,
                want = ?wanted.duplicate_window,
                "event stream duplicate window differs from configuration; keeping the stream's"
            );
        }
        Ok(EventStore {
            js,
            stream,
            prefix: cfg.prefix,
            clock: crate::Clock::Wall,
        })
    }

    /// This store with `clock` as the time of the events it writes.
    pub fn with_clock(mut self, clock: crate::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The time the install runs on (see [`crate::clock`]).
    pub fn clock(&self) -> &crate::Clock {
        &self.clock
    }

    pub fn prefix(&self) -> &Prefix {
        &self.prefix
    }

    /// Appends one event to `subject` if the subject's last sequence is still
    /// `expected_last` (0: the subject must be empty), recording that
    /// sequence in `Closeloop-Previous-Sequence`. A repeated event id within
    /// the duplicate window returns the original sequence.
    pub async fn append(
        &self,
        subject: &str,
        expected_last: u64,
        envelope: &Envelope,
        payload: Bytes,
    ) -> Result<AppendOutcome, AppendError> {
        let mut h = envelope.to_headers();
        let expected = expected_last.to_string();
        h.insert(headers::EXPECTED_LAST_SUBJECT_SEQUENCE, expected.as_str());
        // The server checks the line above; this one stays with the event
        // for readers (Nats-* headers are the server's to keep or drop).
        h.insert(headers::PREVIOUS_SEQUENCE, expected.as_str());
        let conflict = || AppendError::Conflict {
            subject: subject.to_string(),
            expected: expected_last,
        };
        let ack = self
            .js
            .publish_with_headers(subject.to_string(), h, payload)
            .await
            .map_err(|e| match e.kind() {
                PublishErrorKind::WrongLastSequence => conflict(),
                _ => AppendError::Unavailable(e.to_string()),
            })?
            .await
            .map_err(|e| match e.kind() {
                PublishErrorKind::WrongLastSequence => conflict(),
                _ => AppendError::Unavailable(e.to_string()),
            })?;
        Ok(AppendOutcome {
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    /// Whether any event was ever appended to `subject` (one direct lookup,
    /// no replay): the authority when a read model may lag.
    pub async fn has_events(&self, subject: &str) -> Result<bool, StoreError> {
        Ok(self.last_sequence(subject).await?.is_some())
    }

    /// The stream sequence of the last event on `subject` (`None`: none yet).
    pub async fn last_sequence(&self, subject: &str) -> Result<Option<u64>, StoreError> {
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => Ok(Some(m.sequence)),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }

    /// How far durable consumer `name` of the event stream has handled the
    /// stream, as the server says now.
    pub async fn consumer_position(&self, name: &str) -> Result<ConsumerPosition, StoreError> {
        let info = self
            .stream
            .consumer_info(name)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(ConsumerPosition {
            ack_floor: info.ack_floor.stream_sequence,
            idle: info.num_pending == 0 && info.num_ack_pending == 0,
        })
    }

    /// Every event on one aggregate subject, oldest first.
    pub async fn read_aggregate(&self, subject: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let last = match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => m,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::Unavailable(e.to_string())),
        };
        // A short history (most aggregates: a response, a notification, a
        // ticket early in its life) is read backwards along each event's
        // `Closeloop-Previous-Sequence`, one direct get per event, instead
        // of creating a consumer on the server.
        if let Some(events) = self.walk_back(subject, raw_event(last.clone())).await? {
            return Ok(events);
        }
        let last = last.sequence;
        let read = async {
            let mut messages = self.follow(subject, 0).await?;
            let mut out = Vec::new();
            while let Some(ev) = messages.next().await {
                let ev = ev?;
                let seq = ev.sequence;
                out.push(ev);
                if seq >= last {
                    break;
                }
            }
            Ok(out)
        };
        tokio::time::timeout(READ_TIMEOUT, read)
            .await
            .map_err(|_| StoreError::Timeout {
                subject: subject.to_string(),
                secs: READ_TIMEOUT.as_secs(),
            })?
    }

    /// `last` and the events before it on `subject`, oldest first, when each
    /// names its predecessor and there are at most [`WALK_BACK`] of them;
    /// `None` otherwise (the caller reads with a consumer).
    async fn walk_back(
        &self,
        subject: &str,
        last: StoredEvent,
    ) -> Result<Option<Vec<StoredEvent>>, StoreError> {
        let mut out = vec![last];
        loop {
            let prev = match out
                .last()
                .and_then(|e| e.envelope.as_ref())
                .and_then(|e| e.previous_sequence)
            {
                Some(0) => break,
                Some(p) => p,
                None => return Ok(None),
            };
            if out.len() >= WALK_BACK {
                return Ok(None);
            }
            let m = self
                .stream
                .get_raw_message(prev)
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            if m.subject.as_str() != subject {
                // Not this aggregate's: trust only a consumer's reading.
                return Ok(None);
            }
            out.push(raw_event(m));
        }
        out.reverse();
        Ok(Some(out))
    }

    /// Follows every event matching `filter` with stream sequence greater than
    /// `after`, in order, forever. Backed by an ordered consumer, which
    /// recreates itself on gaps or reconnects and leaves no state on the server.
    /// How many events matching `filter` the stream holds after sequence
    /// `after`: a projector's lag (asks the server through a short-lived
    /// consumer, for admin commands; not for hot paths).
    pub async fn pending(&self, filter: &str, after: u64) -> Result<u64, StoreError> {
        let deliver_policy = if after == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            }
        };
        let mut consumer = self
            .stream
            .create_consumer(async_nats::jetstream::consumer::pull::Config {
                filter_subject: filter.to_string(),
                deliver_policy,
                inactive_threshold: std::time::Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let info = consumer
            .info()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let (pending, name) = (info.num_pending, info.name.clone());
        // Ephemeral: the server removes it anyway after 30 s unused.
        let _ = self.stream.delete_consumer(&name).await;
        Ok(pending)
    }

    pub async fn follow(
        &self,
        filter: &str,
        after: u64,
    ) -> Result<impl Stream<Item = Result<StoredEvent, StoreError>> + Send + use<>, StoreError>
    {
        let deliver_policy = if after == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            }
        };
        let consumer = self
            .stream
            .create_consumer(OrderedConfig {
                filter_subject: filter.to_string(),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(messages.map(|m| {
            let m = m.map_err(|e| StoreError::Unavailable(e.to_string()))?;
            crate::consumer::stored_event(&m).map_err(StoreError::Unavailable)
        }))
    }

    /// How many times the NATS connection has been (re)established. Readers
    /// backed by ephemeral consumers resubscribe when it changes: a restarted
    /// server has forgotten their consumers.
    pub fn connects(&self) -> u64 {
        self.js
            .client()
            .statistics()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The JetStream context, for services that need more than events.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }
}

/// How long [`ensure_stream`] keeps trying through transient failures.
pub const PROVISION_PATIENCE: Duration = Duration::from_secs(30);

/// Finds stream `cfg.name`, creating it when missing; the caller verifies
/// the configuration of what it gets. Safe when every role of an install
/// starts at the same instant: a stream another process created meanwhile
/// (`stream name already in use`, or `subjects overlap` with the stream being
/// created under the same name) is looked up again and returned, and
/// transient failures (JetStream not ready yet, timeouts) are retried with a
/// capped backoff for up to [`PROVISION_PATIENCE`]. Subjects owned by a
/// stream of another name are reported as soon as that is clear.
pub async fn ensure_stream(
    js: &jetstream::Context,
    cfg: stream::Config,
) -> Result<jetstream::stream::Stream, String> {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(20);
    let mut overlaps = 0;
    loop {
        let why = match js.get_stream(&cfg.name).await {
            Ok(s) => return Ok(s),
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    match js.create_stream(cfg.clone()).await {
                        Ok(s) => return Ok(s),
                        Err(e) => match e.kind() {
                            // Created by another process between our look-up and create.
                            CreateStreamErrorKind::JetStream(j)
                                if j.error_code() == ErrorCode::STREAM_NAME_EXIST =>
                            {
                                e.to_string()
                            }
                            // Either the same race (the other creator's stream
                            // owns the subjects: found on the next look-up), or a
                            // stream of another name owns them: not transient.
                            CreateStreamErrorKind::JetStream(j)
                                if j.error_code() == ErrorCode::STREAM_SUBJECT_OVERLAP =>
                            {
                                overlaps += 1;
                                if overlaps >= 5 {
                                    return Err(format!(
                                        "{e}: another stream owns subjects {:?}",
                                        cfg.subjects
                                    ));
                                }
                                e.to_string()
                            }
                            CreateStreamErrorKind::JetStream(_)
                            | CreateStreamErrorKind::EmptyStreamName
                            | CreateStreamErrorKind::InvalidStreamName
                            | CreateStreamErrorKind::DomainAndExternalSet => {
                                return Err(e.to_string());
                            }
                            _ => e.to_string(),
                        },
                    }
                }
                GetStreamErrorKind::EmptyName | GetStreamErrorKind::InvalidStreamName => {
                    return Err(e.to_string());
                }
                _ => e.to_string(),
            },
        };
        if started.elapsed() >= PROVISION_PATIENCE {
            return Err(format!(
                "{why} (still failing after {}s)",
                PROVISION_PATIENCE.as_secs()
            ));
        }
        tracing::debug!(stream = %cfg.name, reason = %why, "stream not provisioned yet; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

fn incompatibilities(want: &stream::Config, have: &stream::Config) -> Vec<String> {
    let mut p = Vec::new();
    for s in &want.subjects {
        if !have.subjects.contains(s) {
            p.push(format!(
                "subjects are {:?}, must include {s:?}",
                have.subjects
            ));
        }
    }
    if have.retention != RetentionPolicy::Limits {
        p.push(format!("retention is {:?}, must be limits", have.retention));
    }
    if have.storage != want.storage {
        p.push(format!("storage is {:?}, must be file", have.storage));
    }
    if !have.max_age.is_zero() {
        p.push(format!(
            "max_age is {:?}, must be unlimited (events are never expired)",
            have.max_age
        ));
    }
    if have.max_messages > 0 || have.max_messages_per_subject > 0 || have.max_bytes > 0 {
        p.push("message/byte limits are set; events must never be discarded".into());
    }
    if !have.deny_delete || !have.deny_purge {
        p.push(
            "deny_delete and deny_purge must both be set (events are never deleted or purged)"
                .into(),
        );
    }
    p
}
