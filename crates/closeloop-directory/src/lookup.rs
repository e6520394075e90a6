//! The directory as other components read it.
//!
//! The views answer first; a record a view does not have yet (an import
//! that finished a moment ago, or a process that projects no directory
//! view at all) is looked up in the record's own events, which are the
//! authority. Records are upserted, never deleted, so a record found once
//! stays found.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use closeloop_eventstore::EventStore;
use closeloop_readmodel::Db;

use crate::records::{AccountKind, PersonKind, RecordKey, RecordKind, TeamKind};

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("directory view unavailable: {0}")]
    View(#[from] sqlx::Error),
    #[error("directory events unavailable: {0}")]
    Events(#[from] closeloop_eventstore::StoreError),
}

/// Which records exist. Cheap to clone.
#[derive(Clone)]
pub struct DirectoryLookup {
    db: Db,
    store: EventStore,
    /// Records found before, as `<type>/<natural id>`: records are never
    /// deleted, so a positive answer stays true and costs no I/O again.
    known: Arc<Mutex<HashSet<String>>>,
}

/// Records remembered as found (the set is emptied when full).
const KNOWN_MAX: usize = 100_000;

/// A record kind whose view can answer "is it there?".
pub trait Viewed: RecordKind {
    /// One row if the record with natural id `$1` is in its view.
    const EXISTS_SQL: &'static str;
}

impl Viewed for AccountKind {
    const EXISTS_SQL: &'static str = "SELECT 1 FROM accounts WHERE id = $1";
}

impl Viewed for PersonKind {
    const EXISTS_SQL: &'static str = "SELECT 1 FROM people WHERE email = $1";
}

impl Viewed for TeamKind {
    const EXISTS_SQL: &'static str = "SELECT 1 FROM teams WHERE id = $1";
}

impl DirectoryLookup {
    pub fn new(db: Db, store: EventStore) -> Self {
        DirectoryLookup {
            db,
            store,
            known: Arc::default(),
        }
    }

    /// Whether a record of kind `K` with `natural_id` (an account id, a
    /// person's normalised e-mail, a team id) is in the directory.
    pub async fn exists<K: Viewed>(&self, natural_id: &str) -> Result<bool, LookupError> {
        let memo = format!("{}/{natural_id}", K::TYPE);
        if self.known.lock().expect("known").contains(&memo) {
            return Ok(true);
        }
        let found = sqlx::query(K::EXISTS_SQL)
            .bind(natural_id)
            .fetch_optional(self.db.pool())
            .await?
            .is_some()
            || {
                let key = RecordKey::of::<K>(natural_id);
                let subject = self
                    .store
                    .prefix()
                    .aggregate_subject(K::TYPE, &key.to_string());
                self.store.has_events(&subject).await?
            };
        if found {
            let mut known = self.known.lock().expect("known");
            if known.len() >= KNOWN_MAX {
                known.clear();
            }
            known.insert(memo);
        }
        Ok(found)
    }
}
