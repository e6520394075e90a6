//! The shipped example programs validate and route the seed's scenarios.

use std::collections::BTreeMap;

use closeloop_programs::{AnswerValue, Catalog, Facts, OwnerRule};

fn example() -> Catalog {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/examples/programs.yaml"
    );
    Catalog::load(std::path::Path::new(path)).unwrap_or_else(|errs| {
        panic!(
            "example programs do not validate:\n{}",
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn facts(answers: &[(&str, AnswerValue)], attributes: &[(&str, &str)]) -> Facts<'static> {
    Facts {
        answers: answers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        attributes: attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn matched(c: &Catalog, program: &str, f: &Facts<'_>) -> Vec<String> {
    let e = c.program(program).unwrap().evaluate(f);
    assert!(e.errors.is_empty(), "{:?}", e.errors);
    e.matched
}

use AnswerValue::{Int, Text};

#[test]
fn example_is_valid_and_versioned() {
    let c = example();
    assert_eq!(c.programs.len(), 3);
    assert_eq!(c.workflow_count(), 8);
    assert_eq!(c.version.len(), 12);
    let (_, w) = c.workflow("rnps-detractor").unwrap();
    assert_eq!(w.owner, OwnerRule::Role("csm".into()));
    assert_eq!(w.notify.len(), 3);
    assert_eq!(w.sla.first_contact.as_secs(), 48 * 3600);
    assert!(w.guide.templates[0].body.contains("{{respondent.name}}"));
}

#[test]
fn relationship_nps_detractor_passive_promoter() {
    let c = example();
    for (score, want) in [
        (0, "rnps-detractor"),
        (6, "rnps-detractor"),
        (7, "rnps-passive"),
        (8, "rnps-passive"),
        (9, "rnps-promoter"),
        (10, "rnps-promoter"),
    ] {
        assert_eq!(
            matched(&c, "relationship-nps", &facts(&[("nps", Int(score))], &[])),
            [want],
            "nps {score}"
        );
    }
}

#[test]
fn intent_to_reduce_usage_also_reaches_renewals() {
    let c = example();
    let m = matched(
        &c,
        "relationship-nps",
        &facts(
            &[("nps", Int(9)), ("usage_intent", Text("reduce".into()))],
            &[],
        ),
    );
    assert_eq!(m, ["rnps-promoter", "rnps-usage-reduction"]);
    let (_, w) = c.workflow("rnps-usage-reduction").unwrap();
    assert_eq!(w.owner, OwnerRule::Role("renewals_manager".into()));
}

#[test]
fn implementation_low_score_by_who_led_it() {
    let c = example();
    let vendor = facts(&[("csat", Int(2))], &[("implementation_led_by", "vendor")]);
    assert_eq!(
        matched(&c, "implementation-csat", &vendor),
        ["impl-dissatisfied-vendor-led"]
    );
    let partner = facts(
        &[("csat", Int(1))],
        &[
            ("implementation_led_by", "partner"),
            ("partner_id", "P-042"),
        ],
    );
    assert_eq!(
        matched(&c, "implementation-csat", &partner),
        ["impl-dissatisfied-partner-led"]
    );
    let (_, w) = c.workflow("impl-dissatisfied-partner-led").unwrap();
    assert_eq!(w.owner, OwnerRule::Team("partner-success".into()));
    // Satisfied, or nobody said who led it: no workflow.
    assert!(
        matched(
            &c,
            "implementation-csat",
            &facts(&[("csat", Int(5))], &[("implementation_led_by", "vendor")])
        )
        .is_empty()
    );
    assert!(matched(&c, "implementation-csat", &facts(&[("csat", Int(1))], &[])).is_empty());
}

#[test]
fn product_experience_negative_and_triage() {
    let c = example();
    let negative = facts(
        &[
            ("experience", Int(1)),
            ("comment", Text("Reports are slow".into())),
        ],
        &[],
    );
    assert_eq!(
        matched(&c, "product-experience", &negative),
        ["px-negative", "px-product-triage"]
    );
    let positive = facts(
        &[
            ("experience", Int(5)),
            ("comment", Text("Love the dashboards".into())),
        ],
        &[],
    );
    assert_eq!(
        matched(&c, "product-experience", &positive),
        ["px-product-triage"]
    );
    let silent = facts(&[("experience", Int(4))], &[]);
    assert!(matched(&c, "product-experience", &silent).is_empty());
}

#[test]
fn answers_are_checked_against_the_program() {
    let c = example();
    let p = c.program("relationship-nps").unwrap();
    let answers: BTreeMap<String, AnswerValue> = [
        ("nps".to_string(), Int(11)),
        ("partnership".to_string(), Text("great".into())),
        ("usage_intent".to_string(), Text("double".into())),
        ("mood".to_string(), Int(1)),
    ]
    .into_iter()
    .collect();
    let problems = p.check_answers(&answers);
    let keys: Vec<_> = problems.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["mood", "nps", "partnership", "usage_intent"]);
    assert!(
        problems[1].1.contains("whole number from 0 to 10"),
        "{:?}",
        problems[1]
    );
    assert!(
        problems[0].1.contains("known: nps, partnership"),
        "{:?}",
        problems[0]
    );
    let missing = p.check_answers(&BTreeMap::new());
    assert_eq!(
        missing,
        [(
            "nps".to_string(),
            "is required by program relationship-nps".to_string()
        )]
    );
}
