//! From YAML to a validated [`Catalog`], reporting every problem at once.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;

use cel::ExecutionError;
use closeloop_domain::Email;
use sha2::{Digest, Sha256};

use crate::duration::parse_duration;
use crate::eval::{AnswerValue, Facts};
use crate::model::*;

/// One problem in a programs file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `line 3, column 5` for syntax errors; a path such as
    /// `programs[0](relationship-nps).workflows[1](rnps-passive).when` otherwise.
    pub location: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// A validated set of programs.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub programs: Vec<Program>,
    /// The `defaults.sla` block: the policy of manual tickets of a program
    /// the file does not declare, and the base of every program's.
    pub default_sla: Sla,
    /// Business calendars SLA clocks may count in, by id.
    pub calendars: std::sync::Arc<closeloop_domain::sla::Calendars>,
    /// The weekly open-ticket reports, one per region.
    pub reports: Vec<ReportSchedule>,
    /// The `analytics:` block: target rates, the leaderboard, the
    /// closure-quality rubric.
    pub analytics: AnalyticsConfig,
    /// First 12 hex digits of the SHA-256 of the file: which config made a decision.
    pub version: String,
}

mod raw {
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        pub version: u32,
        #[serde(default)]
        pub defaults: Defaults,
        #[serde(default)]
        pub calendars: Vec<Calendar>,
        #[serde(default)]
        pub reports: Reports,
        #[serde(default)]
        pub analytics: Analytics,
        pub programs: Vec<Program>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Analytics {
        #[serde(default)]
        pub targets: AnalyticsTargets,
        #[serde(default)]
        pub leaderboard: Leaderboard,
        #[serde(default)]
        pub quality: Rubric,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct AnalyticsTargets {
        pub closure: Option<u32>,
        pub first_contact: Option<u32>,
        #[serde(default)]
        pub programs: std::collections::BTreeMap<String, TargetPair>,
        #[serde(default)]
        pub teams: std::collections::BTreeMap<String, TargetPair>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct TargetPair {
        pub closure: Option<u32>,
        pub first_contact: Option<u32>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Leaderboard {
        pub role: Option<String>,
        pub questions: Option<Vec<String>>,
        pub min_responses: Option<u32>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Rubric {
        pub root_cause_min_words: Option<u32>,
        pub actions_min_words: Option<u32>,
        pub contact_before_close: Option<bool>,
        pub closed_within_target: Option<bool>,
        pub first_contact_within_target: Option<bool>,
        pub opportunity_when_required: Option<bool>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Defaults {
        pub sla: Option<Sla>,
    }

    #[derive(Deserialize, Default, Clone)]
    #[serde(deny_unknown_fields)]
    pub struct Sla {
        pub first_contact: Option<String>,
        pub escalate_after: Option<String>,
        pub escalate_further: Option<Vec<String>>,
        pub close_within: Option<String>,
        pub warn_at: Option<Vec<u32>>,
        pub calendar: Option<String>,
        pub region_calendars: Option<std::collections::BTreeMap<String, String>>,
        pub pause_while_waiting: Option<bool>,
        pub reset_on_reassign: Option<bool>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Reports {
        #[serde(default)]
        pub weekly: Vec<WeeklyReport>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct WeeklyReport {
        pub region: String,
        pub time_zone: Option<String>,
        pub schedule: Option<String>,
        #[serde(default)]
        pub recipients: Vec<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Calendar {
        pub id: String,
        pub time_zone: String,
        #[serde(default)]
        pub working_days: Option<Vec<String>>,
        /// `09:00-17:00`
        #[serde(default)]
        pub hours: Option<String>,
        #[serde(default)]
        pub holidays: Vec<String>,
        /// An iCalendar file (`.ics`) whose all-day events are holidays,
        /// relative to the programs file.
        #[serde(default)]
        pub holidays_ical: Vec<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Program {
        pub id: String,
        pub name: String,
        #[serde(default)]
        pub journey_stage: String,
        pub metric: String,
        pub metric_question: Option<String>,
        pub questions: Vec<Question>,
        #[serde(default)]
        pub attributes: Vec<String>,
        pub fallback_owner: String,
        pub sla: Option<Sla>,
        #[serde(default)]
        pub workflows: Vec<Workflow>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Question {
        pub id: String,
        pub kind: String,
        #[serde(default)]
        pub required: bool,
        pub min: Option<f64>,
        pub max: Option<f64>,
        pub max_length: Option<usize>,
        #[serde(default)]
        pub options: Vec<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Owner {
        pub role: Option<String>,
        pub team: Option<String>,
        pub person: Option<String>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Template {
        pub name: String,
        #[serde(default)]
        pub subject: String,
        pub body: String,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Guide {
        #[serde(default)]
        pub title: String,
        #[serde(default)]
        pub link: String,
        #[serde(default)]
        pub steps: Vec<String>,
        #[serde(default)]
        pub templates: Vec<Template>,
        #[serde(default)]
        pub talking_points: Vec<String>,
        #[serde(default)]
        pub faq: String,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Closure {
        pub require_root_cause: Option<bool>,
        pub require_actions: Option<bool>,
        pub require_opportunity: Option<bool>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Workflow {
        pub id: String,
        pub name: String,
        pub when: String,
        pub owner: Owner,
        #[serde(default)]
        pub notify: Vec<Owner>,
        pub guide: Guide,
        pub sla: Option<Sla>,
        #[serde(default)]
        pub closure: Closure,
    }
}

/// The CEL variables a trigger may use.
const VARIABLES: [&str; 5] = ["answers", "attributes", "respondent", "account", "program"];

struct Errors(Vec<ConfigError>);

impl Errors {
    fn at(&mut self, location: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            location: location.into(),
            message: message.into(),
        });
    }
}

fn check_id(errs: &mut Errors, loc: &str, id: &str) {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        errs.at(
            loc,
            format!("{id:?} is not an id: use 1-64 of a-z, 0-9, '-' and '_'"),
        );
    }
}

fn sla(
    errs: &mut Errors,
    loc: &str,
    base: Sla,
    raw: Option<&raw::Sla>,
    calendars: &BTreeSet<String>,
) -> Sla {
    let Some(raw) = raw else { return base };
    let mut dur = |name: &str, v: &Option<String>, d| match v {
        None => d,
        Some(s) => parse_duration(s).unwrap_or_else(|e| {
            errs.at(format!("{loc}.{name}"), e);
            d
        }),
    };
    let first_contact = dur("first_contact", &raw.first_contact, base.first_contact);
    let escalate_after = dur("escalate_after", &raw.escalate_after, base.escalate_after);
    let close_within = dur("close_within", &raw.close_within, base.close_within);
    let escalate_further = match &raw.escalate_further {
        None => base.escalate_further.clone(),
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, v)| match parse_duration(v) {
                Ok(d) => Some(d),
                Err(e) => {
                    errs.at(format!("{loc}.escalate_further[{i}]"), e);
                    None
                }
            })
            .collect(),
    };
    let s = Sla {
        first_contact,
        escalate_after,
        escalate_further,
        close_within,
        warn_at: raw.warn_at.clone().unwrap_or(base.warn_at),
        calendar: raw.calendar.clone().unwrap_or(base.calendar),
        region_calendars: raw
            .region_calendars
            .as_ref()
            .map(|m| m.iter().map(|(r, c)| (r.clone(), c.clone())).collect())
            .unwrap_or(base.region_calendars),
        pause_while_waiting: raw.pause_while_waiting.unwrap_or(base.pause_while_waiting),
        reset_on_reassign: raw.reset_on_reassign.unwrap_or(base.reset_on_reassign),
    };
    let mut prev = s.escalate_after;
    for (i, d) in s.escalate_further.iter().enumerate() {
        if *d <= prev {
            errs.at(
                format!("{loc}.escalate_further[{i}]"),
                "each further level must come later than the one before (and than escalate_after)",
            );
        }
        prev = *d;
    }
    for (i, p) in s.warn_at.iter().enumerate() {
        if !(1..=99).contains(p) {
            errs.at(
                format!("{loc}.warn_at[{i}]"),
                format!("{p} is not a percentage of the budget between 1 and 99"),
            );
        }
    }
    if !s.calendar.is_empty() && !calendars.contains(&s.calendar) {
        errs.at(
            format!("{loc}.calendar"),
            format!("no calendar {:?} is declared under calendars", s.calendar),
        );
    }
    for (region, c) in &s.region_calendars {
        if !calendars.contains(c) {
            errs.at(
                format!("{loc}.region_calendars.{region}"),
                format!("no calendar {c:?} is declared under calendars"),
            );
        }
    }
    for (name, d) in [
        ("first_contact", s.first_contact),
        ("escalate_after", s.escalate_after),
        ("close_within", s.close_within),
    ] {
        if d.is_zero() {
            errs.at(format!("{loc}.{name}"), "must be longer than zero");
        }
    }
    if s.first_contact > s.close_within {
        errs.at(
            format!("{loc}.first_contact"),
            "is longer than close_within: a ticket would have to be closed before first contact is due",
        );
    }
    s
}

/// Working days from names (`mon`..`sun`); Monday to Friday when absent.
fn working_days(errs: &mut Errors, loc: &str, days: Option<&Vec<String>>) -> [bool; 7] {
    let Some(days) = days else {
        return [true, true, true, true, true, false, false];
    };
    let mut out = [false; 7];
    for (i, d) in days.iter().enumerate() {
        match closeloop_domain::calendar::BusinessCalendar::weekday_index(d) {
            Some(w) => out[w] = true,
            None => errs.at(
                format!("{loc}.working_days[{i}]"),
                format!("{d:?} is not a weekday: use mon, tue, wed, thu, fri, sat or sun"),
            ),
        }
    }
    out
}

/// `HH:MM-HH:MM` as minutes after midnight (`24:00` allowed as an end).
fn hours(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.trim().split_once('-')?;
    let minute = |t: &str| -> Option<u16> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h <= 24 && m < 60 && (h < 24 || m == 0)).then_some(h * 60 + m)
    };
    Some((minute(a)?, minute(b)?))
}

/// The all-day events of an iCalendar file, as dates (an event spanning
/// several days gives each; its end date is exclusive, as RFC 5545 says).
pub fn ical_dates(text: &str) -> Result<Vec<jiff::civil::Date>, String> {
    use icalendar::{CalendarComponent, Component, DatePerhapsTime};
    let cal: icalendar::Calendar = text.parse().map_err(|e: String| e)?;
    let date = |d: &DatePerhapsTime| -> Option<jiff::civil::Date> {
        match d {
            DatePerhapsTime::Date(d) => d.to_string().parse().ok(),
            DatePerhapsTime::DateTime(_) => None,
        }
    };
    let mut out = Vec::new();
    for c in &cal.components {
        let CalendarComponent::Event(e) = c else {
            continue;
        };
        let Some(start) = e.get_start().as_ref().and_then(date) else {
            continue;
        };
        let end = e
            .get_end()
            .as_ref()
            .and_then(date)
            .filter(|end| *end > start)
            .unwrap_or_else(|| start.tomorrow().unwrap_or(start));
        let mut d = start;
        while d < end && out.len() < 100_000 {
            out.push(d);
            match d.tomorrow() {
                Ok(n) => d = n,
                Err(_) => break,
            }
        }
    }
    Ok(out)
}

fn calendars(
    errs: &mut Errors,
    raw: &[raw::Calendar],
    dir: Option<&std::path::Path>,
) -> closeloop_domain::sla::Calendars {
    use closeloop_domain::calendar::BusinessCalendar;
    let mut out = BTreeMap::new();
    for (i, c) in raw.iter().enumerate() {
        let loc = format!("calendars[{i}]({})", c.id);
        check_id(errs, &format!("{loc}.id"), &c.id);
        if out.contains_key(&c.id) {
            errs.at(
                format!("{loc}.id"),
                format!("calendar {:?} is declared twice", c.id),
            );
        }
        let days = working_days(errs, &loc, c.working_days.as_ref());
        let (start, end) = match c.hours.as_deref().map(|h| (h, hours(h))) {
            None => (9 * 60, 17 * 60),
            Some((_, Some((a, b)))) if a < b => (a, b),
            Some((h, _)) => {
                errs.at(
                    format!("{loc}.hours"),
                    format!(
                        "{h:?} is not a range of hours within a day, start before end, such as 09:00-17:00"
                    ),
                );
                (9 * 60, 17 * 60)
            }
        };
        let mut holidays = BTreeSet::new();
        for (j, h) in c.holidays.iter().enumerate() {
            match h.trim().parse::<jiff::civil::Date>() {
                Ok(d) => {
                    holidays.insert(d);
                }
                Err(_) => errs.at(
                    format!("{loc}.holidays[{j}]"),
                    format!("{h:?} is not a date (YYYY-MM-DD)"),
                ),
            }
        }
        for (j, f) in c.holidays_ical.iter().enumerate() {
            let path = match dir {
                Some(d) => d.join(f),
                None => std::path::PathBuf::from(f),
            };
            match std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|t| ical_dates(&t).map_err(|e| format!("{}: {e}", path.display())))
            {
                Ok(dates) => holidays.extend(dates),
                Err(e) => errs.at(format!("{loc}.holidays_ical[{j}]"), e),
            }
        }
        match BusinessCalendar::new(&c.id, c.time_zone.trim(), days, start, end, holidays) {
            Ok(cal) => {
                out.insert(c.id.clone(), Arc::new(cal));
            }
            Err(e) => errs.at(loc, e.to_string()),
        }
    }
    closeloop_domain::sla::Calendars(out)
}

fn target_pair(errs: &mut Errors, loc: &str, raw: &raw::TargetPair) -> Targets {
    let mut pct = |field: &str, v: Option<u32>| {
        if let Some(p) = v
            && !(1..=100).contains(&p)
        {
            errs.at(
                format!("{loc}.{field}"),
                format!("{p} is not a target rate: give a percentage from 1 to 100"),
            );
        }
        v
    };
    Targets {
        closure: pct("closure", raw.closure),
        first_contact: pct("first_contact", raw.first_contact),
    }
}

fn analytics(
    errs: &mut Errors,
    raw: &raw::Analytics,
    program_ids: &HashSet<String>,
) -> AnalyticsConfig {
    let t = &raw.targets;
    let targets = target_pair(
        errs,
        "analytics.targets",
        &raw::TargetPair {
            closure: t.closure,
            first_contact: t.first_contact,
        },
    );
    let mut program_targets = std::collections::BTreeMap::new();
    for (id, pair) in &t.programs {
        let loc = format!("analytics.targets.programs.{id}");
        if !program_ids.contains(id) {
            errs.at(&loc, format!("program {id:?} is not declared in this file"));
        }
        program_targets.insert(id.clone(), target_pair(errs, &loc, pair));
    }
    let mut team_targets = std::collections::BTreeMap::new();
    for (id, pair) in &t.teams {
        let loc = format!("analytics.targets.teams.{id}");
        team_targets.insert(id.clone(), target_pair(errs, &loc, pair));
    }
    let d = Leaderboard::default();
    let l = &raw.leaderboard;
    let role = l.role.as_deref().unwrap_or(&d.role).trim().to_string();
    if role.is_empty() {
        errs.at(
            "analytics.leaderboard.role",
            "name the account-team role that identifies a team (e.g. csm)",
        );
    }
    let questions: Vec<String> = l
        .questions
        .clone()
        .unwrap_or(d.questions)
        .into_iter()
        .map(|q| q.trim().to_string())
        .collect();
    if questions.is_empty() || questions.iter().any(String::is_empty) {
        errs.at(
            "analytics.leaderboard.questions",
            "name at least one question id, none empty",
        );
    }
    let min_responses = l.min_responses.unwrap_or(d.min_responses);
    if min_responses == 0 {
        errs.at("analytics.leaderboard.min_responses", "must be at least 1");
    }
    let r = &raw.quality;
    let dr = Rubric::default();
    let quality = Rubric {
        root_cause_min_words: r.root_cause_min_words.unwrap_or(dr.root_cause_min_words),
        actions_min_words: r.actions_min_words.unwrap_or(dr.actions_min_words),
        contact_before_close: r.contact_before_close.unwrap_or(dr.contact_before_close),
        closed_within_target: r.closed_within_target.unwrap_or(dr.closed_within_target),
        first_contact_within_target: r
            .first_contact_within_target
            .unwrap_or(dr.first_contact_within_target),
        opportunity_when_required: r
            .opportunity_when_required
            .unwrap_or(dr.opportunity_when_required),
    };
    if quality
        == (Rubric {
            root_cause_min_words: 0,
            actions_min_words: 0,
            contact_before_close: false,
            closed_within_target: false,
            first_contact_within_target: false,
            opportunity_when_required: false,
        })
    {
        errs.at(
            "analytics.quality",
            "every criterion is off: keep at least one to score closures by",
        );
    }
    AnalyticsConfig {
        targets,
        program_targets,
        team_targets,
        leaderboard: Leaderboard {
            role,
            questions,
            min_responses,
        },
        quality,
    }
}

/// The default weekly report time: Monday 08:00.
pub const DEFAULT_REPORT_SCHEDULE: &str = "0 8 * * MON";

fn reports(errs: &mut Errors, raw: &[raw::WeeklyReport]) -> Vec<ReportSchedule> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, r) in raw.iter().enumerate() {
        let loc = format!("reports.weekly[{i}]({})", r.region);
        let region = r.region.trim().to_string();
        if region.is_empty() {
            errs.at(format!("{loc}.region"), "is required");
        } else if !seen.insert(region.to_ascii_lowercase()) {
            errs.at(
                format!("{loc}.region"),
                format!("region {region:?} has two weekly reports"),
            );
        }
        let tz = r.time_zone.as_deref().unwrap_or("UTC").trim().to_string();
        let zone = match jiff::tz::TimeZone::get(&tz) {
            Ok(z) => Some(z),
            Err(_) => {
                errs.at(
                    format!("{loc}.time_zone"),
                    format!("{tz:?} is not a time zone of the tz database (e.g. Europe/London)"),
                );
                None
            }
        };
        let schedule = r
            .schedule
            .as_deref()
            .unwrap_or(DEFAULT_REPORT_SCHEDULE)
            .trim()
            .to_string();
        let cron = match croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .build()
            .parse(&schedule)
        {
            Ok(c) => Some(c),
            Err(e) => {
                errs.at(
                    format!("{loc}.schedule"),
                    format!("{schedule:?} is not a cron schedule (minute hour day month weekday, e.g. \"0 8 * * MON\"): {e}"),
                );
                None
            }
        };
        if r.recipients.is_empty() {
            errs.at(format!("{loc}.recipients"), "name at least one recipient");
        }
        let mut recipients = Vec::new();
        for (j, to) in r.recipients.iter().enumerate() {
            match Email::parse("recipient", to) {
                Ok(e) => recipients.push(e.to_string()),
                Err(e) => errs.at(format!("{loc}.recipients[{j}]"), e.description),
            }
        }
        if let (Some(cron), Some(zone)) = (cron, zone) {
            out.push(ReportSchedule {
                region,
                time_zone: tz,
                schedule,
                cron,
                zone,
                recipients,
            });
        }
    }
    out
}

fn owner(errs: &mut Errors, loc: &str, o: &raw::Owner) -> Option<OwnerRule> {
    match (&o.role, &o.team, &o.person) {
        (Some(r), None, None) => {
            check_id(errs, &format!("{loc}.role"), r);
            Some(OwnerRule::Role(r.clone()))
        }
        (None, Some(t), None) => {
            check_id(errs, &format!("{loc}.team"), t);
            Some(OwnerRule::Team(t.clone()))
        }
        (None, None, Some(p)) => match Email::parse("person", p) {
            Ok(e) => Some(OwnerRule::Person(e.to_string())),
            Err(e) => {
                errs.at(format!("{loc}.person"), e.description);
                None
            }
        },
        _ => {
            errs.at(loc, "give exactly one of role, team or person");
            None
        }
    }
}

fn question(errs: &mut Errors, loc: &str, q: &raw::Question) -> Option<Question> {
    check_id(errs, &format!("{loc}.id"), &q.id);
    let int = |v: Option<f64>| v.filter(|x| x.fract() == 0.0).map(|x| x as i64);
    let kind = match q.kind.as_str() {
        "nps" => QuestionKind::Nps,
        "scale" => match (int(q.min), int(q.max)) {
            (Some(min), Some(max)) if min < max => QuestionKind::Scale { min, max },
            _ => {
                errs.at(loc, "a scale needs whole-number min and max with min < max");
                return None;
            }
        },
        "number" => QuestionKind::Number {
            min: q.min,
            max: q.max,
        },
        "text" => QuestionKind::Text {
            max_length: q.max_length.unwrap_or(closeloop_domain::values::TEXT_MAX),
        },
        "choice" => {
            if q.options.is_empty() {
                errs.at(
                    format!("{loc}.options"),
                    "a choice needs at least one option",
                );
                return None;
            }
            QuestionKind::Choice {
                options: q.options.clone(),
            }
        }
        "boolean" => QuestionKind::Boolean,
        other => {
            errs.at(
                format!("{loc}.kind"),
                format!("{other:?} is not a question kind; use nps, scale, number, text, choice or boolean"),
            );
            return None;
        }
    };
    Some(Question {
        id: q.id.clone(),
        kind,
        required: q.required,
    })
}

/// A response with every question and declared attribute present, used to
/// catch triggers that name things the program does not have.
fn sample_facts(questions: &[Question], attributes: &BTreeSet<String>) -> Facts<'static> {
    let answers: BTreeMap<String, AnswerValue> = questions
        .iter()
        .map(|q| {
            let v = match &q.kind {
                QuestionKind::Nps => AnswerValue::Int(0),
                QuestionKind::Scale { min, .. } => AnswerValue::Int(*min),
                QuestionKind::Number { .. } => AnswerValue::Float(0.0),
                QuestionKind::Text { .. } => AnswerValue::Text(String::new()),
                QuestionKind::Choice { options } => AnswerValue::Text(options[0].clone()),
                QuestionKind::Boolean => AnswerValue::Bool(false),
            };
            (q.id.clone(), v)
        })
        .collect();
    let empty = |keys: &[&'static str]| keys.iter().map(|k| (*k, String::new())).collect();
    Facts {
        answers,
        attributes: attributes
            .iter()
            .map(|a| (a.clone(), String::new()))
            .collect(),
        respondent: empty(&["email", "name", "role"]),
        account: empty(&["id", "name", "region", "segment"]),
    }
}

fn trigger(
    errs: &mut Errors,
    loc: &str,
    when: &str,
    questions: &[Question],
    attributes: &BTreeSet<String>,
) -> Option<cel::Program> {
    let compiled = match cel::Program::compile(when) {
        Ok(p) => p,
        Err(e) => {
            errs.at(loc, format!("not a valid CEL expression: {e}"));
            return None;
        }
    };
    let refs = compiled.references();
    for v in refs.variables() {
        if !VARIABLES.contains(&v) {
            errs.at(
                loc,
                format!(
                    "unknown variable {v:?}; triggers can use {}",
                    VARIABLES.join(", ")
                ),
            );
            return None;
        }
    }
    // Evaluate against a complete sample response to catch misspelt names
    // and type mistakes before any real feedback arrives. (At run time a
    // missing key is an unanswered optional question; here it is a typo.)
    let ctx = crate::eval::context("sample", &sample_facts(questions, attributes));
    match compiled.execute(&ctx) {
        Ok(cel::Value::Bool(_)) => Some(compiled),
        Ok(other) => {
            errs.at(
                loc,
                format!("must evaluate to true or false, not {other:?}"),
            );
            None
        }
        Err(ExecutionError::NoSuchKey(k)) => {
            let known_q: Vec<_> = questions.iter().map(|q| q.id.as_str()).collect();
            let known_a: Vec<_> = attributes.iter().map(|a| a.as_str()).collect();
            errs.at(
                loc,
                format!(
                    "refers to {k:?}, which is not a question ({}) or declared attribute ({}) of this program",
                    known_q.join(", "),
                    if known_a.is_empty() { "none".to_string() } else { known_a.join(", ") }
                ),
            );
            None
        }
        Err(e) => {
            errs.at(loc, format!("fails on a sample response: {e}"));
            None
        }
    }
}

impl Catalog {
    /// Parses and validates a programs file. On failure, returns every problem found.
    pub fn parse(text: &str) -> Result<Catalog, Vec<ConfigError>> {
        Catalog::parse_in(text, None)
    }

    /// Like [`Catalog::parse`], with files the programs file names (iCal
    /// holidays) resolved against `dir`.
    pub fn parse_in(
        text: &str,
        dir: Option<&std::path::Path>,
    ) -> Result<Catalog, Vec<ConfigError>> {
        let file: raw::File = serde_norway::from_str(text).map_err(|e| {
            vec![ConfigError {
                location: e
                    .location()
                    .map(|l| format!("line {}, column {}", l.line(), l.column()))
                    .unwrap_or_else(|| "file".into()),
                // serde appends " at line L column C"; the location says it already.
                message: {
                    let m = e.to_string();
                    match m.rfind(" at line ") {
                        Some(i) => m[..i].to_string(),
                        None => m,
                    }
                },
            }]
        })?;
        let mut errs = Errors(Vec::new());
        if file.version != 1 {
            errs.at(
                "version",
                format!("is {}; this closeloop reads version 1", file.version),
            );
        }
        let calendars = calendars(&mut errs, &file.calendars, dir);
        let reports = reports(&mut errs, &file.reports.weekly);
        let calendar_ids: BTreeSet<String> = calendars.0.keys().cloned().collect();
        let base_sla = sla(
            &mut errs,
            "defaults.sla",
            Sla::default(),
            file.defaults.sla.as_ref(),
            &calendar_ids,
        );
        let mut program_ids = HashSet::new();
        let mut workflow_ids = HashSet::new();
        let mut programs = Vec::new();
        if file.programs.is_empty() {
            errs.at("programs", "declare at least one program");
        }
        for (pi, p) in file.programs.iter().enumerate() {
            let ploc = format!("programs[{pi}]({})", p.id);
            // The program's policy (its manual tickets'), and the base of
            // its workflows'.
            let program_sla = sla(
                &mut errs,
                &format!("{ploc}.sla"),
                base_sla.clone(),
                p.sla.as_ref(),
                &calendar_ids,
            );
            check_id(&mut errs, &format!("{ploc}.id"), &p.id);
            if !program_ids.insert(p.id.clone()) {
                errs.at(
                    format!("{ploc}.id"),
                    format!("program {:?} is declared twice", p.id),
                );
            }
            if p.name.trim().is_empty() {
                errs.at(format!("{ploc}.name"), "is required");
            }
            let metric = match p.metric.as_str() {
                "nps" => MetricKind::Nps,
                "csat" => MetricKind::Csat,
                "ces" => MetricKind::Ces,
                "custom" => MetricKind::Custom,
                other => {
                    errs.at(
                        format!("{ploc}.metric"),
                        format!("{other:?} is not a metric; use nps, csat, ces or custom"),
                    );
                    MetricKind::Custom
                }
            };
            let mut questions = Vec::new();
            let mut qids = HashSet::new();
            for (qi, q) in p.questions.iter().enumerate() {
                let qloc = format!("{ploc}.questions[{qi}]({})", q.id);
                if !qids.insert(q.id.clone()) {
                    errs.at(&qloc, format!("question {:?} is declared twice", q.id));
                }
                if let Some(q) = question(&mut errs, &qloc, q) {
                    questions.push(q);
                }
            }
            if p.questions.is_empty() {
                errs.at(format!("{ploc}.questions"), "declare at least one question");
            }
            match (&p.metric_question, metric) {
                (None, MetricKind::Custom) => {}
                (None, _) => errs.at(
                    format!("{ploc}.metric_question"),
                    format!(
                        "is required for metric {}: name the question that carries it",
                        metric.as_str()
                    ),
                ),
                (Some(m), _) if !qids.contains(m) => errs.at(
                    format!("{ploc}.metric_question"),
                    format!("{m:?} is not one of this program's questions"),
                ),
                _ => {}
            }
            let attributes: BTreeSet<String> = p.attributes.iter().cloned().collect();
            if let Err(e) = Email::parse("fallback_owner", &p.fallback_owner) {
                errs.at(format!("{ploc}.fallback_owner"), e.description);
            }
            let mut workflows = Vec::new();
            for (wi, w) in p.workflows.iter().enumerate() {
                let wloc = format!("{ploc}.workflows[{wi}]({})", w.id);
                check_id(&mut errs, &format!("{wloc}.id"), &w.id);
                if !workflow_ids.insert(w.id.clone()) {
                    errs.at(
                        format!("{wloc}.id"),
                        format!(
                            "workflow {:?} is declared twice (workflow ids are global)",
                            w.id
                        ),
                    );
                }
                if w.name.trim().is_empty() {
                    errs.at(format!("{wloc}.name"), "is required");
                }
                let compiled = trigger(
                    &mut errs,
                    &format!("{wloc}.when"),
                    &w.when,
                    &questions,
                    &attributes,
                );
                let own = owner(&mut errs, &format!("{wloc}.owner"), &w.owner);
                let notify: Vec<_> = w
                    .notify
                    .iter()
                    .enumerate()
                    .filter_map(|(i, o)| owner(&mut errs, &format!("{wloc}.notify[{i}]"), o))
                    .collect();
                if w.guide.title.trim().is_empty() {
                    errs.at(
                        format!("{wloc}.guide.title"),
                        "every workflow needs a resolution guide with a title",
                    );
                }
                for (ti, t) in w.guide.templates.iter().enumerate() {
                    if t.name.trim().is_empty() || t.body.trim().is_empty() {
                        errs.at(
                            format!("{wloc}.guide.templates[{ti}]"),
                            "a template needs a name and a body",
                        );
                    }
                }
                let wsla = sla(
                    &mut errs,
                    &format!("{wloc}.sla"),
                    program_sla.clone(),
                    w.sla.as_ref(),
                    &calendar_ids,
                );
                // Closure documentation is what makes the loop auditable: a
                // workflow may ask for more, never for less.
                for (field, value) in [
                    ("require_root_cause", w.closure.require_root_cause),
                    ("require_actions", w.closure.require_actions),
                ] {
                    if value == Some(false) {
                        errs.at(
                            format!("{wloc}.closure.{field}"),
                            "closing a ticket always needs a root cause and the actions taken; \
                             this cannot be turned off (remove the line)",
                        );
                    }
                }
                let d = ClosureRules::default();
                let closure = ClosureRules {
                    require_root_cause: w
                        .closure
                        .require_root_cause
                        .unwrap_or(d.require_root_cause),
                    require_actions: w.closure.require_actions.unwrap_or(d.require_actions),
                    require_opportunity: w
                        .closure
                        .require_opportunity
                        .unwrap_or(d.require_opportunity),
                };
                if let (Some(program), Some(owner)) = (compiled, own) {
                    workflows.push(Workflow {
                        id: w.id.clone(),
                        name: w.name.clone(),
                        when: w.when.clone(),
                        program: Arc::new(program),
                        owner,
                        notify,
                        guide: Guide {
                            title: w.guide.title.clone(),
                            link: w.guide.link.clone(),
                            steps: w.guide.steps.clone(),
                            templates: w
                                .guide
                                .templates
                                .iter()
                                .map(|t| Template {
                                    name: t.name.clone(),
                                    subject: t.subject.clone(),
                                    body: t.body.clone(),
                                })
                                .collect(),
                            talking_points: w.guide.talking_points.clone(),
                            faq: w.guide.faq.clone(),
                        },
                        sla: wsla,
                        closure,
                    });
                }
            }
            programs.push(Program {
                id: p.id.clone(),
                name: p.name.clone(),
                journey_stage: p.journey_stage.clone(),
                metric,
                metric_question: p.metric_question.clone(),
                questions,
                attributes,
                fallback_owner: p.fallback_owner.trim().to_ascii_lowercase(),
                sla: program_sla,
                workflows,
            });
        }
        let analytics = analytics(&mut errs, &file.analytics, &program_ids);
        if !errs.0.is_empty() {
            return Err(errs.0);
        }
        let digest = Sha256::digest(text.as_bytes());
        let version = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        Ok(Catalog {
            programs,
            default_sla: base_sla,
            calendars: Arc::new(calendars),
            reports,
            analytics,
            version,
        })
    }

    /// Reads and validates a programs file.
    pub fn load(path: &std::path::Path) -> Result<Catalog, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigError {
                location: path.display().to_string(),
                message: format!("cannot read: {e}"),
            }]
        })?;
        Catalog::parse_in(&text, path.parent())
    }

    pub fn program(&self, id: &str) -> Option<&Program> {
        self.programs.iter().find(|p| p.id == id)
    }

    /// Finds a workflow by its (global) id.
    pub fn workflow(&self, id: &str) -> Option<(&Program, &Workflow)> {
        self.programs
            .iter()
            .find_map(|p| p.workflow(id).map(|w| (p, w)))
    }

    pub fn workflow_count(&self) -> usize {
        self.programs.iter().map(|p| p.workflows.len()).sum()
    }
}
