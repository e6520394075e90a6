//! The weekly open-ticket report of a region, as an aggregate: one per
//! region (`<prefix>.events.report.<key>`), written by the escalation role
//! at each scheduled time. The report's lines are in the event, so what
//! was sent can be read back and explained from the log; a scheduled time
//! is generated once (replicas and restarts that reach it again write
//! nothing).

use std::fmt;

use crate::Decision;
use crate::time::Timestamp;

/// Namespace of report keys (UUIDv5 of the region, lowercased).
const REPORT_NS: uuid::Uuid = uuid::Uuid::from_u128(0x8a3d_51c2_7e0f_4b19_a6d4_2c5e_9f70_0042);

/// Names a region's report stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReportKey(uuid::Uuid);

impl ReportKey {
    pub fn of_region(region: &str) -> ReportKey {
        ReportKey(uuid::Uuid::new_v5(
            &REPORT_NS,
            region.trim().to_ascii_lowercase().as_bytes(),
        ))
    }

    pub fn parse(s: &str) -> Option<ReportKey> {
        uuid::Uuid::try_parse(s.trim()).ok().map(ReportKey)
    }
}

impl fmt::Display for ReportKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// One ticket of a report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReportLine {
    pub ticket_id: String,
    pub account_id: String,
    pub title: String,
    pub program_id: String,
    pub opened_at: Timestamp,
    pub age_days: u32,
    /// breached, escalated, due_soon.
    pub reasons: Vec<String>,
    pub first_contact_due: Option<Timestamp>,
    pub close_due: Option<Timestamp>,
    pub escalation_level: u32,
}

/// The report's tickets of one owner.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReportOwner {
    pub owner: String,
    pub lines: Vec<ReportLine>,
}

/// A report as generated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WeeklyReport {
    pub region: String,
    /// The schedule's time this report is for (also what it is as of).
    pub scheduled_at: Timestamp,
    /// Who it is sent to.
    pub recipients: Vec<String>,
    pub owners: Vec<ReportOwner>,
    /// Tickets listed.
    pub tickets: u32,
    /// More tickets needed attention than a report lists ([`MAX_LINES`]).
    pub truncated: bool,
}

/// Most tickets one report lists (the rest are counted, not listed).
pub const MAX_LINES: usize = 2000;

/// A fact about a region's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportEvent {
    Generated(Box<WeeklyReport>),
}

/// A report event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedReport {
    pub key: ReportKey,
    pub sequence: u64,
    pub occurred_at: Timestamp,
    pub event: ReportEvent,
}

/// The state of a region's reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reports {
    /// The latest scheduled time generated.
    pub last_scheduled_at: Option<Timestamp>,
    pub generated: u32,
    pub sequence: u64,
}

/// Generate the report for a scheduled time.
#[derive(Debug, Clone)]
pub struct Generate(pub WeeklyReport);

/// Decides a generation: written once per scheduled time, never for a time
/// before the latest generated. Pure.
pub fn decide(state: Option<&Reports>, command: &Generate) -> Decision<ReportEvent> {
    match state.and_then(|s| s.last_scheduled_at) {
        Some(last) if last >= command.0.scheduled_at => Decision::AlreadyApplied {
            sequence: state.map_or(0, |s| s.sequence),
        },
        _ => Decision::Append(ReportEvent::Generated(Box::new(command.0.clone()))),
    }
}

pub fn evolve(state: Option<Reports>, e: &RecordedReport) -> Option<Reports> {
    let mut s = state.unwrap_or_default();
    match &e.event {
        ReportEvent::Generated(r) => {
            s.last_scheduled_at = Some(
                s.last_scheduled_at
                    .map_or(r.scheduled_at, |l| l.max(r.scheduled_at)),
            );
            s.generated += 1;
        }
    }
    s.sequence = e.sequence;
    Some(s)
}

/// Reports as an [`crate::Aggregate`].
pub struct ReportAggregate;

/// Never refused: a time already generated is `AlreadyApplied`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreachable")]
pub struct NoRule;

impl crate::Aggregate for ReportAggregate {
    type Id = ReportKey;
    type State = Reports;
    type Command = Generate;
    type Event = ReportEvent;
    type Rule = NoRule;
    type Recorded = RecordedReport;

    const TYPE: &'static str = "report";

    fn decide(
        _id: ReportKey,
        state: Option<&Reports>,
        _request_id: &str,
        command: &Generate,
    ) -> Result<Decision<ReportEvent>, NoRule> {
        Ok(decide(state, command))
    }

    fn evolve(state: Option<Reports>, event: &RecordedReport) -> Option<Reports> {
        evolve(state, event)
    }

    fn sequence(state: &Reports) -> u64 {
        state.sequence
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheduled_time_is_generated_once_and_never_an_older_one() {
        let key = ReportKey::of_region("EMEA");
        assert_eq!(key, ReportKey::of_region(" emea "));
        let at = |d: i64| Timestamp::from_micros(d * 86_400_000_000);
        let gen_at = |d| {
            Generate(WeeklyReport {
                region: "EMEA".into(),
                scheduled_at: at(d),
                ..WeeklyReport::default()
            })
        };
        let mut state = None;
        let mut seq = 0;
        for (d, writes) in [(7, true), (7, false), (0, false), (14, true)] {
            match decide(state.as_ref(), &gen_at(d)) {
                Decision::Append(e) => {
                    assert!(writes, "day {d}");
                    seq += 1;
                    state = evolve(
                        state,
                        &RecordedReport {
                            key,
                            sequence: seq,
                            occurred_at: at(d),
                            event: e,
                        },
                    );
                }
                Decision::AlreadyApplied { .. } => assert!(!writes, "day {d}"),
            }
        }
        assert_eq!(state.unwrap().generated, 2);
    }
}
