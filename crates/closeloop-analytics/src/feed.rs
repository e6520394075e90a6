//! The rows this process's fact projections committed, handed to the
//! [`crate::cache`] so it need not read them back from the tables.
//!
//! The cache keeps the facts of the active generation up to date by
//! reading, per projection, the rows with `synced < sequence <= checkpoint`.
//! Read back row by row through sqlx, that was about a quarter of a
//! rebuild's CPU. A projection of this process that wrote a batch already
//! holds its rows: it leaves a copy here, and the cache takes it instead of
//! the read when the batch follows on exactly from what the cache holds.
//! Anything else (a batch another process committed, one whose rows were
//! not all inserted, one the cache is no longer at, or one dropped because
//! the cache fell behind) is read from the tables as before, so the facts
//! are the same either way (a test compares the two).
//!
//! A batch goes through three steps: [`Feed::forget`] when its projection
//! prepares it (an attempt before it, rolled back, is dropped);
//! [`Feed::written`] inside its transaction, once its rows are in and none
//! was left out as a conflict; [`Feed::committed`] after the commit, with
//! the checkpoint before it. Only committed batches are taken.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use closeloop_readmodel::Val;

/// Rows kept per projection until the cache takes them; beyond, the oldest
/// batches are dropped (the cache reads their rows from the table
/// instead), the newest always kept. The cache takes them every second
/// when following live (many small batches) and every 50 ms while the
/// projections catch up (a batch or two of up to 4096 events each).
const KEPT_ROWS: usize = 8192;

/// One table's rows of a batch: its columns and each row's values.
pub type TableRows = (&'static [&'static str], Vec<Vec<Val>>);

/// A batch a projection wrote.
#[derive(Debug)]
pub struct Batch {
    /// The projection's checkpoint before the batch; `None` until its
    /// transaction committed.
    after: Option<u64>,
    /// The checkpoint the batch committed.
    pub last: u64,
    /// Its rows, table by table in the projection's order.
    pub tables: Vec<TableRows>,
}

impl Batch {
    fn rows(&self) -> usize {
        self.tables.iter().map(|(_, r)| r.len()).sum()
    }
}

/// Batches by projection (checkpoint name), shared by the projections and
/// the cache of one process.
#[derive(Debug)]
pub struct Feed {
    /// The generation the cache holds: projections of another keep nothing.
    generation: AtomicI64,
    batches: Mutex<HashMap<String, VecDeque<Batch>>>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            generation: AtomicI64::new(-1),
            batches: Mutex::default(),
        }
    }
}

impl Feed {
    /// Whether the cache wants rows of generation `g`.
    pub fn wants(&self, g: i64) -> bool {
        self.generation.load(Ordering::Relaxed) == g
    }

    /// The cache holds generation `g` now; batches of others are dropped.
    pub fn holds(&self, g: i64) {
        if self.generation.swap(g, Ordering::Relaxed) != g {
            self.batches.lock().expect("feed").clear();
        }
    }

    /// Drops an uncommitted batch of `name` ending at `last` (an attempt
    /// that was rolled back and is being made again).
    pub fn forget(&self, name: &str, last: u64) {
        if let Some(q) = self.batches.lock().expect("feed").get_mut(name) {
            q.retain(|b| b.after.is_some() || b.last != last);
        }
    }

    /// Keeps the rows of `name`'s batch ending at `last`, written in its
    /// transaction (every one inserted), until it commits.
    pub fn written(&self, name: &str, last: u64, tables: Vec<TableRows>) {
        let mut all = self.batches.lock().expect("feed");
        let q = all.entry(name.to_string()).or_default();
        q.retain(|b| b.after.is_some() || b.last != last);
        q.push_back(Batch {
            after: None,
            last,
            tables,
        });
        let mut kept: usize = q.iter().map(Batch::rows).sum();
        while kept > KEPT_ROWS && q.len() > 1 {
            kept -= q.pop_front().map_or(0, |b| b.rows());
        }
    }

    /// `name`'s batch ending at `last` committed, moving its checkpoint from
    /// `after`.
    pub fn committed(&self, name: &str, after: u64, last: u64) {
        if let Some(q) = self.batches.lock().expect("feed").get_mut(name)
            && let Some(b) = q.iter_mut().find(|b| b.after.is_none() && b.last == last)
        {
            b.after = Some(after);
        }
    }

    /// The committed batches of `name` that follow on from `synced`, one
    /// after the other, up to `upto` (the checkpoint the cache reads to),
    /// and the position after them. Batches the cache has passed are
    /// dropped; one that starts beyond `synced` stays (the cache reads the
    /// gap first, and may take it next time).
    pub fn take(&self, name: &str, synced: i64, upto: i64) -> (Vec<Batch>, i64) {
        let mut all = self.batches.lock().expect("feed");
        let Some(q) = all.get_mut(name) else {
            return (Vec::new(), synced);
        };
        let mut at = synced;
        let mut out = Vec::new();
        while let Some(b) = q.front() {
            let last = b.last as i64;
            match b.after.map(|a| a as i64) {
                _ if last <= at => {
                    q.pop_front();
                }
                Some(a) if a == at && last <= upto => {
                    out.extend(q.pop_front());
                    at = last;
                }
                // Begun before what the cache holds: its rows are partly
                // there, so the table gives the rest.
                Some(a) if a < at => {
                    q.pop_front();
                }
                _ => break,
            }
        }
        (out, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: i64) -> Vec<TableRows> {
        vec![(&["sequence"], vec![vec![Val::I(n)]])]
    }

    #[test]
    fn only_committed_batches_that_follow_on_are_taken() {
        let f = Feed::default();
        f.holds(0);
        assert!(f.wants(0) && !f.wants(1));
        f.written("p", 10, rows(10));
        // Not committed yet.
        assert_eq!(f.take("p", 0, 10).1, 0);
        f.committed("p", 0, 10);
        f.written("p", 20, rows(20));
        f.committed("p", 10, 20);
        f.written("p", 30, rows(30));
        // 30 is not committed, and the cache reads only up to 25.
        f.committed("p", 20, 30);
        let (taken, at) = f.take("p", 0, 25);
        assert_eq!(
            (taken.iter().map(|b| b.last).collect::<Vec<_>>(), at),
            (vec![10, 20], 20)
        );
        assert_eq!(f.take("p", 20, 30).1, 30);
    }

    #[test]
    fn a_gap_is_read_from_the_table_first_and_what_was_passed_is_dropped() {
        let f = Feed::default();
        f.holds(0);
        f.written("p", 20, rows(20));
        f.committed("p", 10, 20);
        // The cache is at 5: (5, 10] is in the table only.
        assert_eq!(f.take("p", 5, 40).1, 5);
        // It read up to 10 from the table: the batch follows on.
        assert_eq!(f.take("p", 10, 40).1, 20);
        // A batch the cache read past, or started reading, is dropped.
        f.written("p", 30, rows(30));
        f.committed("p", 20, 30);
        f.written("p", 40, rows(40));
        f.committed("p", 30, 40);
        let (taken, at) = f.take("p", 35, 40);
        assert!(taken.is_empty());
        assert_eq!(at, 35);
        assert!(f.take("p", 35, 50).0.is_empty());
    }

    #[test]
    fn a_rolled_back_attempt_is_forgotten_and_the_queue_is_bounded() {
        let f = Feed::default();
        f.holds(0);
        f.written("p", 10, rows(10));
        f.forget("p", 10);
        f.committed("p", 0, 10);
        assert!(f.take("p", 0, 10).0.is_empty());
        let big = |n: usize| vec![(&["sequence"][..], vec![vec![Val::I(0)]; n])];
        for i in 1..=10u64 {
            f.written("p", i * 10, big(KEPT_ROWS / 4));
            f.committed("p", (i - 1) * 10, i * 10);
        }
        // The oldest were dropped: the cache reads them from the table.
        assert_eq!(f.take("p", 0, 100).1, 0);
        assert_eq!(f.take("p", 60, 100).1, 100);
        // A batch larger than the bound is kept whole.
        f.written("p", 200, big(KEPT_ROWS * 2));
        f.committed("p", 100, 200);
        assert_eq!(f.take("p", 100, 200).1, 200);
        // Another generation: nothing kept.
        f.written("p", 110, rows(11));
        f.holds(1);
        f.committed("p", 100, 110);
        assert!(f.take("p", 100, 110).0.is_empty());
    }
}
