//! Feedback in, owned tickets out: the seed's scenarios end to end, one test
//! per workflow, through HTTP intake, the routing role, ticketing and the
//! ticket view, against a real NATS server and database.

use closeloop_domain::TicketId;
use closeloop_proto::v1;
use closeloop_tests::{
    App, Backend, Nats, TestDb, http_get, http_post, metric, routing_decision, spawn_app,
    subject_payloads, unique_prefix,
};
use prost::Message;
use serde_json::{Value, json};

struct Env {
    nats: Nats,
    _db: TestDb,
    prefix: String,
    app: App,
}

async fn env(backend: Backend) -> Env {
    let nats = Nats::start();
    let db = TestDb::new(backend).await;
    let prefix = unique_prefix();
    let app = spawn_app(&nats.url(), &db.url, &prefix).await;
    app.import_example_directory().await;
    Env {
        nats,
        _db: db,
        prefix,
        app,
    }
}

fn response(program: &str, account: &str, id: &str, answers: Value, attributes: Value) -> Value {
    json!({
        "response_id": id, "source": "qualtrics", "program": program, "account_id": account,
        "respondent": {"email": "cio@acme.example", "name": "Dana Li", "role": "CIO"},
        "submitted_at": "2026-11-02T09:30:00Z",
        "answers": answers, "attributes": attributes,
    })
}

impl Env {
    /// Submits over HTTP; returns the feedback id.
    async fn submit(&self, doc: &Value) -> String {
        let (status, _, body) = http_post(
            self.app.http_addr,
            "/v1/feedback",
            doc.to_string().as_bytes(),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["feedback_id"].as_str().unwrap().to_string()
    }

    /// The routing decision and the tickets it opened, in workflow order.
    async fn routed(&self, feedback_id: &str) -> (v1::RoutingDecided, Vec<v1::Ticket>) {
        let d = routing_decision(&self.nats, &self.prefix, feedback_id).await;
        let mut tickets = Vec::new();
        for t in &d.tickets {
            let id = TicketId::for_feedback(feedback_id, &t.workflow_id).to_string();
            assert_eq!(t.ticket_id, id);
            tickets.push(self.app.wait_ticket(&id).await.ticket.unwrap());
        }
        (d, tickets)
    }
}

fn workflows(d: &v1::RoutingDecided) -> Vec<&str> {
    d.tickets.iter().map(|t| t.workflow_id.as_str()).collect()
}

const CSM: &str = "dana.li@vendor.example";
const AE: &str = "raj.patel@vendor.example";
const RENEWALS: &str = "kim.nguyen@vendor.example";
const SC: &str = "tom.weber@vendor.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nps_detractor_ticket_for_the_csm_with_guide_sla_and_stakeholders() {
    let e = env(Backend::Sqlite).await;
    let fid = e
        .submit(&response(
            "relationship-nps",
            "ACME-001",
            "R_det",
            json!({"nps": 3, "comment": "Upgrade broke our workflows"}),
            json!({"region": "EMEA"}),
        ))
        .await;
    let (d, tickets) = e.routed(&fid).await;
    assert_eq!(workflows(&d), ["rnps-detractor"]);
    assert!(!d.unmatched);
    assert!(!d.config_version.is_empty());
    let t = &tickets[0];
    assert_eq!(t.owner_email, CSM);
    assert_eq!(t.stakeholder_emails, [RENEWALS, AE, SC]);
    assert_eq!(t.status, v1::TicketStatus::Open as i32);
    assert_eq!(t.source, v1::TicketSource::Workflow as i32);
    assert_eq!(
        (t.feedback_id.as_str(), t.workflow_id.as_str()),
        (fid.as_str(), "rnps-detractor")
    );
    assert_eq!(t.program_id, "relationship-nps");
    assert!(t.owner_fallback_reason.is_empty());
    assert_eq!(t.config_version, d.config_version);
    let guide = t.guide.as_ref().expect("the workflow's guide is embedded");
    assert!(
        !guide.title.is_empty() && !guide.steps.is_empty(),
        "{guide:?}"
    );
    let sla = t.sla.clone().unwrap();
    assert_eq!(sla.first_contact_secs, 48 * 3600);
    assert_eq!(sla.escalate_after_secs, 7 * 86_400);
    assert_eq!(sla.close_within_secs, 30 * 86_400);
    let opened = t.opened_at.unwrap().seconds;
    assert_eq!(t.first_contact_due.unwrap().seconds, opened + 48 * 3600);
    assert_eq!(t.close_due.unwrap().seconds, opened + 30 * 86_400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nps_passive_ticket_for_the_csm() {
    let e = env(Backend::Sqlite).await;
    let fid = e
        .submit(&response(
            "relationship-nps",
            "ACME-001",
            "R_pas",
            json!({"nps": 8}),
            json!({}),
        ))
        .await;
    let (d, tickets) = e.routed(&fid).await;
    assert_eq!(workflows(&d), ["rnps-passive"]);
    assert_eq!(tickets[0].owner_email, CSM);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nps_promoter_ticket_for_the_csm() {
    let e = env(Backend::Sqlite).await;
    let fid = e
        .submit(&response(
            "relationship-nps",
            "ACME-001",
            "R_pro",
            json!({"nps": 10}),
            json!({}),
        ))
        .await;
    let (d, tickets) = e.routed(&fid).await;
    assert_eq!(workflows(&d), ["rnps-promoter"]);
    assert_eq!(tickets[0].owner_email, CSM);
    assert_eq!(tickets[0].stakeholder_emails, [RENEWALS, AE, SC]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intent_to_reduce_usage_also_opens_a_renewals_ticket() {
    let e = env(Backend::Sqlite).await;
    let fid = e
        .submit(&response(
            "relationship-nps",
            "ACME-001",
            "R_red",
            json!({"nps": 9, "usage_intent": "reduce"}),
            json!({}),
        ))
        .await;
    let (d, tickets) = e.routed(&fid).await;
    assert_eq!(workflows(&d), ["rnps-promoter", "rnps-usage-reduction"]);
    assert_eq!(tickets[1].owner_email, RENEWALS);
    assert!(tickets[1].stakeholder_emails.contains(&CSM.to_string()));
    assert_ne!(tickets[0].id, tickets[1].id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_led_implementation_goes_to_the_delivery_manager() {
    let e = env(Backend::Sqlite).await;
    let fid = e
        .submit(&response(
            "implementation-csat",
            "ACME-001",
            "R_vnd",
            json!({"csat": 1}),
            json!({"implementation_led_by": "vendor"}),
        ))
        .await;
    let (d, tickets) = e.routed(&fid).await;
    assert_eq!(workflows(&d), ["impl-dissatisfied-vendor-led"]);
    assert_eq!(tickets[0].owner_email, "ana.silva@vendor.example");
    assert_eq!(tickets[0].stakeholder_emails, [CSM]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_led_implementation_rotates_durably_through_partner_success() {
    let mut e = env(Backend::Sqlite).await;
    let mut owners = Vec::new();
    for i in 0..3 {
        if i == 2 {
            // A restart must continue the rotation, not start it over.
            let app = std::mem::replace(
                &mut e.app,
                spawn_app(&e.nats.url(), &e._db.url, &e.prefix).await,
            );
            app.stop().await.unwrap();
        }
        let fid = e
            .submit(&response(
                "implementation-csat",
                "ACME-001",
                &format!("R_ptn{i}"),
                json!({"csat": 2}),
                json!({"implementation_led_by": "partner", "partner_id": "P-042"}),
            ))
            .await;
        let (d, tickets) = e.routed(&fid).await;
        assert_eq!(workflows(&d), ["impl-dissatisfied-partner-led"]);
        assert!(
            d.tickets[0]
                .owner_resolution
                .starts_with("team:partner-success#")
        );
        owners.push(tickets[0].owner_email.clone());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_product_experience_goes_to_cs_leadership_and_product_triage() {
    let e = env(Backend::Sqlite).await;
    let fid = e
        .submit(&response(
            "product-experience",
            "ACME-001",
            "R_px",
            json!({"experience": 1, "comment": "Dashboards are slow"}),
            json!({}),
        ))
        .await;
    let (d, tickets) = e.routed(&fid).await;
    assert_eq!(workflows(&d), ["px-negative", "px-product-triage"]);
    assert_eq!(tickets[0].owner_email, "cs-leader@vendor.example");
    assert_eq!(tickets[1].owner_email, "pm.triage@vendor.example");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_without_a_csm_goes_to_the_flagged_fallback_owner() {
    let e = env(Backend::Sqlite).await;
    let fid = e
        .submit(&response(
            "relationship-nps",
            "GLOBEX-002",
            "R_fb",
            json!({"nps": 2}),
            json!({}),
        ))
        .await;
    let (d, tickets) = e.routed(&fid).await;
    assert_eq!(workflows(&d), ["rnps-detractor"]);
    assert_eq!(d.tickets[0].owner_resolution, "fallback");
    let t = &tickets[0];
    assert_eq!(t.owner_email, "cx-operations@vendor.example");
    assert!(
        t.owner_fallback_reason.contains("GLOBEX-002 has no csm"),
        "{}",
        t.owner_fallback_reason
    );
    let (_, body) = http_get(e.app.http_addr, "/metrics").await.unwrap();
    assert_eq!(
        metric(&body, "closeloop_routing_fallback_owner_total"),
        1,
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_that_matches_nothing_is_recorded_as_unmatched() {
    let e = env(Backend::Sqlite).await;
    // Implementation CSAT 5: satisfied, no workflow.
    let fid = e
        .submit(&response(
            "implementation-csat",
            "ACME-001",
            "R_none",
            json!({"csat": 5}),
            json!({"implementation_led_by": "vendor"}),
        ))
        .await;
    let d = routing_decision(&e.nats, &e.prefix, &fid).await;
    assert!(d.unmatched);
    assert!(d.tickets.is_empty());
    let (_, body) = http_get(e.app.http_addr, "/metrics").await.unwrap();
    assert_eq!(
        metric(
            &body,
            "closeloop_routing_decisions_total{outcome=\"unmatched\"}"
        ),
        1,
        "{body}"
    );
    assert_eq!(d.answers.get("csat").map(String::as_str), Some("5"));
}

/// The whole loop on one backend: duplicate submission, a revision that is
/// attached (never a second ticket), redelivery of the decision, and a
/// directory change between two responses.
async fn updates_duplicates_and_directory_changes(backend: Backend) {
    let e = env(backend).await;
    let doc = response(
        "relationship-nps",
        "ACME-001",
        "R_loop",
        json!({"nps": 3}),
        json!({}),
    );
    let fid = e.submit(&doc).await;
    assert_eq!(
        e.submit(&doc).await,
        fid,
        "same (source, response_id), same feedback"
    );
    let (_, tickets) = e.routed(&fid).await;
    let id = tickets[0].id.clone();

    // The comment arrives later: an update attached to the existing ticket.
    let mut revised = doc.clone();
    revised["answers"]["comment"] = json!("Upgrade broke our workflows");
    revised["revised_at"] = json!("2026-11-02T10:15:00Z");
    e.submit(&revised).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let got = loop {
        let got = e.app.wait_ticket(&id).await;
        if got.ticket.as_ref().unwrap().feedback_revision == 1 {
            break got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "revision never attached"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let revised_activity = got
        .activity
        .iter()
        .find(|a| a.kind == "feedback_revised")
        .expect("revision in the activity");
    assert!(
        revised_activity
            .detail
            .contains("Upgrade broke our workflows"),
        "{}",
        revised_activity.detail
    );

    // Still exactly one decision and one ticket for the response.
    let routing = subject_payloads(
        &e.nats,
        &e.prefix,
        &format!("{}.events.routing.{fid}", e.prefix),
    )
    .await;
    let kinds: Vec<_> = routing
        .iter()
        .map(|p| {
            match v1::RoutingEvent::decode(p.as_slice())
                .unwrap()
                .event
                .unwrap()
            {
                v1::routing_event::Event::Decided(_) => "decided",
                v1::routing_event::Event::Attached(_) => "attached",
            }
        })
        .collect();
    assert_eq!(kinds, ["decided", "attached"]);
    let listed = e
        .app
        .tickets()
        .await
        .list_tickets(v1::ListTicketsRequest {
            account_id: "ACME-001".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tickets.len(), 1, "one ticket, never a second");
    let ticket_events = subject_payloads(
        &e.nats,
        &e.prefix,
        &format!("{}.events.ticket.{id}", e.prefix),
    )
    .await;
    assert_eq!(ticket_events.len(), 2, "opened + feedback_revised");

    // The account gets a new CSM: the next response goes to them.
    let mut d = e.app.directory().await;
    let upserted = d
        .upsert_account(v1::UpsertAccountRequest {
            account: Some(v1::Account {
                id: "ACME-001".into(),
                name: "Acme Corp".into(),
                region: "EMEA".into(),
                segment: "enterprise".into(),
                team: vec![v1::AccountTeamMember {
                    role: "csm".into(),
                    email: "maria.gomez@vendor.example".into(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // Read our own write: the directory view routing reads now has it.
    let a = d
        .get_account(v1::GetAccountRequest {
            account_id: "ACME-001".into(),
            min_sequence: upserted.sequence,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        a.team
            .iter()
            .any(|m| m.email == "maria.gomez@vendor.example")
    );
    let fid2 = e
        .submit(&response(
            "relationship-nps",
            "ACME-001",
            "R_loop2",
            json!({"nps": 1}),
            json!({}),
        ))
        .await;
    let (_, tickets2) = e.routed(&fid2).await;
    assert_eq!(tickets2[0].owner_email, "maria.gomez@vendor.example");
    // The renewals manager was removed from the account: reported, not fatal.
    let d2 = routing_decision(&e.nats, &e.prefix, &fid2).await;
    assert!(
        tickets2[0].stakeholder_emails.is_empty(),
        "{:?}",
        tickets2[0].stakeholder_emails
    );
    assert!(
        d2.tickets[0]
            .unresolved_stakeholders
            .iter()
            .any(|u| u.contains("renewals_manager")),
        "{:?}",
        d2.tickets[0].unresolved_stakeholders
    );
}

closeloop_tests::on_both_backends!(updates_duplicates_and_directory_changes);

/// Consumers may see any event again (a crash between the side effect and the
/// ack, a consumer reset): the whole history redelivered must write nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivering_every_event_to_routing_and_ticketing_writes_nothing() {
    let e = env(Backend::Sqlite).await;
    let mut ids = Vec::new();
    for (i, (program, answers, attributes)) in [
        ("relationship-nps", json!({"nps": 2}), json!({})),
        (
            "relationship-nps",
            json!({"nps": 9, "usage_intent": "reduce"}),
            json!({}),
        ),
        (
            "implementation-csat",
            json!({"csat": 1}),
            json!({"implementation_led_by": "partner"}),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let fid = e
            .submit(&response(
                program,
                "ACME-001",
                &format!("R_re{i}"),
                answers,
                attributes,
            ))
            .await;
        e.routed(&fid).await;
        ids.push(fid);
    }
    let stream = e.nats.events_stream(&e.prefix).await;
    // What routing and ticketing write (notifications follow at their own pace).
    let written = ["feedback", "routing", "rotation", "ticket"];
    let before = e.nats.events_of(&e.prefix, &written).await;

    // Reset both consumers: they are recreated from the start of the stream
    // and see every feedback and routing event again.
    stream.delete_consumer("routing").await.unwrap();
    stream.delete_consumer("ticketing-routes").await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let mut caught_up = true;
        for name in ["routing", "ticketing-routes"] {
            match stream
                .get_consumer::<async_nats::jetstream::consumer::pull::Config>(name)
                .await
            {
                Ok(mut c) => {
                    let i = c.info().await.unwrap();
                    caught_up &= i.num_pending == 0
                        && i.num_ack_pending == 0
                        && i.delivered.stream_sequence > 0;
                }
                Err(_) => caught_up = false,
            }
        }
        if caught_up {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "consumers did not catch up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let after = e.nats.events_of(&e.prefix, &written).await;
    assert_eq!(after, before, "redelivery wrote {} events", after - before);
    let listed = e
        .app
        .tickets()
        .await
        .list_tickets(v1::ListTicketsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tickets.len(), 4);
}

/// An event routing can never process is parked with the reason, and the
/// events after it still flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_feedback_event_is_dead_lettered_and_routing_goes_on() {
    let e = env(Backend::Sqlite).await;
    let js = async_nats::jetstream::new(e.nats.client().await);
    let subject = format!(
        "{}.events.feedback.00000000-0000-5000-8000-000000000000",
        e.prefix
    );
    js.publish(subject.clone(), "not protobuf at all".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let fid = e
        .submit(&response(
            "relationship-nps",
            "ACME-001",
            "R_after",
            json!({"nps": 1}),
            json!({}),
        ))
        .await;
    let (d, _) = e.routed(&fid).await;
    assert_eq!(d.tickets.len(), 1);
    let prefix = closeloop_eventstore::Prefix::parse(&e.prefix).unwrap();
    let parked = closeloop_eventstore::dlq::list(&js, &prefix, None)
        .await
        .unwrap();
    let p = parked
        .iter()
        .find(|p| p.original_subject == subject)
        .expect("the poison event is in the dead-letter stream");
    assert!(p.reason.contains("FeedbackEvent"), "{}", p.reason);
    // It cannot be redriven by republishing: events are never published twice.
    let err = closeloop_eventstore::dlq::redrive(&js, &prefix, p.sequence)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        closeloop_eventstore::dlq::DlqError::ParkedEvent { .. }
    ));
    let err = err.to_string();
    assert!(err.contains("only intake messages"), "{err}");
    let (_, body) = http_get(e.app.http_addr, "/metrics").await.unwrap();
    assert_eq!(
        metric(
            &body,
            "closeloop_consumer_messages_total{consumer=\"routing\",verdict=\"dead_letter\"}"
        ),
        1,
        "{body}"
    );
}

/// After a broker restart the routing and ticketing consumers resume: feedback
/// accepted after the restart still becomes an owned ticket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_resumes_after_a_broker_restart() {
    let mut e = env(Backend::Sqlite).await;
    let before = e
        .submit(&response(
            "relationship-nps",
            "ACME-001",
            "R_b1",
            json!({"nps": 1}),
            json!({}),
        ))
        .await;
    e.routed(&before).await;
    e.nats.restart();
    // Intake answers 503 until the client has reconnected; retry like an upstream would.
    let doc = response(
        "relationship-nps",
        "ACME-001",
        "R_b2",
        json!({"nps": 2}),
        json!({}),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let after = loop {
        let (status, _, body) =
            http_post(e.app.http_addr, "/v1/feedback", doc.to_string().as_bytes()).await;
        if status == 202 {
            let v: Value = serde_json::from_str(&body).unwrap();
            break v["feedback_id"].as_str().unwrap().to_string();
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            std::time::Instant::now() < deadline,
            "intake never recovered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let (_, tickets) = e.routed(&after).await;
    assert_eq!(tickets[0].owner_email, CSM);
}

/// Right after an import the directory views may not have the account or the
/// team yet; routing then reads the directory's own events (the authority)
/// instead of falling back to the fallback owner. Here the views never catch
/// up: no projector runs at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_reads_the_directory_events_when_the_views_lag() {
    use closeloop_eventstore::{EventContext, EventStore, Prefix, StoreConfig};
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let store = EventStore::open(
        nats.client().await,
        StoreConfig {
            prefix: Prefix::parse(&unique_prefix()).unwrap(),
            ..StoreConfig::default()
        },
    )
    .await
    .unwrap();
    let views = closeloop_readmodel::Db::connect(&db.url).await.unwrap();
    // The schema routing's role would run: the read model's and the directory's.
    let schema = closeloop_runtime::MigrationSet::of([
        &closeloop_readmodel::MIGRATOR,
        &closeloop_directory::MIGRATOR,
    ])
    .unwrap();
    views
        .migrate(&schema.migrator().await.unwrap())
        .await
        .unwrap();
    let writer = closeloop_directory::writer::DirectoryWriter::new(store.clone());
    let ctx = |_: &str| EventContext::default();
    writer
        .account(
            &v1::Account {
                id: "ACME-001".into(),
                name: "Acme Corp".into(),
                team: vec![v1::AccountTeamMember {
                    role: "csm".into(),
                    email: CSM.into(),
                }],
                ..Default::default()
            },
            None,
            ctx,
        )
        .await
        .unwrap();
    writer
        .team(
            &v1::Team {
                id: "partner-success".into(),
                name: "Partner Success".into(),
                members: vec!["ps.one@vendor.example".into()],
                ..Default::default()
            },
            None,
            ctx,
        )
        .await
        .unwrap();
    let catalog = std::sync::Arc::new(
        closeloop_programs::Catalog::load(&closeloop_tests::example("programs.yaml")).unwrap(),
    );
    let router = closeloop_routing::role::Router::new(catalog.clone(), views, store, Vec::new());
    let program = catalog.program("implementation-csat").unwrap();
    let snap = router.snapshot("ACME-001", program).await.unwrap();
    let (_, account) = snap.account.expect("the account, from its events");
    assert_eq!(account.team.get("csm").map(String::as_str), Some(CSM));
    assert_eq!(
        snap.teams.get("partner-success"),
        Some(&vec!["ps.one@vendor.example".to_string()])
    );
    // An account that was never imported is still unknown (and routes to the fallback).
    let missing = router.snapshot("NOPE-404", program).await.unwrap();
    assert!(missing.account.is_none());
}
