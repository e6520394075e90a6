//! Listening programs and their action workflows, declared in YAML and
//! reviewed like code.
//!
//! [`Catalog::parse`] reads the file, checks everything it can (ids, question
//! kinds, owners, SLA durations, and each workflow's CEL trigger against the
//! program's questions and attributes) and reports every problem with its
//! location. A valid catalog answers two questions for the ingestion and
//! routing services: are these answers valid for the program
//! ([`Program::check_answers`]), and which workflows does a response trigger
//! ([`Program::evaluate`]). Its [`Catalog::version`] (a content hash) is
//! recorded with every routing decision.
//!
//! [`canonical`] parses the canonical feedback document upstream systems
//! send, checked against these programs.

pub mod canonical;
mod duration;
mod eval;
mod model;
mod validate;

pub use duration::parse_duration;
pub use eval::{AnswerValue, Evaluation, Facts};
pub use model::{
    AnalyticsConfig, ClosureRules, Guide, Leaderboard, MetricKind, OwnerRule, Program, Question,
    QuestionKind, ReportSchedule, Rubric, Sla, Targets, Template, Workflow,
};
pub use validate::{Catalog, ConfigError, DEFAULT_REPORT_SCHEDULE, ical_dates};
