//! A bad programs file gets every error, each with its location.

use closeloop_programs::Catalog;

fn errors(yaml: &str) -> Vec<String> {
    Catalog::parse(yaml)
        .expect_err("should not validate")
        .into_iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn every_problem_is_reported_with_where_it_is() {
    let yaml = r#"
version: 1
programs:
  - id: rnps
    name: Relationship NPS
    metric: nps
    metric_question: score
    fallback_owner: not-an-email
    questions:
      - {id: nps, kind: nps}
      - {id: ease, kind: scale, min: 5, max: 1}
      - {id: mood, kind: emoji}
    workflows:
      - id: detractor
        name: Detractor
        when: answers.npss <= 6
        owner: {role: csm, team: cx}
        guide: {title: Guide}
        sla: {first_contact: 2w}
      - id: detractor
        name: Again
        when: "answers.nps <= "
        owner: {person: dana@vendor.example}
        guide: {title: ""}
      - id: weird
        name: Weird
        when: score > 3
        owner: {role: csm}
        guide: {title: G}
"#;
    let e = errors(yaml);
    let expect = [
        "programs[0](rnps).questions[1](ease): a scale needs whole-number min and max with min < max",
        "programs[0](rnps).questions[2](mood).kind: \"emoji\" is not a question kind",
        "programs[0](rnps).metric_question: \"score\" is not one of this program's questions",
        "programs[0](rnps).fallback_owner: \"not-an-email\" is not an e-mail address",
        "programs[0](rnps).workflows[0](detractor).when: refers to \"npss\", which is not a question (nps) or declared attribute (none)",
        "programs[0](rnps).workflows[0](detractor).owner: give exactly one of role, team or person",
        "programs[0](rnps).workflows[0](detractor).sla.first_contact: \"2w\" is not a duration",
        "programs[0](rnps).workflows[1](detractor).id: workflow \"detractor\" is declared twice",
        "programs[0](rnps).workflows[1](detractor).when: not a valid CEL expression",
        "programs[0](rnps).workflows[1](detractor).guide.title: every workflow needs a resolution guide",
        "programs[0](rnps).workflows[2](weird).when: unknown variable \"score\"",
    ];
    for want in expect {
        assert!(
            e.iter().any(|got| got.starts_with(want)),
            "missing {want:?} in:\n{}",
            e.join("\n")
        );
    }
    assert_eq!(e.len(), expect.len(), "{}", e.join("\n"));
}

#[test]
fn syntax_and_shape_errors_give_a_line() {
    let e = errors("version: 1\nprograms:\n  - id: x\n    nmae: typo\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("line 4, column 5: programs[0]: unknown field `nmae`"),
        "{}",
        e[0]
    );
    assert!(!e[0].contains(" at line "), "{}", e[0]);
    assert!(e[0].contains("unknown field `nmae`"), "{}", e[0]);
    let e = errors("version: [");
    assert!(e[0].starts_with("line "), "{}", e[0]);
}

#[test]
fn non_boolean_trigger_is_refused() {
    let yaml = r#"
version: 1
programs:
  - id: p
    name: P
    metric: custom
    fallback_owner: cx@vendor.example
    questions: [{id: q, kind: nps}]
    workflows:
      - {id: w, name: W, when: "answers.q + 1", owner: {role: csm}, guide: {title: G}}
"#;
    let e = errors(yaml);
    assert!(e[0].contains("must evaluate to true or false"), "{e:?}");
}

#[test]
fn closure_documentation_cannot_be_turned_off() {
    let yaml = r#"
version: 1
programs:
  - id: p
    name: P
    metric: custom
    fallback_owner: cx@vendor.example
    questions: [{id: q, kind: nps}]
    workflows:
      - id: w
        name: W
        when: "answers.q < 7"
        owner: {role: csm}
        guide: {title: G}
        closure: {require_root_cause: false, require_actions: false, require_opportunity: true}
"#;
    let e = errors(yaml);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("programs[0](p).workflows[0](w).closure.require_root_cause: closing a ticket always needs"), "{e:?}");
    assert!(
        e[1].starts_with("programs[0](p).workflows[0](w).closure.require_actions"),
        "{e:?}"
    );
}

const ONE_PROGRAM: &str = r#"
programs:
  - id: rnps
    name: Relationship NPS
    metric: nps
    metric_question: nps
    fallback_owner: cx@vendor.example
    questions:
      - {id: nps, kind: nps}
    workflows:
      - id: detractor
        name: Detractor
        when: answers.nps <= 6
        owner: {role: csm}
        guide: {title: Guide}
        sla:
          calendar: emea-office
          region_calendars: {APAC: apac-office}
          escalate_further: [14d]
          warn_at: [50, 90]
          pause_while_waiting: true
          reset_on_reassign: true
"#;

#[test]
fn calendars_sla_options_and_weekly_reports_are_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("de.ics"),
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n\
         BEGIN:VEVENT\r\nUID:1\r\nDTSTAMP:20260101T000000Z\r\nDTSTART;VALUE=DATE:20261224\r\n\
         DTEND;VALUE=DATE:20261227\r\nSUMMARY:Christmas\r\nEND:VEVENT\r\n\
         BEGIN:VEVENT\r\nUID:2\r\nDTSTAMP:20260101T000000Z\r\nDTSTART;VALUE=DATE:20260101\r\n\
         SUMMARY:New Year\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    )
    .unwrap();
    let yaml = format!(
        r#"
version: 1
calendars:
  - id: emea-office
    time_zone: Europe/Berlin
    working_days: [mon, tue, wed, thu, fri]
    hours: "09:00-17:00"
    holidays: ["2026-05-01"]
    holidays_ical: [de.ics]
  - id: apac-office
    time_zone: Australia/Sydney
reports:
  weekly:
    - region: EMEA
      time_zone: Europe/London
      recipients: [salesops-emea@vendor.example]
{ONE_PROGRAM}"#
    );
    let c = Catalog::parse_in(&yaml, Some(dir.path())).unwrap();
    let emea = &c.calendars.0["emea-office"];
    let dates: Vec<String> = emea.holidays.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        dates,
        [
            "2026-01-01",
            "2026-05-01",
            "2026-12-24",
            "2026-12-25",
            "2026-12-26"
        ]
    );
    let policy = c.workflow("detractor").unwrap().1.sla.policy();
    assert_eq!(policy.calendar_for("apac"), "apac-office");
    assert_eq!(policy.calendar_for("EMEA"), "emea-office");
    assert_eq!(policy.levels_secs(), [7 * 86_400, 14 * 86_400]);
    assert_eq!(policy.warn_pct, [50, 90]);
    assert!(policy.pause_while_waiting && policy.reset_on_reassign);

    // Monday 08:00 London, in winter (UTC) and in summer (UTC+1).
    let r = &c.reports[0];
    assert_eq!(r.schedule, closeloop_programs::DEFAULT_REPORT_SCHEDULE);
    let ts = |s: &str| {
        closeloop_domain::Timestamp::from_system_time(humantime::parse_rfc3339(s).unwrap())
    };
    let show =
        |t: closeloop_domain::Timestamp| humantime::format_rfc3339(t.to_system_time()).to_string();
    assert_eq!(
        show(r.next_after(ts("2026-01-07T10:00:00Z")).unwrap()),
        "2026-01-12T08:00:00Z"
    );
    assert_eq!(
        show(r.next_after(ts("2026-03-25T10:00:00Z")).unwrap()),
        "2026-03-30T07:00:00Z"
    );
    assert_eq!(
        show(r.last_at_or_before(ts("2026-01-12T08:00:00Z")).unwrap()),
        "2026-01-12T08:00:00Z"
    );
}

#[test]
fn bad_calendars_policies_and_reports_are_reported_with_where_they_are() {
    let yaml = format!(
        r#"
version: 1
calendars:
  - id: emea-office
    time_zone: Europe/Berln
    working_days: [mon, funday]
    hours: "17:00-09:00"
    holidays: ["2026-13-01"]
    holidays_ical: [missing.ics]
reports:
  weekly:
    - region: EMEA
      time_zone: Mars/Base
      schedule: "every monday"
      recipients: [not-an-email]
    - region: emea
      recipients: []
{}"#,
        ONE_PROGRAM
            .replace("calendar: emea-office", "calendar: nowhere")
            .replace("[50, 90]", "[0, 100]")
            .replace("escalate_further: [14d]", "escalate_further: [3d]")
    );
    let e = errors(&yaml);
    let expect = [
        "calendars[0](emea-office).working_days[1]: \"funday\" is not a weekday",
        "calendars[0](emea-office): \"Europe/Berln\" is not a time zone",
        "calendars[0](emea-office).hours: \"17:00-09:00\"",
        "calendars[0](emea-office).holidays[0]: \"2026-13-01\" is not a date (YYYY-MM-DD)",
        "calendars[0](emea-office).holidays_ical[0]: cannot read",
        "reports.weekly[0](EMEA).time_zone: \"Mars/Base\" is not a time zone",
        "reports.weekly[0](EMEA).schedule: \"every monday\" is not a cron schedule",
        "reports.weekly[0](EMEA).recipients[0]: \"not-an-email\" is not an e-mail address",
        "reports.weekly[1](emea).region: region \"emea\" has two weekly reports",
        "reports.weekly[1](emea).recipients: name at least one recipient",
        "programs[0](rnps).workflows[0](detractor).sla.calendar: no calendar \"nowhere\" is declared under calendars",
        "programs[0](rnps).workflows[0](detractor).sla.region_calendars.APAC: no calendar \"apac-office\"",
        "programs[0](rnps).workflows[0](detractor).sla.warn_at[0]: 0 is not a percentage",
        "programs[0](rnps).workflows[0](detractor).sla.warn_at[1]: 100 is not a percentage",
        "programs[0](rnps).workflows[0](detractor).sla.escalate_further[0]: each further level must come later",
    ];
    for want in expect {
        assert!(
            e.iter().any(|got| got.starts_with(want)),
            "missing {want:?} in {e:#?}"
        );
    }
}

/// `defaults.sla` → a program's `sla:` → a workflow's `sla:`, each
/// overriding the one before field by field; a program's manual tickets
/// run the program's policy. A bad program policy is reported where it is.
#[test]
fn a_programs_sla_sits_between_the_defaults_and_its_workflows() {
    let yaml = r#"
version: 1
defaults:
  sla: {first_contact: 24h, escalate_after: 5d}
programs:
  - id: rnps
    name: Relationship NPS
    metric: nps
    metric_question: nps
    fallback_owner: cx@vendor.example
    sla: {escalate_after: 3d, close_within: 20d}
    questions:
      - {id: nps, kind: nps}
    workflows:
      - id: detractor
        name: Detractor
        when: answers.nps <= 6
        owner: {role: csm}
        guide: {title: Guide}
        sla: {close_within: 10d}
      - id: passive
        name: Passive
        when: answers.nps >= 7
        owner: {role: csm}
        guide: {title: Guide}
  - id: other
    name: Other
    metric: nps
    metric_question: nps
    fallback_owner: cx@vendor.example
    questions:
      - {id: nps, kind: nps}
"#;
    let c = Catalog::parse(yaml).unwrap();
    let secs = |s: &closeloop_programs::Sla| {
        (
            s.first_contact.as_secs() / 3600,
            s.escalate_after.as_secs() / 86_400,
            s.close_within.as_secs() / 86_400,
        )
    };
    assert_eq!(secs(&c.default_sla), (24, 5, 30));
    assert_eq!(secs(&c.program("rnps").unwrap().sla), (24, 3, 20));
    assert_eq!(secs(&c.workflow("detractor").unwrap().1.sla), (24, 3, 10));
    assert_eq!(secs(&c.workflow("passive").unwrap().1.sla), (24, 3, 20));
    assert_eq!(secs(&c.program("other").unwrap().sla), (24, 5, 30));

    let bad = yaml.replace(
        "sla: {escalate_after: 3d, close_within: 20d}",
        "sla: {escalate_after: soon, close_within: 20d}",
    );
    let e = errors(&bad);
    assert!(
        e.iter()
            .any(|e| e.starts_with("programs[0](rnps).sla.escalate_after: \"soon\"")),
        "{e:#?}"
    );
}

const BARE_PROGRAM: &str = r#"
programs:
  - id: rnps
    name: Relationship NPS
    metric: nps
    metric_question: nps
    fallback_owner: cx@vendor.example
    questions:
      - {id: nps, kind: nps}
"#;

#[test]
fn analytics_targets_leaderboard_and_rubric_are_read_with_defaults() {
    let c = Catalog::parse(&format!("version: 1\n{BARE_PROGRAM}")).unwrap();
    let a = &c.analytics;
    assert_eq!(a.targets, closeloop_programs::Targets::default());
    assert_eq!(a.leaderboard.role, "csm");
    assert_eq!(
        a.leaderboard.questions,
        ["nps", "partnership", "future_plans"]
    );
    assert_eq!(a.leaderboard.min_responses, 5);
    assert_eq!(a.quality.root_cause_min_words, 15);
    assert!(a.quality.opportunity_when_required);

    let yaml = format!(
        r#"version: 1
analytics:
  targets:
    closure: 85
    programs: {{rnps: {{first_contact: 90}}}}
    teams: {{emea-csm: {{closure: 95}}}}
  leaderboard: {{role: account_owner, questions: [nps], min_responses: 3}}
  quality: {{root_cause_min_words: 0, actions_min_words: 20, opportunity_when_required: false}}
{BARE_PROGRAM}"#
    );
    let a = Catalog::parse(&yaml).unwrap().analytics;
    assert_eq!(a.targets.closure, Some(85));
    assert_eq!(a.program_targets["rnps"].first_contact, Some(90));
    assert_eq!(a.team_targets["emea-csm"].closure, Some(95));
    assert_eq!(a.leaderboard.role, "account_owner");
    assert_eq!(a.leaderboard.min_responses, 3);
    assert_eq!(a.quality.root_cause_min_words, 0);
    assert_eq!(a.quality.actions_min_words, 20);
    assert!(!a.quality.opportunity_when_required);
    assert!(a.quality.contact_before_close);
}

#[test]
fn bad_analytics_settings_are_reported_with_where_they_are() {
    let yaml = format!(
        r#"version: 1
analytics:
  targets:
    closure: 120
    programs: {{nope: {{closure: 0}}}}
  leaderboard: {{role: " ", questions: [], min_responses: 0}}
  quality:
    root_cause_min_words: 0
    actions_min_words: 0
    contact_before_close: false
    closed_within_target: false
    first_contact_within_target: false
    opportunity_when_required: false
{BARE_PROGRAM}"#
    );
    let errs = errors(&yaml);
    for want in [
        "analytics.targets.closure: 120 is not a target rate",
        "analytics.targets.programs.nope: program \"nope\" is not declared",
        "analytics.targets.programs.nope.closure: 0 is not a target rate",
        "analytics.leaderboard.role: name the account-team role",
        "analytics.leaderboard.questions: name at least one question",
        "analytics.leaderboard.min_responses: must be at least 1",
        "analytics.quality: every criterion is off",
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "{want}: {errs:#?}"
        );
    }
}
