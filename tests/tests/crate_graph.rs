//! The crate graph is the architecture: a role crate never depends on another
//! role's crate, the domain crate stays pure, and the graph drawn in
//! `docs/architecture.md` is the one `cargo metadata` reports.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// The services' role crates (those that exist are checked).
const ROLES: [&str; 6] = [
    "closeloop-ingestion",
    "closeloop-routing",
    "closeloop-ticketing",
    "closeloop-escalation",
    "closeloop-notification",
    "closeloop-analytics",
];

/// What the pure domain crate may depend on: no async runtime, no broker,
/// no database, no wire format. `jiff` is built with its time-zone
/// database bundled (`tzdb-bundle-always`, no `tz-system`): time-zone
/// arithmetic reads no file and gives the same answer on every machine.
const DOMAIN_MAY_USE: [&str; 4] = ["thiserror", "uuid", "proptest", "jiff"];

/// Each workspace crate's closeloop dependencies (normal and build; dev
/// dependencies are tests' business), and all its dependency names.
fn workspace() -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut crates = BTreeMap::new();
    for p in meta["packages"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap().to_string();
        let mut closeloop = BTreeSet::new();
        let mut all = BTreeSet::new();
        for d in p["dependencies"].as_array().unwrap() {
            let dep = d["name"].as_str().unwrap().to_string();
            if d["kind"].as_str() == Some("dev") {
                continue;
            }
            if dep.starts_with("closeloop") {
                closeloop.insert(dep.clone());
            }
            all.insert(dep);
        }
        crates.insert(name, (closeloop, all));
    }
    crates
}

#[test]
fn no_role_crate_depends_on_another_role() {
    let crates = workspace();
    let mut wrong = Vec::new();
    for role in ROLES.iter().filter(|r| crates.contains_key(**r)) {
        for dep in &crates[*role].0 {
            if ROLES.contains(&dep.as_str()) {
                wrong.push(format!("{role} -> {dep}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "role crates depend on other roles' crates (use closeloop-contracts, the domain \
         or a component's published query API instead): {wrong:?}"
    );
}

#[test]
fn the_domain_crate_is_pure() {
    let crates = workspace();
    let (closeloop, all) = &crates["closeloop-domain"];
    assert!(closeloop.is_empty(), "{closeloop:?}");
    let extra: Vec<_> = all
        .iter()
        .filter(|d| !DOMAIN_MAY_USE.contains(&d.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "closeloop-domain must stay pure: {extra:?}"
    );
}

/// The table between the `crate-graph` markers in docs/architecture.md.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/architecture.md"
    ))
    .unwrap();
    let start = doc
        .find("<!-- crate-graph:begin -->")
        .expect("docs/architecture.md has a crate-graph table");
    let end = doc.find("<!-- crate-graph:end -->").unwrap();
    doc[start..end]
        .lines()
        .filter(|l| l.starts_with("| `closeloop"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells[1].trim_matches('`').to_string();
            let deps = cells[2]
                .split(',')
                .map(|d| d.trim().trim_matches('`').to_string())
                .filter(|d| d.starts_with("closeloop"))
                .collect();
            (name, deps)
        })
        .collect()
}

#[test]
fn the_documented_crate_graph_is_the_real_one() {
    let real: BTreeMap<String, BTreeSet<String>> = workspace()
        .into_iter()
        .filter(|(name, _)| name != "closeloop-tests")
        .map(|(name, (deps, _))| (name, deps))
        .collect();
    let doc = documented();
    let mut diffs = Vec::new();
    for (name, deps) in &real {
        match doc.get(name) {
            None => diffs.push(format!("{name} is missing from the table")),
            Some(d) if d != deps => {
                diffs.push(format!("{name}: documented {d:?}, really {deps:?}"))
            }
            Some(_) => {}
        }
    }
    for name in doc.keys().filter(|n| !real.contains_key(*n)) {
        diffs.push(format!("{name} is documented but is not a workspace crate"));
    }
    assert!(
        diffs.is_empty(),
        "docs/architecture.md's crate graph is out of date:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn migration_versions_never_collide_and_stay_in_their_crates_range() {
    const BEFORE_RANGES: [i64; 4] = [1, 2, 3, 4];
    let mut seen = BTreeMap::new();
    for (name, m, range) in closeloop_tests::migrators() {
        for mig in m.iter() {
            if let Some(other) = seen.insert(mig.version, name) {
                panic!("version {} is in {other} and {name}", mig.version);
            }
            assert!(
                BEFORE_RANGES.contains(&mig.version) || range.contains(&mig.version),
                "{name}: migration {} is outside the crate's range {range:?} (docs/architecture.md)",
                mig.version
            );
        }
    }
    closeloop_runtime::MigrationSet::of(
        closeloop_tests::migrators().into_iter().map(|(_, m, _)| m),
    )
    .expect("one migration history");
}
