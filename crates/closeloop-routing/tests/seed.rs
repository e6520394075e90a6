//! The seed's routing scenarios, one test per workflow, against the shipped
//! example programs and directory.

use std::collections::BTreeMap;
use std::time::SystemTime;

use closeloop_directory::rows::DirectoryFile;
use closeloop_programs::Catalog;
use closeloop_programs::canonical::{self, Feedback};
use closeloop_routing::{AccountInfo, Decision, DirectoryView, Resolution, decide};
use serde_json::{Value, json};

/// The example directory in memory.
#[derive(Clone)]
struct Snapshot {
    accounts: BTreeMap<String, AccountInfo>,
    teams: BTreeMap<String, Vec<String>>,
    assigned: BTreeMap<String, u64>,
}

impl DirectoryView for Snapshot {
    fn account(&self, id: &str) -> Option<AccountInfo> {
        self.accounts.get(id).cloned()
    }
    fn team_members(&self, team: &str) -> Option<Vec<String>> {
        self.teams.get(team).cloned()
    }
    fn turn(&self, team: &str, _workflow_id: &str) -> u64 {
        self.assigned.get(team).copied().unwrap_or(0)
    }
}

fn example(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../deploy/examples/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn directory() -> Snapshot {
    let f: DirectoryFile = serde_norway::from_str(&example("directory.yaml")).unwrap();
    Snapshot {
        accounts: f
            .accounts
            .into_iter()
            .map(|a| {
                (
                    a.id.clone(),
                    AccountInfo {
                        name: a.name,
                        region: a.region,
                        segment: a.segment,
                        team: a.team,
                    },
                )
            })
            .collect(),
        teams: f.teams.into_iter().map(|t| (t.id, t.members)).collect(),
        assigned: BTreeMap::new(),
    }
}

fn catalog() -> Catalog {
    Catalog::parse(&example("programs.yaml")).unwrap()
}

fn feedback(
    c: &Catalog,
    program: &str,
    account: &str,
    answers: Value,
    attributes: Value,
) -> Feedback {
    let doc = json!({
        "response_id": "R-1", "source": "qualtrics", "program": program, "account_id": account,
        "submitted_at": "2026-11-02T09:30:00Z", "answers": answers, "attributes": attributes,
    });
    canonical::parse(&doc, c, SystemTime::now()).unwrap()
}

fn route(c: &Catalog, dir: &Snapshot, f: &Feedback) -> Decision {
    let d = decide(f, c.program(&f.program).unwrap(), &c.version, dir);
    assert!(d.trigger_errors.is_empty(), "{:?}", d.trigger_errors);
    d
}

fn workflows(d: &Decision) -> Vec<&str> {
    d.routes.iter().map(|r| r.workflow_id.as_str()).collect()
}

#[test]
fn nps_detractor_goes_to_the_csm_with_stakeholders() {
    let (c, dir) = (catalog(), directory());
    let d = route(
        &c,
        &dir,
        &feedback(
            &c,
            "relationship-nps",
            "ACME-001",
            json!({"nps": 3, "comment": "Upgrade broke our workflows"}),
            json!({}),
        ),
    );
    assert_eq!(workflows(&d), ["rnps-detractor"]);
    let r = &d.routes[0];
    assert_eq!(r.owner, "dana.li@vendor.example");
    assert_eq!(r.owner_resolution, Resolution::Role("csm".into()));
    assert_eq!(
        r.stakeholders,
        [
            "kim.nguyen@vendor.example",
            "raj.patel@vendor.example",
            "tom.weber@vendor.example"
        ]
    );
    assert_eq!(r.fallback_reason, None);
    assert_eq!(r.sla.first_contact.as_secs(), 48 * 3600);
    assert_eq!(d.config_version, c.version);
}

#[test]
fn nps_passive_and_promoter() {
    let (c, dir) = (catalog(), directory());
    let d = route(
        &c,
        &dir,
        &feedback(
            &c,
            "relationship-nps",
            "ACME-001",
            json!({"nps": 8}),
            json!({}),
        ),
    );
    assert_eq!(workflows(&d), ["rnps-passive"]);
    let d = route(
        &c,
        &dir,
        &feedback(
            &c,
            "relationship-nps",
            "ACME-001",
            json!({"nps": 10}),
            json!({}),
        ),
    );
    assert_eq!(workflows(&d), ["rnps-promoter"]);
    assert_eq!(d.routes[0].owner, "dana.li@vendor.example");
}

#[test]
fn intent_to_reduce_usage_opens_a_renewals_ticket_too() {
    let (c, dir) = (catalog(), directory());
    let d = route(
        &c,
        &dir,
        &feedback(
            &c,
            "relationship-nps",
            "ACME-001",
            json!({"nps": 9, "usage_intent": "reduce"}),
            json!({}),
        ),
    );
    assert_eq!(workflows(&d), ["rnps-promoter", "rnps-usage-reduction"]);
    assert_eq!(d.routes[1].owner, "kim.nguyen@vendor.example");
    assert_eq!(
        d.routes[1].stakeholders,
        ["dana.li@vendor.example", "raj.patel@vendor.example"]
    );
}

#[test]
fn vendor_led_implementation_goes_to_the_delivery_manager() {
    let (c, dir) = (catalog(), directory());
    let d = route(
        &c,
        &dir,
        &feedback(
            &c,
            "implementation-csat",
            "ACME-001",
            json!({"csat": 1}),
            json!({"implementation_led_by": "vendor"}),
        ),
    );
    assert_eq!(workflows(&d), ["impl-dissatisfied-vendor-led"]);
    assert_eq!(d.routes[0].owner, "ana.silva@vendor.example");
}

#[test]
fn partner_led_implementation_rotates_through_partner_success() {
    let (c, mut dir) = (catalog(), directory());
    let f = feedback(
        &c,
        "implementation-csat",
        "ACME-001",
        json!({"csat": 2}),
        json!({"implementation_led_by": "partner", "partner_id": "P-042"}),
    );
    let mut owners = Vec::new();
    for _ in 0..3 {
        let d = route(&c, &dir, &f);
        assert_eq!(workflows(&d), ["impl-dissatisfied-partner-led"]);
        let r = &d.routes[0];
        owners.push(r.owner.clone());
        // The caller advances the rotation of every route it acted on.
        *dir.assigned.entry(r.rotation.clone().unwrap()).or_default() += 1;
    }
    assert_eq!(
        owners,
        [
            "ps.one@vendor.example",
            "ps.two@vendor.example",
            "ps.one@vendor.example"
        ]
    );
}

#[test]
fn negative_product_experience_and_product_triage() {
    let (c, dir) = (catalog(), directory());
    let d = route(
        &c,
        &dir,
        &feedback(
            &c,
            "product-experience",
            "ACME-001",
            json!({"experience": 1, "comment": "Dashboards are slow"}),
            json!({}),
        ),
    );
    assert_eq!(workflows(&d), ["px-negative", "px-product-triage"]);
    assert_eq!(d.routes[0].owner, "cs-leader@vendor.example");
    assert_eq!(d.routes[0].stakeholders, ["dana.li@vendor.example"]);
    assert_eq!(d.routes[1].owner, "pm.triage@vendor.example");
    // A positive response with a comment still reaches product management.
    let d = route(
        &c,
        &dir,
        &feedback(
            &c,
            "product-experience",
            "ACME-001",
            json!({"experience": 5, "comment": "Love it"}),
            json!({}),
        ),
    );
    assert_eq!(workflows(&d), ["px-product-triage"]);
}

#[test]
fn no_csm_on_the_account_falls_back_and_flags() {
    let (c, dir) = (catalog(), directory());
    let d = route(
        &c,
        &dir,
        &feedback(
            &c,
            "relationship-nps",
            "GLOBEX-002",
            json!({"nps": 2}),
            json!({}),
        ),
    );
    let r = &d.routes[0];
    assert_eq!(r.owner, "cx-operations@vendor.example");
    assert_eq!(
        r.fallback_reason.as_deref(),
        Some("account GLOBEX-002 has no csm")
    );
    assert_eq!(
        r.unresolved_stakeholders,
        ["role solutions_consultant: account GLOBEX-002 has no solutions_consultant"]
    );
    assert_eq!(
        r.stakeholders,
        ["kim.nguyen@vendor.example", "raj.patel@vendor.example"]
    );
}

#[test]
fn a_response_that_triggers_nothing_is_unmatched() {
    let (c, dir) = (catalog(), directory());
    let d = route(
        &c,
        &dir,
        &feedback(
            &c,
            "product-experience",
            "ACME-001",
            json!({"experience": 4}),
            json!({}),
        ),
    );
    assert!(d.unmatched());
}

#[test]
fn routing_follows_directory_changes_between_responses() {
    let (c, mut dir) = (catalog(), directory());
    let f = feedback(
        &c,
        "relationship-nps",
        "ACME-001",
        json!({"nps": 1}),
        json!({}),
    );
    assert_eq!(
        route(&c, &dir, &f).routes[0].owner,
        "dana.li@vendor.example"
    );
    dir.accounts
        .get_mut("ACME-001")
        .unwrap()
        .team
        .insert("csm".into(), "new.csm@vendor.example".into());
    assert_eq!(
        route(&c, &dir, &f).routes[0].owner,
        "new.csm@vendor.example"
    );
    dir.accounts.remove("ACME-001");
    let r = &route(&c, &dir, &f).routes[0];
    assert_eq!(r.owner, "cx-operations@vendor.example");
    assert_eq!(
        r.fallback_reason.as_deref(),
        Some("account ACME-001 is not in the directory")
    );
}
