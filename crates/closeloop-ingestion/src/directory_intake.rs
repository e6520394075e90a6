//! Directory records published on NATS: `<prefix>.intake.directory`.
//!
//! Each message is one JSON record, `{"kind": "account", "id": ..., "team":
//! {"csm": ...}}`, `{"kind": "person", "email": ...}` or `{"kind": "team",
//! "id": ..., "members": [...]}` (the fields of `closeloop directory import`).
//! Invalid records are parked in the dead-letter stream with the reason.

use async_nats::jetstream;
use closeloop_directory::rows::DirectoryRow;
use closeloop_directory::writer::{DirectoryWriter, WriteError};
use closeloop_eventstore::Prefix;

use crate::nats::{Handler, Verdict};

pub fn directory_subject(prefix: &Prefix) -> String {
    format!("{prefix}.intake.directory")
}

/// Upserts directory records from intake messages.
pub struct DirectoryIntake {
    pub writer: DirectoryWriter,
}

impl Handler for DirectoryIntake {
    async fn handle(&self, msg: &jetstream::Message) -> Verdict {
        let row: DirectoryRow = match serde_json::from_slice(&msg.payload) {
            Ok(r) => r,
            Err(e) => {
                return Verdict::DeadLetter(format!(
                    "not a directory record ({{\"kind\": \"account\"|\"person\"|\"team\", ...}}): {e}"
                ));
            }
        };
        let carried = crate::nats::carried(msg);
        let ctx = |rid: &str| carried.context(rid, String::new());
        let result = match &row {
            DirectoryRow::Account(a) => self.writer.account(&a.to_proto(), None, ctx).await,
            DirectoryRow::Person(p) => self.writer.person(&p.to_proto(), None, ctx).await,
            DirectoryRow::Team(t) => self.writer.team(&t.to_proto(), None, ctx).await,
        };
        match result {
            Ok(_) => Verdict::Done,
            Err(WriteError::Invalid(v)) => Verdict::DeadLetter(
                v.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            // Intake writes with content-derived request ids: never reused.
            Err(WriteError::Store(closeloop_eventstore::ExecuteError::Rule(r))) => {
                Verdict::DeadLetter(r.to_string())
            }
            Err(WriteError::Store(e)) => Verdict::Retry(e.to_string()),
        }
    }
}
