//! The analytics projections: one per aggregate type followed (a NATS 2.9
//! consumer follows one subject filter), each writing its own fact tables
//! in the transaction of its checkpoint:
//!
//! * [`TicketFacts`] writes `analytics_tickets` (what a ticket is when it opens)
//!   and `analytics_ticket_events` (each event's time, and the new owner on
//!   an opening or a reassignment);
//! * [`SlaFacts`] writes `analytics_sla_due` (the first runs' due times) and
//!   `analytics_sla_events` (warnings, breaches, escalations);
//! * [`ResponseFacts`] writes `analytics_responses` (every revision of every
//!   response, with its numeric answers);
//! * [`AccountFacts`] writes `analytics_accounts` (every version of every account);
//! * [`RoutingFacts`] writes `analytics_routing` (whether each response's
//!   routing decision matched no workflow).
//!
//! Rows are keyed by the event's stream sequence and inserted with
//! `ON CONFLICT DO NOTHING`, so applying an event twice changes nothing.

use std::collections::BTreeMap;

use closeloop_contracts::directory::{AccountKind, RecordKind, decode_record};
use closeloop_contracts::feedback::FeedbackContract;
use closeloop_contracts::routing::{RoutingContract, RoutingEvent};
use closeloop_domain::feedback::{AnswerValue, FeedbackEvent};
use closeloop_domain::sla::{ClockKind, SlaEvent, StartCause};
use closeloop_domain::{TicketEvent, Timestamp};
use closeloop_eventstore::{Contract, Prefix, StoredEvent};
use closeloop_readmodel::{Projection, ProjectionError};
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

pub struct TicketFacts {
    t: Tables,
    name: &'static str,
}

impl TicketFacts {
    /// The projection into generation `t`'s tables.
    pub fn new(t: &Tables) -> Self {
        TicketFacts {
            t: t.clone(),
            name: checkpoint_name(t, TICKETS),
        }
    }
}

impl Projection for TicketFacts {
    fn name(&self) -> &'static str {
        self.name
    }

    fn filter(&self, prefix: &Prefix) -> String {
        filter_of(TICKETS, prefix)
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        ev: &StoredEvent,
    ) -> Result<(), ProjectionError> {
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
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {tickets} (ticket_id, program_id, workflow_id, \
                     feedback_id, account_id, opened_at, fc_target_secs, close_target_secs, \
                     require_opportunity, sequence) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (ticket_id) DO NOTHING",
                    tickets = self.t.tickets
                )))
                .bind(&id)
                .bind(program_id.as_str())
                .bind(workflow_id)
                .bind(feedback_id)
                .bind(account_id.as_str())
                .bind(at)
                .bind(plan.sla.first_contact_secs as i64)
                .bind(plan.sla.close_within_secs as i64)
                .bind(i32::from(plan.require_opportunity))
                .bind(seq)
                .execute(&mut *conn)
                .await?;
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
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {ticket_events} (ticket_id, sequence, at, kind, owner_email, \
             root_cause_words, actions_words, opportunity) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (ticket_id, sequence) DO NOTHING",
            ticket_events = self.t.ticket_events
        )))
        .bind(&id)
        .bind(seq)
        .bind(at)
        .bind(r.event.kind())
        .bind(owner)
        .bind(root_cause_words)
        .bind(actions_words)
        .bind(i32::from(opportunity))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// Words in `text`: its runs of characters between whitespace.
pub fn words(text: &str) -> i64 {
    text.split_whitespace().count() as i64
}

pub struct SlaFacts {
    t: Tables,
    name: &'static str,
}

impl SlaFacts {
    /// The projection into generation `t`'s tables.
    pub fn new(t: &Tables) -> Self {
        SlaFacts {
            t: t.clone(),
            name: checkpoint_name(t, SLA),
        }
    }
}

impl Projection for SlaFacts {
    fn name(&self) -> &'static str {
        self.name
    }

    fn filter(&self, prefix: &Prefix) -> String {
        filter_of(SLA, prefix)
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        ev: &StoredEvent,
    ) -> Result<(), ProjectionError> {
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
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "INSERT INTO {sla_due} (ticket_id, fc_due, close_due, at, sequence) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (ticket_id) DO NOTHING",
                        sla_due = self.t.sla_due
                    )))
                    .bind(&id)
                    .bind(fc)
                    .bind(close)
                    .bind(at)
                    .bind(ev.sequence as i64)
                    .execute(&mut *conn)
                    .await?;
                }
                return Ok(());
            }
            SlaEvent::Warned { kind, pct, .. } => ("warned", kind.as_str(), i64::from(*pct)),
            SlaEvent::Breached { kind, .. } => ("breached", kind.as_str(), 0),
            SlaEvent::Escalated { level, .. } => ("escalated", "", i64::from(*level)),
            _ => return Ok(()),
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {sla_events} (ticket_id, sequence, at, kind, clock, detail) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (ticket_id, sequence) DO NOTHING",
            sla_events = self.t.sla_events
        )))
        .bind(&id)
        .bind(ev.sequence as i64)
        .bind(at)
        .bind(kind)
        .bind(clock)
        .bind(detail)
        .execute(&mut *conn)
        .await?;
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

impl ResponseFacts {
    /// The projection into generation `t`'s tables.
    pub fn new(t: &Tables) -> Self {
        ResponseFacts {
            t: t.clone(),
            name: checkpoint_name(t, RESPONSES),
        }
    }
}

impl Projection for ResponseFacts {
    fn name(&self) -> &'static str {
        self.name
    }

    fn filter(&self, prefix: &Prefix) -> String {
        filter_of(RESPONSES, prefix)
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        ev: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let r = FeedbackContract::decode(ev).map_err(poison)?;
        let at = recorded_at(ev)?;
        let applied = !matches!(r.event.value, FeedbackEvent::Superseded { .. });
        let f = r.event.value.feedback();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {responses} (feedback_id, sequence, at, applied, revision_key, \
             response_id, program_id, account_id, submitted_at, answers) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (feedback_id, sequence) DO NOTHING",
            responses = self.t.responses
        )))
        .bind(aggregate_id(ev))
        .bind(ev.sequence as i64)
        .bind(at)
        .bind(i32::from(applied))
        .bind(f.revised().as_micros())
        .bind(f.response_id.as_str())
        .bind(f.program.as_str())
        .bind(f.account_id.as_str())
        .bind(f.submitted_at.as_micros())
        .bind(numeric_answers(&f.answers))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

pub struct AccountFacts {
    t: Tables,
    name: &'static str,
}

impl AccountFacts {
    /// The projection into generation `t`'s tables.
    pub fn new(t: &Tables) -> Self {
        AccountFacts {
            t: t.clone(),
            name: checkpoint_name(t, ACCOUNTS),
        }
    }
}

impl Projection for AccountFacts {
    fn name(&self) -> &'static str {
        self.name
    }

    fn filter(&self, prefix: &Prefix) -> String {
        filter_of(ACCOUNTS, prefix)
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        ev: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let (a, _) = decode_record::<AccountKind>(ev).map_err(poison)?;
        let at = recorded_at(ev)?;
        let team: serde_json::Map<String, serde_json::Value> = a
            .team
            .iter()
            .map(|(role, email)| (role.clone(), email.as_str().into()))
            .collect();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {accounts} (account_id, sequence, at, region, segment, team) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (account_id, sequence) DO NOTHING",
            accounts = self.t.accounts
        )))
        .bind(a.id.as_str())
        .bind(ev.sequence as i64)
        .bind(at)
        .bind(a.region.as_str())
        .bind(a.segment.as_str())
        .bind(serde_json::Value::Object(team).to_string())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

pub struct RoutingFacts {
    t: Tables,
    name: &'static str,
}

impl RoutingFacts {
    /// The projection into generation `t`'s tables.
    pub fn new(t: &Tables) -> Self {
        RoutingFacts {
            t: t.clone(),
            name: checkpoint_name(t, ROUTING),
        }
    }
}

impl Projection for RoutingFacts {
    fn name(&self) -> &'static str {
        self.name
    }

    fn filter(&self, prefix: &Prefix) -> String {
        filter_of(ROUTING, prefix)
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        ev: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let r = RoutingContract::decode(ev).map_err(poison)?;
        // Revisions attached later change nothing routing decided.
        let RoutingEvent::Decided(d) = &r.event else {
            return Ok(());
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {routing} (feedback_id, unmatched, at, sequence) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (feedback_id) DO NOTHING",
            routing = self.t.routing
        )))
        .bind(aggregate_id(ev))
        .bind(i32::from(d.unmatched))
        .bind(recorded_at(ev)?)
        .bind(ev.sequence as i64)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
