//! Revisions of one response as webhooks and queues really deliver them:
//! content that returns to an earlier version, older revisions arriving after
//! newer ones, and answers that report every problem at once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use closeloop_tests::{App, Backend, Nats, TestDb, http_post, spawn_app, unique_prefix};
use futures::StreamExt;
use serde_json::{Value, json};

fn example() -> Value {
    let path = closeloop_tests::example("feedback/relationship-nps-detractor.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn post(app: &App, doc: &Value) -> (u16, Value) {
    let (status, _, body) =
        http_post(app.http_addr, "/v1/feedback", doc.to_string().as_bytes()).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Every event of one feedback's subject: (event type, event id).
async fn feedback_events(nats: &Nats, prefix: &str, feedback_id: &str) -> Vec<(String, String)> {
    let stream = nats.events_stream(prefix).await;
    let subject = format!("{prefix}.events.feedback.{feedback_id}");
    let last = stream
        .get_last_raw_message_by_subject(&subject)
        .await
        .unwrap()
        .sequence;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: subject,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::new();
    while let Some(m) = messages.next().await {
        let m = m.unwrap();
        let h = m.headers.as_ref().unwrap();
        out.push((
            h.get("Closeloop-Event-Type").unwrap().to_string(),
            h.get("Closeloop-Event-Id").unwrap().to_string(),
        ));
        if m.info().unwrap().stream_sequence >= last {
            break;
        }
    }
    out
}

fn types(events: &[(String, String)]) -> Vec<&str> {
    events
        .iter()
        .map(|(t, _)| t.trim_start_matches("closeloop.v1."))
        .collect()
}

fn unique_ids(events: &[(String, String)]) -> bool {
    events
        .iter()
        .map(|(_, id)| id)
        .collect::<HashSet<_>>()
        .len()
        == events.len()
}

/// created (A), updated (B), created redelivered (A): the third is a
/// duplicate of the first, answered at once; the customer truly going back
/// to A's answers later (a newer `revised_at`) is a new revision with a new
/// event id.
async fn content_returning_to_an_earlier_version(backend: Backend) {
    let nats = Nats::start();
    let db = TestDb::new(backend).await;
    let prefix = unique_prefix();
    let app = spawn_app(&nats.url(), &db.url, &prefix).await;
    app.seed_account("ACME-001", "dana.li@vendor.example").await;

    let a = example();
    let mut b = example();
    b["answers"]["comment"] = json!("Upgrade broke our workflows; SSO is down too");
    b["revised_at"] = json!("2026-11-02T10:00:00Z");

    let (s, first) = post(&app, &a).await;
    assert_eq!((s, &first["status"]), (202, &json!("received")), "{first}");
    let (s, upd) = post(&app, &b).await;
    assert_eq!((s, &upd["status"]), (202, &json!("updated")), "{upd}");
    let started = Instant::now();
    let (s, again) = post(&app, &a).await;
    assert_eq!((s, &again["status"]), (202, &json!("duplicate")), "{again}");
    assert_eq!(again["sequence"], first["sequence"]);
    assert!(started.elapsed() < Duration::from_secs(2));

    let mut back = example();
    back["revised_at"] = json!("2026-11-02T11:00:00Z");
    let (s, rev2) = post(&app, &back).await;
    assert_eq!((s, &rev2["status"]), (202, &json!("updated")), "{rev2}");

    let fid = first["feedback_id"].as_str().unwrap();
    let events = feedback_events(&nats, &prefix, fid).await;
    assert_eq!(
        types(&events),
        ["FeedbackReceived", "FeedbackUpdated", "FeedbackUpdated"]
    );
    assert!(unique_ids(&events), "{events:?}");
    app.stop().await.unwrap();
}

/// The newer revision arrives first; the older one arriving late is recorded
/// as superseded and never replaces it (the comment added later survives).
async fn an_older_revision_arriving_late_is_superseded(backend: Backend) {
    let nats = Nats::start();
    let db = TestDb::new(backend).await;
    let prefix = unique_prefix();
    let app = spawn_app(&nats.url(), &db.url, &prefix).await;
    app.seed_account("ACME-001", "dana.li@vendor.example").await;

    let mut newer = example();
    newer["answers"]["comment"] = json!("added later: SSO is down too");
    newer["revised_at"] = json!("2026-11-02T10:00:00Z");
    let older = example();

    let (s, first) = post(&app, &newer).await;
    assert_eq!((s, &first["status"]), (202, &json!("received")), "{first}");
    let (s, late) = post(&app, &older).await;
    assert_eq!((s, &late["status"]), (202, &json!("superseded")), "{late}");
    let (s, again) = post(&app, &older).await;
    assert_eq!((s, &again["status"]), (202, &json!("duplicate")), "{again}");
    assert_eq!(again["sequence"], late["sequence"]);
    let (s, same) = post(&app, &newer).await;
    assert_eq!((s, &same["status"]), (202, &json!("duplicate")), "{same}");
    assert_eq!(same["sequence"], first["sequence"]);

    let fid = first["feedback_id"].as_str().unwrap();
    let events = feedback_events(&nats, &prefix, fid).await;
    assert_eq!(types(&events), ["FeedbackReceived", "FeedbackSuperseded"]);
    assert!(unique_ids(&events));

    // Routing never attaches the superseded revision: after a newer one is
    // attached (routing takes one response's events in order), the routing
    // record holds the decision on the first content and that attachment only.
    let decision = closeloop_tests::routing_decision(&nats, &prefix, fid).await;
    assert!(decision.answers["comment"].contains("added later"));
    let mut newest = example();
    newest["answers"]["comment"] = json!("newest: fixed after the call");
    newest["revised_at"] = json!("2026-11-02T11:00:00Z");
    let (s, upd) = post(&app, &newest).await;
    assert_eq!((s, &upd["status"]), (202, &json!("updated")), "{upd}");
    let subject = format!("{prefix}.events.routing.{fid}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let routing = loop {
        let events: Vec<_> = closeloop_tests::subject_payloads(&nats, &prefix, &subject)
            .await
            .iter()
            .map(|p| {
                <closeloop_proto::v1::RoutingEvent as prost::Message>::decode(p.as_slice())
                    .unwrap()
                    .event
                    .unwrap()
            })
            .collect();
        if events.len() >= 2 || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    use closeloop_proto::v1::routing_event::Event;
    assert_eq!(routing.len(), 2, "{routing:?}");
    let Event::Attached(a) = &routing[1] else {
        panic!("{routing:?}")
    };
    assert_eq!(a.revision, 1);
    assert!(a.answers["comment"].starts_with("newest"), "{a:?}");
    app.stop().await.unwrap();
}

/// An unknown account is reported with every other problem, and an unknown
/// program does not hide it.
async fn every_problem_in_one_answer(backend: Backend) {
    let nats = Nats::start();
    let db = TestDb::new(backend).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    app.seed_account("ACME-001", "dana.li@vendor.example").await;

    let mut d = example();
    d["account_id"] = json!("NOBODY-9");
    d["program"] = json!("nps-2027");
    d["submitted_at"] = json!("yesterday");
    let (s, p) = post(&app, &d).await;
    assert_eq!(s, 422, "{p}");
    let pointers: Vec<_> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/program", "/submitted_at", "/account_id"]);
    assert_eq!(p["detail"], "3 problems with the feedback; see errors");

    // A whole number written as a float is that number; a fraction is named.
    let mut d = example();
    d["answers"]["nps"] = json!(5.0);
    let (s, ok) = post(&app, &d).await;
    assert_eq!((s, &ok["status"]), (202, &json!("received")), "{ok}");
    let mut d = example();
    d["response_id"] = json!("R-frac");
    d["answers"]["nps"] = json!(5.5);
    let (s, p) = post(&app, &d).await;
    assert_eq!(s, 422);
    assert_eq!(p["errors"][0]["pointer"], "/answers/nps");
    assert!(
        p["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("is 5.5; an NPS answer is a whole number"),
        "{p}"
    );
    app.stop().await.unwrap();
}

closeloop_tests::on_both_backends!(
    content_returning_to_an_earlier_version,
    an_older_revision_arriving_late_is_superseded,
    every_problem_in_one_answer
);
