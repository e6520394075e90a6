//! The account directory over gRPC, on SQLite and PostgreSQL.

use closeloop_proto::v1;
use closeloop_tests::{Backend, Nats, TestDb, spawn_app, unique_prefix};
use tonic::Code;
use tonic_types::StatusExt;

fn acme(csm: &str) -> v1::Account {
    v1::Account {
        id: "ACME-001".into(),
        name: "Acme Corp".into(),
        region: "EMEA".into(),
        segment: "enterprise".into(),
        team: vec![
            v1::AccountTeamMember {
                role: "csm".into(),
                email: csm.into(),
            },
            v1::AccountTeamMember {
                role: "account_executive".into(),
                email: "ae@vendor.example".into(),
            },
        ],
        sequence: 0,
    }
}

async fn upsert_get_and_idempotency(backend: Backend) {
    let nats = Nats::start();
    let db = TestDb::new(backend).await;
    let prefix = unique_prefix();
    let app = spawn_app(&nats.url(), &db.url, &prefix).await;
    let mut d = app.directory().await;

    let first = d
        .upsert_account(v1::UpsertAccountRequest {
            account: Some(acme("Dana@Vendor.example")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(first.changed);
    // The same record again (no request id: derived from content) writes nothing.
    let again = d
        .upsert_account(v1::UpsertAccountRequest {
            account: Some(acme("dana@vendor.example")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.changed, again.sequence), (false, first.sequence));

    let a = d
        .get_account(v1::GetAccountRequest {
            account_id: "ACME-001".into(),
            min_sequence: first.sequence,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.name, "Acme Corp");
    let csm = a.team.iter().find(|m| m.role == "csm").unwrap();
    assert_eq!(csm.email, "dana@vendor.example");

    // A new CSM replaces the team.
    let changed = d
        .upsert_account(v1::UpsertAccountRequest {
            account: Some(acme("lee@vendor.example")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(changed.changed && changed.sequence > first.sequence);
    let a = d
        .get_account(v1::GetAccountRequest {
            account_id: "ACME-001".into(),
            min_sequence: changed.sequence,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.team.len(), 2);
    assert_eq!(
        a.team.iter().find(|m| m.role == "csm").unwrap().email,
        "lee@vendor.example"
    );

    let p = d
        .upsert_person(v1::UpsertPersonRequest {
            person: Some(v1::Person {
                email: "lee@vendor.example".into(),
                name: "Lee Park".into(),
                manager_email: "mo@vendor.example".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let person = d
        .get_person(v1::GetPersonRequest {
            email: "LEE@vendor.example".into(),
            min_sequence: p.sequence,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(person.manager_email, "mo@vendor.example");

    let t = d
        .upsert_team(v1::UpsertTeamRequest {
            team: Some(v1::Team {
                id: "partner-success".into(),
                name: "Partner Success".into(),
                members: vec!["ps1@vendor.example".into(), "ps2@vendor.example".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let team = d
        .get_team(v1::GetTeamRequest {
            team_id: "partner-success".into(),
            min_sequence: t.sequence,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(team.members, ["ps1@vendor.example", "ps2@vendor.example"]);

    // Views rebuild from the stream on an empty database.
    app.stop().await.unwrap();
    db.wipe().await;
    let app = spawn_app(&nats.url(), &db.url, &prefix).await;
    let mut d = app.directory().await;
    let rebuilt = d
        .get_account(v1::GetAccountRequest {
            account_id: "ACME-001".into(),
            min_sequence: changed.sequence,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rebuilt, a);
    let rebuilt_team = d
        .get_team(v1::GetTeamRequest {
            team_id: "partner-success".into(),
            min_sequence: t.sequence,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rebuilt_team, team);
    let rebuilt_person = d
        .get_person(v1::GetPersonRequest {
            email: "lee@vendor.example".into(),
            min_sequence: p.sequence,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rebuilt_person, person);
    app.stop().await.unwrap();
}

async fn bad_input(backend: Backend) {
    let nats = Nats::start();
    let db = TestDb::new(backend).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    let mut d = app.directory().await;
    let mut bad = acme("not-an-email");
    bad.id = "ACME 001".into();
    bad.name = String::new();
    let e = d
        .upsert_account(v1::UpsertAccountRequest {
            account: Some(bad),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let fields: Vec<_> = e
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["account.id", "account.name", "account.team.csm"]);

    let e = d
        .upsert_team(v1::UpsertTeamRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("team: is required"), "{}", e.message());

    let e = d
        .get_account(v1::GetAccountRequest {
            account_id: "NOPE-1".into(),
            min_sequence: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("NOPE-1"));
    app.stop().await.unwrap();
}

/// A client's request id names one request: its late retry is answered from
/// the record's history (never reverting a newer upsert), and the id reused
/// for another record is refused.
async fn request_ids_name_one_request(backend: Backend) {
    let nats = Nats::start();
    let db = TestDb::new(backend).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    let mut d = app.directory().await;
    let upsert = |rid: &str, csm: &str| v1::UpsertAccountRequest {
        request_id: rid.into(),
        account: Some(acme(csm)),
        actor: String::new(),
    };
    let first = d
        .upsert_account(upsert("import-1", "dana@vendor.example"))
        .await
        .unwrap()
        .into_inner();
    let second = d
        .upsert_account(upsert("import-2", "lee@vendor.example"))
        .await
        .unwrap()
        .into_inner();
    assert!(first.changed && second.changed);
    // import-1 retried late: the answer it had, and lee stays the CSM.
    let late = d
        .upsert_account(upsert("import-1", "dana@vendor.example"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((late.changed, late.sequence), (false, first.sequence));
    let a = d
        .get_account(v1::GetAccountRequest {
            account_id: "ACME-001".into(),
            min_sequence: second.sequence,
        })
        .await
        .unwrap()
        .into_inner();
    let csm = a.team.iter().find(|m| m.role == "csm").unwrap();
    assert_eq!(csm.email, "lee@vendor.example", "{a:?}");
    // import-1 reused for other content.
    let e = d
        .upsert_account(upsert("import-1", "kim@vendor.example"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(
        e.get_details_error_info().unwrap().reason,
        "REQUEST_ID_REUSED"
    );
    app.stop().await.unwrap();
}

/// An account's row and its account team are one version of the account,
/// and a team's row and its members one version of the team: reads racing
/// upserts that alternate between two versions never see one version's
/// region (or name) beside the other's CSM (or members). The projector
/// rewrites a record's rows in one transaction; a read of them in two
/// statements saw such a commit between them.
async fn reads_see_one_version(backend: Backend) {
    let nats = Nats::start();
    let db = TestDb::new(backend).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    let mut d = app.directory().await;
    let version = |i: usize| {
        let even = i.is_multiple_of(2);
        let mut a = acme(if even {
            "a@vendor.example"
        } else {
            "b@vendor.example"
        });
        a.region = if even { "EMEA" } else { "APAC" }.into();
        let t = v1::Team {
            id: "partner-success".into(),
            name: if even { "Alpha" } else { "Beta" }.into(),
            members: if even {
                vec!["a@vendor.example".into(), "b@vendor.example".into()]
            } else {
                vec!["c@vendor.example".into()]
            },
            ..Default::default()
        };
        (a, t)
    };
    let (a, t) = version(0);
    d.upsert_account(v1::UpsertAccountRequest {
        account: Some(a),
        ..Default::default()
    })
    .await
    .unwrap();
    let first = d
        .upsert_team(v1::UpsertTeamRequest {
            team: Some(t),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..2 {
        let mut r = app.directory().await;
        let done = done.clone();
        let min_sequence = first.sequence;
        readers.push(tokio::spawn(async move {
            let (mut reads, mut torn) = (0, Vec::new());
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let a = r
                    .get_account(v1::GetAccountRequest {
                        account_id: "ACME-001".into(),
                        min_sequence,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let csm = &a.team.iter().find(|m| m.role == "csm").unwrap().email;
                if (a.region == "EMEA") != (csm == "a@vendor.example") {
                    torn.push(format!("account: {} beside {csm}", a.region));
                }
                let t = r
                    .get_team(v1::GetTeamRequest {
                        team_id: "partner-success".into(),
                        min_sequence,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                if (t.name == "Alpha") != (t.members.len() == 2) {
                    torn.push(format!("team: {} beside {:?}", t.name, t.members));
                }
                reads += 1;
            }
            (reads, torn)
        }));
    }
    for i in 1..=150 {
        let (a, t) = version(i);
        d.upsert_account(v1::UpsertAccountRequest {
            account: Some(a),
            request_id: format!("account-{i}"),
            ..Default::default()
        })
        .await
        .unwrap();
        d.upsert_team(v1::UpsertTeamRequest {
            team: Some(t),
            request_id: format!("team-{i}"),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut reads, mut torn) = (0, Vec::new());
    for r in readers {
        let (n, t) = r.await.unwrap();
        reads += n;
        torn.extend(t);
    }
    assert!(reads >= 50, "only {reads} reads raced the upserts");
    assert!(
        torn.is_empty(),
        "{} of {reads} reads mixed two versions, e.g. {:?}",
        torn.len(),
        &torn[..torn.len().min(3)]
    );
    app.stop().await.unwrap();
}

closeloop_tests::on_both_backends!(
    upsert_get_and_idempotency,
    bad_input,
    request_ids_name_one_request,
    reads_see_one_version
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_published_on_nats_are_upserted_or_parked() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let prefix = unique_prefix();
    let app = spawn_app(&nats.url(), &db.url, &prefix).await;
    let js = async_nats::jetstream::new(nats.client().await);
    let subject = format!("{prefix}.intake.directory");
    for payload in [
        r#"{"kind": "account", "id": "WAYNE-7", "name": "Wayne Enterprises", "team": {"csm": "alfred@vendor.example"}}"#,
        r#"{"kind": "team", "id": "Bad Id", "members": ["x@vendor.example"]}"#,
        r#"{"kind": "spaceship"}"#,
    ] {
        js.publish(subject.clone(), payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut d = app.directory().await;
    let mut found = None;
    for _ in 0..100 {
        if let Ok(a) = d
            .get_account(v1::GetAccountRequest {
                account_id: "WAYNE-7".into(),
                min_sequence: 0,
            })
            .await
        {
            found = Some(a.into_inner());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let a = found.expect("account from NATS intake");
    assert_eq!(a.team[0].email, "alfred@vendor.example");

    let mut dlq = js
        .get_stream(format!("{}_DLQ", prefix.to_uppercase()))
        .await
        .unwrap();
    for _ in 0..100 {
        if dlq.info().await.unwrap().state.messages == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let state = dlq.info().await.unwrap().state.clone();
    assert_eq!(state.messages, 2);
    let mut reasons = Vec::new();
    for seq in state.first_sequence..=state.last_sequence {
        let m = dlq.get_raw_message(seq).await.unwrap();
        assert_eq!(
            m.headers
                .get("Closeloop-Original-Subject")
                .unwrap()
                .as_str(),
            subject
        );
        reasons.push(
            m.headers
                .get("Closeloop-Dead-Letter-Reason")
                .unwrap()
                .as_str()
                .to_string(),
        );
    }
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("team.id: \"Bad Id\" is not a valid id")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("not a directory record")),
        "{reasons:?}"
    );
    app.stop().await.unwrap();
}
