//! The time closeloop runs on.
//!
//! In production it is the wall clock. For tests, demos and what-if runs it
//! can be a **simulated** clock (`closeloop serve --clock simulated`): it
//! stands still until an operator moves it (`closeloop admin clock set` /
//! `advance`), only forwards. Every role takes its time from the [`Clock`]:
//! the `occurred_at` of the events commands write, SLA due times, timers,
//! reports, notification schedules.
//!
//! A simulated clock is shared by every process of an install: its time is
//! kept in a small stream (`<PREFIX>_CLOCK`, subject `<prefix>.clock`, one
//! message per move), each process follows it, and moving it is a
//! compare-and-set (`Nats-Expected-Last-Subject-Sequence`), so processes
//! never disagree for longer than a delivery takes. (A stream, not a
//! key-value bucket: the KV API of the client does not work with NATS 2.9.)

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, stream};
use futures::StreamExt;
use tokio::sync::watch;

use crate::Prefix;

/// Why the clock could not be read or moved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    #[error("this closeloop runs on the wall clock; start it with --clock simulated to move time")]
    NotSimulated,
    #[error("the simulated clock only moves forward: it is {now}, {to} is earlier")]
    Backwards { now: String, to: String },
    #[error("the simulated clock's bucket is unavailable: {0}")]
    Unavailable(String),
}

/// The time source. Cheap to clone.
#[derive(Clone, Default)]
pub enum Clock {
    #[default]
    Wall,
    Simulated(Arc<Simulated>),
}

/// A simulated clock's state in this process.
pub struct Simulated {
    now: watch::Sender<i64>,
    shared: Option<Shared>,
}

/// Where an install's simulated clock is kept.
struct Shared {
    js: jetstream::Context,
    stream: jetstream::stream::Stream,
    subject: String,
}

fn micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

fn from_micros(m: i64) -> SystemTime {
    if m >= 0 {
        UNIX_EPOCH + Duration::from_micros(m as u64)
    } else {
        UNIX_EPOCH - Duration::from_micros(m.unsigned_abs())
    }
}

fn show(m: i64) -> String {
    humantime::format_rfc3339_micros(from_micros(m)).to_string()
}

/// `<PREFIX>_CLOCK`: the stream of an install's simulated clock.
pub fn stream_name(prefix: &Prefix) -> String {
    format!(
        "{}_CLOCK",
        prefix.as_str().to_ascii_uppercase().replace('-', "_")
    )
}

/// Its subject.
pub fn subject(prefix: &Prefix) -> String {
    format!("{prefix}.clock")
}

impl Clock {
    /// A simulated clock that stays in this process (unit tests).
    pub fn simulated_local(start: SystemTime) -> Clock {
        Clock::Simulated(Arc::new(Simulated {
            now: watch::channel(micros(start)).0,
            shared: None,
        }))
    }

    /// The install's simulated clock: joins the time kept in its stream,
    /// or starts it at `start` (default: the wall clock's time) if no
    /// process has yet. Follows every later move until the process exits.
    pub async fn simulated(
        js: &jetstream::Context,
        prefix: &Prefix,
        start: Option<SystemTime>,
    ) -> Result<Clock, ClockError> {
        let stream = crate::store::ensure_stream(
            js,
            stream::Config {
                name: stream_name(prefix),
                description: Some(
                    "closeloop's simulated clock (serve --clock simulated): one message per move"
                        .into(),
                ),
                subjects: vec![subject(prefix)],
                storage: stream::StorageType::File,
                max_messages_per_subject: 1000,
                allow_direct: true,
                ..Default::default()
            },
        )
        .await
        .map_err(ClockError::Unavailable)?;
        let shared = Shared {
            js: js.clone(),
            stream,
            subject: subject(prefix),
        };
        let want = micros(start.unwrap_or_else(SystemTime::now));
        // The first process sets the time; later ones join it.
        let now = match shared.read().await? {
            Some((m, _)) => m,
            None => match shared.write(want, 0).await {
                Ok(()) => want,
                Err(_) => shared.read().await?.map_or(want, |(m, _)| m),
            },
        };
        let (tx, _) = watch::channel(now);
        let follow = shared.stream.clone();
        let filter = shared.subject.clone();
        let sim = Arc::new(Simulated {
            now: tx,
            shared: Some(shared),
        });
        let weak = Arc::downgrade(&sim);
        tokio::spawn(async move {
            loop {
                let consumer = follow
                    .create_consumer(jetstream::consumer::pull::OrderedConfig {
                        filter_subject: filter.clone(),
                        deliver_policy: jetstream::consumer::DeliverPolicy::Last,
                        ..Default::default()
                    })
                    .await;
                if let Ok(consumer) = consumer
                    && let Ok(mut messages) = consumer.messages().await
                {
                    while let Some(Ok(m)) = messages.next().await {
                        let Some(sim) = weak.upgrade() else { return };
                        if let Some(v) = std::str::from_utf8(&m.payload)
                            .ok()
                            .and_then(|v| v.trim().parse::<i64>().ok())
                        {
                            sim.now.send_if_modified(|cur| {
                                let moved = v > *cur;
                                if moved {
                                    *cur = v;
                                }
                                moved
                            });
                        }
                    }
                }
                if weak.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(Clock::Simulated(sim))
    }

    /// `wall` or `simulated`.
    pub fn kind(&self) -> &'static str {
        match self {
            Clock::Wall => "wall",
            Clock::Simulated(_) => "simulated",
        }
    }

    pub fn now(&self) -> SystemTime {
        match self {
            Clock::Wall => SystemTime::now(),
            Clock::Simulated(s) => from_micros(*s.now.borrow()),
        }
    }

    /// Resolves when the clock reaches `t` (at once if it has). A
    /// simulated clock reaches it only when moved there.
    pub async fn sleep_until(&self, t: SystemTime) {
        match self {
            Clock::Wall => {
                if let Ok(d) = t.duration_since(SystemTime::now()) {
                    tokio::time::sleep(d).await;
                }
            }
            Clock::Simulated(s) => {
                let target = micros(t);
                let mut rx = s.now.subscribe();
                let _ = rx.wait_for(|now| *now >= target).await;
            }
        }
    }

    /// Resolves when a simulated clock moves (never for the wall clock).
    pub async fn moved(&self) {
        match self {
            Clock::Wall => std::future::pending().await,
            Clock::Simulated(s) => {
                let mut rx = s.now.subscribe();
                rx.borrow_and_update();
                let _ = rx.changed().await;
            }
        }
    }

    /// Sets a simulated clock to `to` (never backwards).
    pub async fn set(&self, to: SystemTime) -> Result<SystemTime, ClockError> {
        let to = micros(to);
        self.update(|now| {
            if to < now {
                Err(ClockError::Backwards {
                    now: show(now),
                    to: show(to),
                })
            } else {
                Ok(to)
            }
        })
        .await
    }

    /// Moves a simulated clock forward by `by`.
    pub async fn advance(&self, by: Duration) -> Result<SystemTime, ClockError> {
        let by = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.update(|now| Ok(now.saturating_add(by))).await
    }

    async fn update(
        &self,
        next: impl Fn(i64) -> Result<i64, ClockError>,
    ) -> Result<SystemTime, ClockError> {
        let Clock::Simulated(s) = self else {
            return Err(ClockError::NotSimulated);
        };
        let to = match &s.shared {
            None => {
                let to = next(*s.now.borrow())?;
                s.now.send_replace(to);
                to
            }
            Some(shared) => {
                let mut attempt = 0;
                loop {
                    let (now, sequence) = shared.read().await?.ok_or_else(|| {
                        ClockError::Unavailable("the clock's stream has no time".into())
                    })?;
                    let to = next(now)?;
                    // Compare-and-set: a concurrent move makes this one
                    // retry on top of it.
                    match shared.write(to, sequence).await {
                        Ok(()) => break to,
                        Err(e) if attempt >= 20 => return Err(e),
                        Err(_) => attempt += 1,
                    }
                }
            }
        };
        s.now.send_if_modified(|cur| {
            let moved = to > *cur;
            if moved {
                *cur = to;
            }
            moved
        });
        Ok(from_micros(to))
    }
}

impl Shared {
    /// The time and the stream sequence of its message; `None` before any.
    async fn read(&self) -> Result<Option<(i64, u64)>, ClockError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        match self
            .stream
            .get_last_raw_message_by_subject(&self.subject)
            .await
        {
            Ok(m) => Ok(std::str::from_utf8(&m.payload)
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .map(|v| (v, m.sequence))),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(ClockError::Unavailable(e.to_string())),
        }
    }

    /// Writes `to` if the last time is still at stream sequence `expected`
    /// (0: none yet).
    async fn write(&self, to: i64, expected: u64) -> Result<(), ClockError> {
        let mut h = async_nats::HeaderMap::new();
        h.insert(
            crate::headers::EXPECTED_LAST_SUBJECT_SEQUENCE,
            expected.to_string().as_str(),
        );
        self.js
            .publish_with_headers(self.subject.clone(), h, to.to_string().into())
            .await
            .map_err(|e| ClockError::Unavailable(e.to_string()))?
            .await
            .map_err(|e| ClockError::Unavailable(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_simulated_clock_stands_still_and_only_moves_forward() {
        let start = UNIX_EPOCH + Duration::from_secs(1_767_600_000);
        let c = Clock::simulated_local(start);
        assert_eq!(c.now(), start);
        let woken = tokio::spawn({
            let c = c.clone();
            async move { c.sleep_until(start + Duration::from_secs(3600)).await }
        });
        tokio::task::yield_now().await;
        c.advance(Duration::from_secs(1800)).await.unwrap();
        tokio::task::yield_now().await;
        assert!(!woken.is_finished());
        c.advance(Duration::from_secs(1800)).await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), woken)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            c.set(start).await,
            Err(ClockError::Backwards { .. })
        ));
        assert_eq!(
            Clock::Wall.advance(Duration::from_secs(1)).await,
            Err(ClockError::NotSimulated)
        );
    }
}
