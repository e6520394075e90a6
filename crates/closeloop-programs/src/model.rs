//! The validated model. The YAML shape is in `validate.rs` (`raw`).

use std::collections::BTreeSet;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Nps,
    Csat,
    Ces,
    Custom,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Nps => "nps",
            MetricKind::Csat => "csat",
            MetricKind::Ces => "ces",
            MetricKind::Custom => "custom",
        }
    }
}

/// What a question's answer must look like.
#[derive(Debug, Clone, PartialEq)]
pub enum QuestionKind {
    /// Integer 0..=10.
    Nps,
    /// Integer `min..=max`.
    Scale {
        min: i64,
        max: i64,
    },
    /// Any number, optionally bounded.
    Number {
        min: Option<f64>,
        max: Option<f64>,
    },
    /// Free text up to `max_length` characters.
    Text {
        max_length: usize,
    },
    /// One of `options`.
    Choice {
        options: Vec<String>,
    },
    Boolean,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub id: String,
    pub kind: QuestionKind,
    pub required: bool,
}

/// Who owns a ticket or is told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerRule {
    /// A role on the account team, e.g. `csm`, `delivery_manager`.
    Role(String),
    /// A team; the owner is one member, chosen round-robin.
    Team(String),
    /// A named person (e-mail).
    Person(String),
}

impl OwnerRule {
    pub fn describe(&self) -> String {
        match self {
            OwnerRule::Role(r) => format!("role {r}"),
            OwnerRule::Team(t) => format!("team {t}"),
            OwnerRule::Person(p) => format!("person {p}"),
        }
    }
}

/// A response template of a guide: the ticket's own type, so a workflow's
/// guide is embedded in its tickets as it is.
pub use closeloop_domain::ticket::ResponseTemplate as Template;

/// The resolution guide embedded in every ticket a workflow opens.
pub use closeloop_domain::ticket::Guide;

/// A workflow's SLA (or the file's defaults, which manual tickets get).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sla {
    pub first_contact: Duration,
    pub escalate_after: Duration,
    /// Further escalation levels (2, 3, ...), each an untouched time.
    pub escalate_further: Vec<Duration>,
    pub close_within: Duration,
    /// Warnings, in percent of the first-contact and closure budgets.
    pub warn_at: Vec<u32>,
    /// The business calendar the clocks count in (empty: calendar time).
    pub calendar: String,
    /// Per-region calendar overrides: (region, calendar).
    pub region_calendars: Vec<(String, String)>,
    pub pause_while_waiting: bool,
    pub reset_on_reassign: bool,
}

impl Sla {
    /// The clocks a ticket carries (whole seconds).
    pub fn policy(&self) -> closeloop_domain::SlaPolicy {
        closeloop_domain::SlaPolicy {
            first_contact_secs: self.first_contact.as_secs(),
            escalate_after_secs: self.escalate_after.as_secs(),
            close_within_secs: self.close_within.as_secs(),
            further_levels_secs: self
                .escalate_further
                .iter()
                .map(Duration::as_secs)
                .collect(),
            warn_pct: self.warn_at.clone(),
            calendar: self.calendar.clone(),
            region_calendars: self.region_calendars.clone(),
            pause_while_waiting: self.pause_while_waiting,
            reset_on_reassign: self.reset_on_reassign,
        }
    }
}

impl Default for Sla {
    fn default() -> Self {
        let d = closeloop_domain::SlaPolicy::default();
        Sla {
            first_contact: Duration::from_secs(d.first_contact_secs),
            escalate_after: Duration::from_secs(d.escalate_after_secs),
            escalate_further: Vec::new(),
            close_within: Duration::from_secs(d.close_within_secs),
            warn_at: d.warn_pct,
            calendar: String::new(),
            region_calendars: Vec::new(),
            pause_while_waiting: false,
            reset_on_reassign: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosureRules {
    pub require_root_cause: bool,
    pub require_actions: bool,
    pub require_opportunity: bool,
}

impl Default for ClosureRules {
    fn default() -> Self {
        ClosureRules {
            require_root_cause: true,
            require_actions: true,
            require_opportunity: false,
        }
    }
}

/// One action workflow: when it triggers and what ticket it opens.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub id: String,
    pub name: String,
    /// The CEL trigger as written.
    pub when: String,
    pub(crate) program: std::sync::Arc<cel::Program>,
    pub owner: OwnerRule,
    pub notify: Vec<OwnerRule>,
    pub guide: Guide,
    pub sla: Sla,
    pub closure: ClosureRules,
}

/// Where and when a region's weekly open-ticket report goes.
#[derive(Debug, Clone)]
pub struct ReportSchedule {
    /// The accounts' region it covers (as the directory names it).
    pub region: String,
    /// IANA time zone the schedule is read in.
    pub time_zone: String,
    /// The cron pattern as written (5 fields, e.g. `0 8 * * MON`).
    pub schedule: String,
    pub(crate) cron: croner::Cron,
    pub(crate) zone: jiff::tz::TimeZone,
    /// The region's sales-operations list.
    pub recipients: Vec<String>,
}

impl ReportSchedule {
    fn zoned(&self, t: closeloop_domain::Timestamp) -> Option<jiff::Zoned> {
        Some(
            jiff::Timestamp::from_microsecond(t.as_micros())
                .ok()?
                .to_zoned(self.zone.clone()),
        )
    }

    fn stamp(z: &jiff::Zoned) -> closeloop_domain::Timestamp {
        closeloop_domain::Timestamp::from_micros(z.timestamp().as_microsecond())
    }

    /// The first scheduled time strictly after `t`.
    pub fn next_after(
        &self,
        t: closeloop_domain::Timestamp,
    ) -> Option<closeloop_domain::Timestamp> {
        let z = self.zoned(t)?;
        self.cron
            .find_next_occurrence(&z, false)
            .ok()
            .map(|z| Self::stamp(&z))
    }

    /// The latest scheduled time at or before `t`.
    pub fn last_at_or_before(
        &self,
        t: closeloop_domain::Timestamp,
    ) -> Option<closeloop_domain::Timestamp> {
        let z = self.zoned(t)?;
        self.cron
            .find_previous_occurrence(&z, true)
            .ok()
            .map(|z| Self::stamp(&z))
    }
}

/// Target rates (%) of closure and first contact within target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Targets {
    pub closure: Option<u32>,
    pub first_contact: Option<u32>,
}

/// How the leaderboard ranks account teams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaderboard {
    /// The account-team role whose person identifies the team.
    pub role: String,
    /// The questions whose mean scores a response.
    pub questions: Vec<String>,
    /// Teams with fewer responses in a period are listed unranked.
    pub min_responses: u32,
}

impl Default for Leaderboard {
    fn default() -> Self {
        Leaderboard {
            role: "csm".into(),
            questions: vec!["nps".into(), "partnership".into(), "future_plans".into()],
            min_responses: 5,
        }
    }
}

/// The closure-quality rubric: each criterion on (a minimum word count
/// above 0, or `true`) or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rubric {
    pub root_cause_min_words: u32,
    pub actions_min_words: u32,
    pub contact_before_close: bool,
    pub closed_within_target: bool,
    pub first_contact_within_target: bool,
    pub opportunity_when_required: bool,
}

impl Default for Rubric {
    fn default() -> Self {
        Rubric {
            root_cause_min_words: 15,
            actions_min_words: 15,
            contact_before_close: true,
            closed_within_target: true,
            first_contact_within_target: true,
            opportunity_when_required: true,
        }
    }
}

/// The `analytics:` block of the programs file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AnalyticsConfig {
    /// Every program's and team's targets unless overridden.
    pub targets: Targets,
    /// Per program id, then per team id (a team's wins over its program's).
    pub program_targets: std::collections::BTreeMap<String, Targets>,
    pub team_targets: std::collections::BTreeMap<String, Targets>,
    pub leaderboard: Leaderboard,
    pub quality: Rubric,
}

/// A listening program and its workflows.
#[derive(Debug, Clone)]
pub struct Program {
    pub id: String,
    pub name: String,
    pub journey_stage: String,
    pub metric: MetricKind,
    /// The question that carries the metric (absent for `custom`).
    pub metric_question: Option<String>,
    pub questions: Vec<Question>,
    /// Attribute names workflows may read (others are still stored).
    pub attributes: BTreeSet<String>,
    /// Owner when a workflow's owner cannot be resolved (e.g. no CSM on the account).
    pub fallback_owner: String,
    /// The program's SLA policy: `defaults.sla` overridden field by field
    /// by the program's `sla:`. Its manual tickets run it; its workflows'
    /// `sla:` override it in turn.
    pub sla: Sla,
    pub workflows: Vec<Workflow>,
}

impl Program {
    pub fn question(&self, id: &str) -> Option<&Question> {
        self.questions.iter().find(|q| q.id == id)
    }

    pub fn workflow(&self, id: &str) -> Option<&Workflow> {
        self.workflows.iter().find(|w| w.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_workflow_sla_is_the_tickets_default() {
        // A ticket opened by hand and one opened by a workflow without an
        // `sla:` block must run the same clocks (48 h, 7 d, 30 d).
        assert_eq!(
            Sla::default().policy(),
            closeloop_domain::SlaPolicy::default()
        );
    }
}
