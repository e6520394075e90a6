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
//! kept in a JetStream key-value bucket (`<PREFIX>_CLOCK`, key `now`), each
//! process watches it, and moving it is a compare-and-set on the key, so
//! processes never disagree for longer than a watch update takes.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, kv};
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
    kv: Option<kv::Store>,
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

/// `<PREFIX>_CLOCK`: the bucket of an install's simulated clock.
pub fn bucket(prefix: &Prefix) -> String {
    format!(
        "{}_CLOCK",
        prefix.as_str().to_ascii_uppercase().replace('-', "_")
    )
}

const KEY: &str = "now";

impl Clock {
    /// A simulated clock that stays in this process (unit tests).
    pub fn simulated_local(start: SystemTime) -> Clock {
        Clock::Simulated(Arc::new(Simulated {
            now: watch::channel(micros(start)).0,
            kv: None,
        }))
    }

    /// The install's simulated clock: joins the time kept in the bucket,
    /// or starts it at `start` (default: the wall clock's time) if no
    /// process has yet. Follows every later move until the process exits.
    pub async fn simulated(
        js: &jetstream::Context,
        prefix: &Prefix,
        start: Option<SystemTime>,
    ) -> Result<Clock, ClockError> {
        let unavailable = |e: &dyn std::fmt::Display| ClockError::Unavailable(e.to_string());
        let store = match js.get_key_value(bucket(prefix)).await {
            Ok(s) => s,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: bucket(prefix),
                    description: "closeloop's simulated clock (serve --clock simulated)".into(),
                    history: 1,
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| unavailable(&e))?,
        };
        let want = micros(start.unwrap_or_else(SystemTime::now));
        // The first process sets the time; later ones join it.
        let _ = store.create(KEY, want.to_string().into()).await;
        let now = read(&store).await?.map_or(want, |(m, _)| m);
        let (tx, _) = watch::channel(now);
        let sim = Arc::new(Simulated {
            now: tx,
            kv: Some(store.clone()),
        });
        let weak = Arc::downgrade(&sim);
        tokio::spawn(async move {
            loop {
                let Ok(mut updates) = store.watch(KEY).await else {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                };
                while let Some(Ok(entry)) = updates.next().await {
                    let Some(sim) = weak.upgrade() else { return };
                    if let Some(m) = std::str::from_utf8(&entry.value)
                        .ok()
                        .and_then(|v| v.parse::<i64>().ok())
                    {
                        sim.now.send_if_modified(|cur| {
                            let moved = m > *cur;
                            if moved {
                                *cur = m;
                            }
                            moved
                        });
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
        let to = match &s.kv {
            None => {
                let to = next(*s.now.borrow())?;
                s.now.send_replace(to);
                to
            }
            Some(store) => loop {
                let (now, revision) = read(store)
                    .await?
                    .ok_or_else(|| ClockError::Unavailable("the clock's key is gone".into()))?;
                let to = next(now)?;
                // Compare-and-set: a concurrent move makes this one retry
                // on top of it.
                if store
                    .update(KEY, to.to_string().into(), revision)
                    .await
                    .is_ok()
                {
                    break to;
                }
            },
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

async fn read(store: &kv::Store) -> Result<Option<(i64, u64)>, ClockError> {
    let entry = store
        .entry(KEY)
        .await
        .map_err(|e| ClockError::Unavailable(e.to_string()))?;
    Ok(entry.and_then(|e| {
        std::str::from_utf8(&e.value)
            .ok()?
            .parse::<i64>()
            .ok()
            .map(|m| (m, e.revision))
    }))
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
