//! HTTP `POST /v1/feedback` against a real server, NATS and database.

use closeloop_proto::v1;
use closeloop_tests::{App, Backend, Nats, TestDb, http_post, spawn_app, unique_prefix};
use serde_json::{Value, json};

/// The shipped example document (docs/ingestion.md points at it).
fn example() -> Value {
    let path = closeloop_tests::example("feedback/relationship-nps-detractor.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn with_account(app: &App) {
    app.seed_account("ACME-001", "dana.li@vendor.example").await;
}

async fn post(app: &App, doc: &Value) -> (u16, String, Value) {
    let (status, ct, body) =
        http_post(app.http_addr, "/v1/feedback", doc.to_string().as_bytes()).await;
    (
        status,
        ct,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

async fn received_duplicate_updated(backend: Backend) {
    let nats = Nats::start();
    let db = TestDb::new(backend).await;
    let prefix = unique_prefix();
    let app = spawn_app(&nats.url(), &db.url, &prefix).await;
    with_account(&app).await;

    let (s, _, first) = post(&app, &example()).await;
    assert_eq!(s, 202, "{first}");
    assert_eq!(first["status"], "received");
    let (s, _, dup) = post(&app, &example()).await;
    assert_eq!((s, &dup["status"]), (202, &json!("duplicate")));
    assert_eq!(dup["feedback_id"], first["feedback_id"]);
    assert_eq!(dup["sequence"], first["sequence"]);

    let mut changed = example();
    changed["answers"]["comment"] = json!("Upgrade broke our workflows; SSO is down too");
    changed["revised_at"] = json!("2026-11-02T10:00:00Z");
    let (s, _, upd) = post(&app, &changed).await;
    assert_eq!((s, &upd["status"]), (202, &json!("updated")), "{upd}");
    assert_eq!(upd["feedback_id"], first["feedback_id"]);

    // Exactly two feedback events are stored for the response.
    let stream = nats.events_stream(&prefix).await;
    let subject = format!(
        "{prefix}.events.feedback.{}",
        first["feedback_id"].as_str().unwrap()
    );
    let last = stream
        .get_last_raw_message_by_subject(&subject)
        .await
        .unwrap();
    assert_eq!(last.sequence, upd["sequence"].as_u64().unwrap());
    assert_eq!(
        last.headers.get("Closeloop-Event-Type").unwrap().as_str(),
        "closeloop.v1.FeedbackUpdated"
    );
    app.stop().await.unwrap();
}

async fn bad_input_is_a_problem_document(backend: Backend) {
    let nats = Nats::start();
    let db = TestDb::new(backend).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    with_account(&app).await;

    let (s, ct, body) = http_post(app.http_addr, "/v1/feedback", b"{\"response_id\": ").await;
    assert_eq!(s, 400);
    assert_eq!(ct, "application/problem+json");
    assert!(body.contains("the body is not JSON"), "{body}");

    let mut d = example();
    d["answers"]["nps"] = json!(11);
    d["program"] = json!("relationship-nps");
    d.as_object_mut().unwrap().remove("submitted_at");
    let (s, ct, p) = post(&app, &d).await;
    assert_eq!((s, ct.as_str()), (422, "application/problem+json"));
    let pointers: Vec<_> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/submitted_at", "/answers/nps"]);
    assert_eq!(p["status"], 422);

    let mut d = example();
    d["program"] = json!("nps-2027");
    let (s, _, p) = post(&app, &d).await;
    assert_eq!(s, 422);
    assert_eq!(p["errors"][0]["pointer"], "/program");

    let mut d = example();
    d["account_id"] = json!("NOBODY-9");
    let (s, _, p) = post(&app, &d).await;
    assert_eq!(s, 422);
    assert_eq!(p["errors"][0]["pointer"], "/account_id");
    assert!(
        p["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("not an account in the directory")
    );

    let mut d = example();
    d["answers"]["comment"] = json!("x".repeat(300 * 1024));
    let (s, ct, _) = http_post(app.http_addr, "/v1/feedback", d.to_string().as_bytes()).await;
    assert_eq!((s, ct.as_str()), (413, "application/problem+json"));
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_is_503_never_202() {
    let mut nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    with_account(&app).await;
    nats.stop();
    let (s, ct, p) = post(&app, &example()).await;
    assert_eq!((s, ct.as_str()), (503, "application/problem+json"), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("nothing was stored"));
    nats.restart();
    let mut status = 0;
    for _ in 0..100 {
        let (s, _, _) = post(&app, &example()).await;
        status = s;
        if s == 202 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 202);
    app.stop().await.unwrap();
}

closeloop_tests::on_both_backends!(received_duplicate_updated, bad_input_is_a_problem_document);

fn doc(response_id: &str, nps: i64) -> Value {
    let mut d = example();
    d["response_id"] = json!(response_id);
    d["answers"]["nps"] = json!(nps);
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_reports_each_item_and_is_safe_to_retry() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    with_account(&app).await;
    let batch = |items: Vec<Value>| {
        let addr = app.http_addr;
        async move {
            let (s, _, b) = http_post(
                addr,
                "/v1/feedback:batch",
                Value::Array(items).to_string().as_bytes(),
            )
            .await;
            (s, serde_json::from_str::<Value>(&b).unwrap_or(Value::Null))
        }
    };
    let (s, r) = batch(vec![doc("B-1", 2), doc("B-2", 11), doc("B-3", 9)]).await;
    assert_eq!(s, 207, "{r}");
    let statuses: Vec<_> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["received", "invalid", "received"]);
    assert_eq!(r["results"][1]["errors"][0]["pointer"], "/answers/nps");

    let (s, r) = batch(vec![doc("B-1", 2), doc("B-3", 9)]).await;
    assert_eq!(s, 202, "{r}");
    let statuses: Vec<_> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["duplicate", "duplicate"]);

    let (s, _) = batch(vec![doc("B-9", 12)]).await;
    assert_eq!(s, 422);
    let (s, _) = batch((0..501).map(|i| doc(&format!("M-{i}"), 5)).collect()).await;
    assert_eq!(s, 422);
    let (s, ct, _) = http_post(
        app.http_addr,
        "/v1/feedback:batch",
        b"{\"not\": \"a batch\"}",
    )
    .await;
    assert_eq!((s, ct.as_str()), (422, "application/problem+json"));
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_submit_and_batch() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    with_account(&app).await;
    let mut c = v1::feedback_service_client::FeedbackServiceClient::connect(app.grpc_url())
        .await
        .unwrap();
    let answer = |v: v1::answer::Value| v1::Answer { value: Some(v) };
    let fb = |rid: &str, nps: i64| v1::Feedback {
        response_id: rid.into(),
        source: "salesforce".into(),
        program: "relationship-nps".into(),
        account_id: "ACME-001".into(),
        submitted_at: Some(prost_types::Timestamp {
            seconds: 1_762_075_800,
            nanos: 0,
        }),
        answers: [
            ("nps".to_string(), answer(v1::answer::Value::IntValue(nps))),
            (
                "comment".to_string(),
                answer(v1::answer::Value::StringValue("ok".into())),
            ),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let r = c
        .submit(v1::SubmitFeedbackRequest {
            feedback: Some(fb("G-1", 4)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, v1::SubmitStatus::Received as i32);
    let again = c
        .submit(v1::SubmitFeedbackRequest {
            feedback: Some(fb("G-1", 4)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (again.status, again.sequence),
        (v1::SubmitStatus::Duplicate as i32, r.sequence)
    );

    let e = c
        .submit(v1::SubmitFeedbackRequest {
            feedback: Some(fb("G-2", 11)),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    use tonic_types::StatusExt;
    let fields: Vec<_> = e
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["answers.nps"]);

    let b = c
        .submit_batch(v1::SubmitFeedbackBatchRequest {
            feedback: vec![fb("G-3", 9), v1::Feedback::default()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b.results[0].status, v1::SubmitStatus::Received as i32);
    assert_eq!(b.results[1].status, v1::SubmitStatus::Invalid as i32);
    let missing: Vec<_> = b.results[1]
        .violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(
        missing,
        [
            "response_id",
            "source",
            "program",
            "account_id",
            "submitted_at",
            "answers"
        ]
    );
    app.stop().await.unwrap();
}
