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
