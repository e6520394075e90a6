//! The analytics projections: one per aggregate type followed, each
//! writing its own fact tables in the transaction of its checkpoint (the
//! role feeds the five from one reader of the stream, a
//! [`closeloop_readmodel::Fanout`]):
//!
//! * [`TicketFacts`] writes `analytics_tickets` (what a ticket is when it opens)
//!   and `analytics_ticket_events` (each event's time, and the new owner on
//!   an opening or a reassignment);
//! * [`SlaFacts`] writes `analytics_sla_due` (the first runs' due times) and
//!   `analytics_sla_events` (warnings, breaches, escalations);
//! * [`ResponseFacts`] writes `analytics_responses` (every revision of every
//!   response, with its numeric answers);
//! * [`AccountFacts`] writes `analytics_accounts` (every version of every account);
//! * [`RoutingFacts`] writes `analytics_routing` (the responses whose
//!   routing decision matched no workflow: the views read no others).
//!
//! Rows are keyed by the event's stream sequence (or, for a ticket's or a
//! response's one row, its id: see `fact_tables.sql`) and inserted with
//! [`Insert`], which leaves out a row already there, so applying an event
//! twice changes nothing. A batch's rows go in with multi-row `INSERT`s (a
//! rebuild replays the whole stream through them).

use std::collections::BTreeMap;

use closeloop_contracts::directory::{AccountKind, RecordKind, decode_record};
use closeloop_contracts::feedback::FeedbackContract;
use closeloop_contracts::routing::{RoutingContract, RoutingEvent};
use closeloop_domain::feedback::{AnswerValue, FeedbackEvent};
use closeloop_domain::sla::{ClockKind, SlaEvent, StartCause};
use closeloop_domain::{TicketEvent, Timestamp};
use closeloop_eventstore::{Contract, Prefix, StoredEvent};
use closeloop_readmodel::{Insert, Prepared, Projection, ProjectionError};
use sqlx::AnyConnection;

use crate::tables::Tables;

/// Checkpoint names.
pub const TICKETS: &str = "analytics_tickets";
pub const SLA: &str = "analytics_sla";
pub const RESPONSES: &str = "analytics_responses";
pub const ACCOUNTS: &str = "analytics_accounts";
pub const ROUTING: &str = "analytics_routing";

/// Every projection of this role, by checkpoint name.
pub const ALL: [&str; 5] = [TICKETS, SLA, RESPONSES, ACCOUNTS, ROUTING];

/// The subjects projection `base` (a name of [`ALL`]) follows.
pub fn filter_of(base: &str, prefix: &Prefix) -> String {
    match base {
        TICKETS => prefix.aggregate_filter(closeloop_contracts::ticket::AGGREGATE),
        SLA => prefix.aggregate_filter(closeloop_contracts::sla::AGGREGATE),
        RESPONSES => prefix.aggregate_filter(closeloop_contracts::feedback::AGGREGATE),
        ACCOUNTS => prefix.aggregate_filter(AccountKind::TYPE),
        _ => prefix.aggregate_filter(closeloop_contracts::routing::AGGREGATE),
    }
}

/// The checkpoint name of projection `base` in generation `t`: a
/// generation's names are made once per process and projection (a rebuild
/// adds five), so they are leaked to give the `'static` name projectors
/// are registered under.
fn checkpoint_name(t: &Tables, base: &'static str) -> &'static str {
    if t.generation == 0 {
        base
    } else {
        Box::leak(t.checkpoint(base).into_boxed_str())
    }
}

fn poison(e: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Poison(e.to_string())
}

/// When `ev` was recorded (the install's clock), in µs.
fn recorded_at(ev: &StoredEvent) -> Result<i64, ProjectionError> {
    ev.envelope
        .as_ref()
        .map(|e| Timestamp::from_system_time(e.occurred_at).as_micros())
        .ok_or_else(|| poison("an event without its headers (no Closeloop-Occurred-At)"))
}

/// The aggregate id: the subject's last token.
fn aggregate_id(ev: &StoredEvent) -> &str {
    ev.subject.rsplit('.').next().unwrap_or_default()
}

/// Words in `text`: its runs of characters between whitespace.
pub fn words(text: &str) -> i64 {
    text.split_whitespace().count() as i64
}

/// The rows a projection writes for an event, table by table.
trait Rows {
    /// Empty inserts of the projection's tables.
    fn inserts(&self) -> Vec<Insert>;
    /// Adds `ev`'s rows to `into` (same order as [`Rows::inserts`]).
    fn rows(&self, ev: &StoredEvent, into: &mut [Insert]) -> Result<(), ProjectionError>;
}

async fn apply_one<R: Rows + Sync>(
    r: &R,
    conn: &mut AnyConnection,
    ev: &StoredEvent,
) -> Result<(), ProjectionError> {
    let mut ins = r.inserts();
    r.rows(ev, &mut ins)?;
    for i in ins {
        i.write(conn).await?;
    }
    Ok(())
}

/// A batch's rows, built before its transaction (see
/// [`Projection::prepare`]).
struct Built {
    ins: Vec<Insert>,
    poisoned: Vec<(u64, String)>,
}

/// Builds `events`' rows; `Err` with a database error (which pure row
/// building never raises, but the type allows).
fn build<R: Rows>(r: &R, events: &[StoredEvent]) -> Result<Built, sqlx::Error> {
    let mut ins = r.inserts();
    let mut poisoned = Vec::new();
    for ev in events {
        // An event's rows go in whole or not at all.
        let before: Vec<usize> = ins.iter().map(|i| i.rows.len()).collect();
        match r.rows(ev, &mut ins) {
            Ok(()) => {}
            Err(ProjectionError::Sql(e)) => return Err(e),
            Err(ProjectionError::Poison(reason)) => {
                for (i, n) in ins.iter_mut().zip(before) {
                    i.rows.truncate(n);
                }
                poisoned.push((ev.sequence, reason));
            }
        }
    }
    Ok(Built { ins, poisoned })
}

async fn write(built: Built, conn: &mut AnyConnection) -> Result<Vec<(u64, String)>, sqlx::Error> {
    for i in built.ins {
        i.write(conn).await?;
    }
    Ok(built.poisoned)
}

async fn apply_many<R: Rows + Sync>(
    r: &R,
    conn: &mut AnyConnection,
    events: &[StoredEvent],
) -> Result<Vec<(u64, String)>, sqlx::Error> {
    write(build(r, events)?, conn).await
}

macro_rules! projection {
    ($t:ident, $base:expr) => {
        impl $t {
            /// The projection into generation `t`'s tables.
            pub fn new(t: &Tables) -> Self {
                $t {
                    t: t.clone(),
                    name: checkpoint_name(t, $base),
                }
            }
        }

        impl Projection for $t {
            fn name(&self) -> &'static str {
                self.name
            }

            fn filter(&self, prefix: &Prefix) -> String {
                filter_of($base, prefix)
            }

            async fn apply(
                &self,
                conn: &mut AnyConnection,
                ev: &StoredEvent,
            ) -> Result<(), ProjectionError> {
                apply_one(self, conn, ev).await
            }

            async fn apply_batch(
                &self,
                conn: &mut AnyConnection,
                events: &[StoredEvent],
            ) -> Result<Vec<(u64, String)>, sqlx::Error> {
                apply_many(self, conn, events).await
            }

            fn prepare(&self, events: &[StoredEvent]) -> Option<Prepared> {
                build(self, events).ok().map(|b| Box::new(b) as Prepared)
            }

            async fn apply_prepared(
                &self,
                conn: &mut AnyConnection,
                prepared: Prepared,
            ) -> Result<Vec<(u64, String)>, sqlx::Error> {
                let built = prepared
                    .downcast::<Built>()
                    .expect("prepared by this projection");
                write(*built, conn).await
            }
        }
    };
}

pub struct TicketFacts {
    t: Tables,
    name: &'static str,
}

projection!(TicketFacts, TICKETS);

impl Rows for TicketFacts {
    fn inserts(&self) -> Vec<Insert> {
        vec![
            Insert::new(
                &self.t.tickets,
                &[
                    "ticket_id",
                    "program_id",
                    "workflow_id",
                    "feedback_id",
                    "account_id",
                    "opened_at",
                    "fc_target_secs",
                    "close_target_secs",
                    "require_opportunity",
                    "sequence",
                ],
            ),
            Insert::new(
                &self.t.ticket_events,
                &[
                    "ticket_id",
                    "sequence",
                    "at",
                    "kind",
                    "owner_email",
                    "root_cause_words",
                    "actions_words",
                    "opportunity",
                ],
            ),
        ]
    }

    fn rows(&self, ev: &StoredEvent, into: &mut [Insert]) -> Result<(), ProjectionError> {
        let r = closeloop_contracts::ticket::decode(ev).map_err(poison)?;
        let id = r.ticket_id.to_string();
        let at = r.occurred_at.as_micros();
        let seq = ev.sequence as i64;
        let owner = match &r.event {
            TicketEvent::Opened {
                account_id,
                owner_email,
                program_id,
                origin,
                plan,
                ..
            } => {
                let (_, feedback_id, workflow_id) = origin.parts();
                into[0].rows.push(vec![
                    id.clone().into(),
                    program_id.as_str().into(),
                    workflow_id.into(),
                    feedback_id.into(),
                    account_id.as_str().into(),
                    at.into(),
                    (plan.sla.first_contact_secs as i64).into(),
                    (plan.sla.close_within_secs as i64).into(),
                    i64::from(plan.require_opportunity).into(),
                    seq.into(),
                ]);
                owner_email.clone()
            }
            TicketEvent::OwnerReassigned {
                new_owner_email, ..
            } => new_owner_email.clone(),
            // The owner does not change: readers keep the last one named.
            _ => String::new(),
        };
        let (root_cause_words, actions_words, opportunity) = match &r.event {
            TicketEvent::Closed {
                root_cause,
                actions_taken,
                opportunity,
                ..
            } => (
                words(root_cause),
                words(actions_taken),
                opportunity.is_some(),
            ),
            _ => (0, 0, false),
        };
        into[1].rows.push(vec![
            id.into(),
            seq.into(),
            at.into(),
            r.event.kind().into(),
            owner.into(),
            root_cause_words.into(),
            actions_words.into(),
            i64::from(opportunity).into(),
        ]);
        Ok(())
    }
}

pub struct SlaFacts {
    t: Tables,
    name: &'static str,
}

projection!(SlaFacts, SLA);

impl Rows for SlaFacts {
    fn inserts(&self) -> Vec<Insert> {
        vec![
            Insert::new(
                &self.t.sla_due,
                &["ticket_id", "fc_due", "close_due", "at", "sequence"],
            ),
            Insert::new(
                &self.t.sla_events,
                &["ticket_id", "sequence", "at", "kind", "clock", "detail"],
            ),
        ]
    }

    fn rows(&self, ev: &StoredEvent, into: &mut [Insert]) -> Result<(), ProjectionError> {
        let r = closeloop_contracts::sla::decode(ev).map_err(poison)?;
        let id = r.ticket_id.to_string();
        let at = r.occurred_at.as_micros();
        let (kind, clock, detail) = match &r.event {
            SlaEvent::ClocksStarted {
                cause: StartCause::Opened,
                clocks,
                ..
            } => {
                let due = |k: ClockKind| {
                    clocks
                        .iter()
                        .find(|c| c.kind == k && c.run == 1)
                        .map(|c| c.due_at.as_micros())
                };
                if let (Some(fc), Some(close)) =
                    (due(ClockKind::FirstContact), due(ClockKind::Closure))
                {
                    // Rows go in in order: a second one for the ticket (in
                    // the same statement or later) is dropped as a conflict.
                    into[0].rows.push(vec![
                        id.into(),
                        fc.into(),
                        close.into(),
                        at.into(),
                        (ev.sequence as i64).into(),
                    ]);
                }
                return Ok(());
            }
            SlaEvent::Warned { kind, pct, .. } => ("warned", kind.as_str(), i64::from(*pct)),
            SlaEvent::Breached { kind, .. } => ("breached", kind.as_str(), 0),
            SlaEvent::Escalated { level, .. } => ("escalated", "", i64::from(*level)),
            _ => return Ok(()),
        };
        into[1].rows.push(vec![
            id.into(),
            (ev.sequence as i64).into(),
            at.into(),
            kind.into(),
            clock.into(),
            detail.into(),
        ]);
        Ok(())
    }
}

/// A response's numeric answers (numbers and booleans as 0/1), as JSON.
pub fn numeric_answers(answers: &BTreeMap<String, AnswerValue>) -> String {
    let mut out = serde_json::Map::new();
    for (k, v) in answers {
        let n = match v {
            AnswerValue::Int(i) => serde_json::Value::from(*i),
            AnswerValue::Float(f) => serde_json::Value::from(*f),
            AnswerValue::Bool(b) => serde_json::Value::from(u8::from(*b)),
            AnswerValue::Text(_) => continue,
        };
        out.insert(k.clone(), n);
    }
    serde_json::Value::Object(out).to_string()
}

pub struct ResponseFacts {
    t: Tables,
    name: &'static str,
}

projection!(ResponseFacts, RESPONSES);

impl Rows for ResponseFacts {
    fn inserts(&self) -> Vec<Insert> {
        vec![Insert::new(
            &self.t.responses,
            &[
                "feedback_id",
                "sequence",
                "at",
                "applied",
                "revision_key",
                "response_id",
                "program_id",
                "account_id",
                "submitted_at",
                "answers",
            ],
        )]
    }

    fn rows(&self, ev: &StoredEvent, into: &mut [Insert]) -> Result<(), ProjectionError> {
        let r = FeedbackContract::decode(ev).map_err(poison)?;
        let at = recorded_at(ev)?;
        let applied = !matches!(r.event.value, FeedbackEvent::Superseded { .. });
        let f = r.event.value.feedback();
        into[0].rows.push(vec![
            aggregate_id(ev).into(),
            (ev.sequence as i64).into(),
            at.into(),
            i64::from(applied).into(),
            f.revised().as_micros().into(),
            f.response_id.as_str().into(),
            f.program.as_str().into(),
            f.account_id.as_str().into(),
            f.submitted_at.as_micros().into(),
            numeric_answers(&f.answers).into(),
        ]);
        Ok(())
    }
}

pub struct AccountFacts {
    t: Tables,
    name: &'static str,
}

projection!(AccountFacts, ACCOUNTS);

impl Rows for AccountFacts {
    fn inserts(&self) -> Vec<Insert> {
        vec![Insert::new(
            &self.t.accounts,
            &["account_id", "sequence", "at", "region", "segment", "team"],
        )]
    }

    fn rows(&self, ev: &StoredEvent, into: &mut [Insert]) -> Result<(), ProjectionError> {
        let (a, _) = decode_record::<AccountKind>(ev).map_err(poison)?;
        let at = recorded_at(ev)?;
        let team: serde_json::Map<String, serde_json::Value> = a
            .team
            .iter()
            .map(|(role, email)| (role.clone(), email.as_str().into()))
            .collect();
        into[0].rows.push(vec![
            a.id.as_str().into(),
            (ev.sequence as i64).into(),
            at.into(),
            a.region.as_str().into(),
            a.segment.as_str().into(),
            serde_json::Value::Object(team).to_string().into(),
        ]);
        Ok(())
    }
}

pub struct RoutingFacts {
    t: Tables,
    name: &'static str,
}

projection!(RoutingFacts, ROUTING);

impl Rows for RoutingFacts {
    fn inserts(&self) -> Vec<Insert> {
        vec![Insert::new(
            &self.t.routing,
            &["feedback_id", "unmatched", "at", "sequence"],
        )]
    }

    fn rows(&self, ev: &StoredEvent, into: &mut [Insert]) -> Result<(), ProjectionError> {
        let r = RoutingContract::decode(ev).map_err(poison)?;
        // Revisions attached later change nothing routing decided, and a
        // decision that matched a workflow is what views assume: only the
        // unmatched are written (a row per response would be 250 000 inserts
        // at random places of the key's index for a year of a large install).
        let RoutingEvent::Decided(d) = &r.event else {
            return Ok(());
        };
        if !d.unmatched {
            return Ok(());
        }
        into[0].rows.push(vec![
            aggregate_id(ev).into(),
            1_i64.into(),
            recorded_at(ev)?.into(),
            (ev.sequence as i64).into(),
        ]);
        Ok(())
    }
}
