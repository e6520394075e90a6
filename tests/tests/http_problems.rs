//! Every error of the HTTP API is an RFC 9457 problem document with a
//! documented `type`, a string `detail` and structure in extension members.

use closeloop_tests::{Backend, Nats, TestDb, http_request, spawn_app, unique_prefix};
use serde_json::{Value, json};

/// The problem `type`s documented in docs/ingestion.md.
fn documented_types() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/ingestion.md"))
        .unwrap();
    doc.split('`')
        .filter(|s| s.starts_with("https://closeloop.dev/problems/"))
        .map(str::to_string)
        .collect()
}

/// Asserts an answer is a problem document of `kind` and returns it.
fn problem(answer: (u16, String, String), status: u16, kind: &str) -> Value {
    let (s, ct, body) = answer;
    assert_eq!(s, status, "{body}");
    assert_eq!(ct, "application/problem+json", "{body}");
    let p: Value = serde_json::from_str(&body).unwrap();
    let t = format!("https://closeloop.dev/problems/{kind}");
    assert_eq!(p["type"], t, "{p}");
    assert!(
        documented_types().contains(&t),
        "{t} is not in docs/ingestion.md"
    );
    assert_eq!(p["status"], status);
    assert!(p["title"].is_string() && p["detail"].is_string(), "{p}");
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_error_is_a_documented_problem_document() {
    let mut nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    app.seed_account("ACME-001", "dana.li@vendor.example").await;
    let addr = app.http_addr;
    let json_ct = [("Content-Type", "application/json")];

    problem(
        http_request(addr, "GET", "/v1/nothing-here", &[], b"").await,
        404,
        "not-found",
    );
    problem(
        http_request(addr, "GET", "/v1/feedback", &[], b"").await,
        405,
        "method-not-allowed",
    );
    let doc = std::fs::read(closeloop_tests::example(
        "feedback/relationship-nps-detractor.json",
    ))
    .unwrap();
    for ct in [
        vec![("Content-Type", "text/plain")],
        vec![("Content-Type", "application/x-www-form-urlencoded")],
        vec![],
    ] {
        let p = problem(
            http_request(addr, "POST", "/v1/feedback", &ct, &doc).await,
            415,
            "unsupported-media-type",
        );
        assert!(p["detail"].as_str().unwrap().contains("application/json"));
    }
    // JSON with a charset, and +json media types, are JSON.
    for ct in [
        "application/json; charset=utf-8",
        "application/feedback+json",
    ] {
        let (s, _, body) =
            http_request(addr, "POST", "/v1/feedback", &[("Content-Type", ct)], &doc).await;
        assert_eq!(s, 202, "{ct}: {body}");
    }
    problem(
        http_request(addr, "POST", "/v1/feedback", &json_ct, b"{").await,
        400,
        "malformed-json",
    );
    let p = problem(
        http_request(
            addr,
            "POST",
            "/v1/feedback:batch",
            &json_ct,
            json!([{"response_id": "x"}, {}]).to_string().as_bytes(),
        )
        .await,
        422,
        "invalid-feedback",
    );
    assert_eq!(p["results"][1]["status"], "invalid", "{p}");
    problem(
        http_request(addr, "POST", "/v1/webhooks/delighted", &json_ct, b"{}").await,
        404,
        "webhook-not-configured",
    );

    // Not ready: a string detail, the checks in an extension member.
    nats.stop();
    let mut answer = (0, String::new(), String::new());
    for _ in 0..100 {
        answer = http_request(addr, "GET", "/readyz", &[], b"").await;
        if answer.0 == 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let p = problem(answer, 503, "not-ready");
    assert!(p["detail"].as_str().unwrap().contains("NATS"), "{p}");
    assert_eq!(p["checks"]["database"], "ok", "{p}");
    // Consumers that lost the broker are reported too, once they notice.
    let mut consumers_down = false;
    for _ in 0..100 {
        let (_, _, body) = http_request(addr, "GET", "/readyz", &[], b"").await;
        let p: Value = serde_json::from_str(&body).unwrap();
        if p["checks"]["consumers"]["routing"] == "not consuming" {
            assert!(
                p["detail"].as_str().unwrap().contains("consumer routing"),
                "{p}"
            );
            consumers_down = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(consumers_down, "consumers never reported the broker outage");
    nats.restart();
    app.stop().await.unwrap();
}

/// Connectors write back over HTTP: the ticket commands answer JSON, repeat
/// a request id's answer, and refuse with documented problem documents that
/// carry the gRPC service's field details and reasons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_commands_over_http_answer_json_or_problem_documents() {
    use closeloop_proto::v1;
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    app.seed_ticket_directory().await;
    let ticket = app
        .tickets()
        .await
        .open_ticket(v1::OpenTicketRequest {
            request_id: "http-open".into(),
            account_id: "ACME-001".into(),
            owner_email: "dana@vendor.example".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    let addr = app.http_addr;
    let json_ct = [("Content-Type", "application/json")];
    let post = |cmd: &str, body: Value| {
        let path = format!("/v1/tickets/{}:{cmd}", ticket.id);
        async move { http_request(addr, "POST", &path, &json_ct, body.to_string().as_bytes()).await }
    };

    let contact = json!({"request_id": "crm-activity-1", "channel": "phone", "summary": "called the CIO", "actor": "crm-sync@vendor.example"});
    let (s, ct, body) = post("contact", contact.clone()).await;
    assert_eq!((s, ct.as_str()), (200, "application/json"), "{body}");
    let first: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&first["status"], &first["replayed"], &first["ticket_id"]),
        (&json!("contacted"), &json!(false), &json!(ticket.id))
    );
    let (_, _, body) = post("contact", contact).await;
    let again: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(again["replayed"], true);
    assert_eq!(again["sequence"], first["sequence"]);

    // Every bad field at once, as gRPC names them.
    let p = problem(
        post(
            "close",
            json!({"request_id": "crm-close-1", "root_cause_category": "weather"}),
        )
        .await,
        422,
        "invalid-command",
    );
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in ["root_cause_category", "root_cause", "actions_taken"] {
        assert!(fields.contains(&f), "{p}");
    }
    // A channel word it does not know is named back, in this API's words,
    // beside the other bad fields; a missing one is required.
    let p = problem(
        post("contact", json!({"channel": "pigeon", "summary": " "})).await,
        422,
        "invalid-command",
    );
    let detail = |p: &Value, field: &str| {
        p["errors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["field"] == field)
            .map(|e| e["detail"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no {field} in {p}"))
    };
    assert_eq!(
        detail(&p, "channel"),
        "\"pigeon\" is not a channel: use phone, email, meeting or other"
    );
    detail(&p, "request_id");
    detail(&p, "summary");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("\"pigeon\" is not a channel"),
        "{p}"
    );
    let p = problem(
        post("contact", json!({"request_id": "c-2", "summary": "called"})).await,
        422,
        "invalid-command",
    );
    assert_eq!(
        detail(&p, "channel"),
        "is required: phone, email, meeting or other"
    );
    problem(
        post("note", json!({"request_id": 7, "text": "x"})).await,
        422,
        "invalid-command",
    );
    let p = problem(
        post(
            "reopen",
            json!({"request_id": "crm-reopen-1", "reason": "again"}),
        )
        .await,
        409,
        "command-refused",
    );
    assert_eq!(p["reason"], "TICKET_NOT_CLOSED", "{p}");
    problem(
        http_request(
            addr,
            "POST",
            "/v1/tickets/0b6f0c5e-1111-5222-8333-944455556666:note",
            &json_ct,
            json!({"request_id": "n", "text": "x"})
                .to_string()
                .as_bytes(),
        )
        .await,
        404,
        "ticket-not-found",
    );
    problem(post("explode", json!({})).await, 404, "not-found");
    problem(
        http_request(
            addr,
            "POST",
            &format!("/v1/tickets/{}:note", ticket.id),
            &[("Content-Type", "text/plain")],
            b"hello",
        )
        .await,
        415,
        "unsupported-media-type",
    );
    problem(
        http_request(
            addr,
            "POST",
            &format!("/v1/tickets/{}:note", ticket.id),
            &json_ct,
            b"{not json",
        )
        .await,
        400,
        "malformed-json",
    );
    // The write is the ticket's like any other: the view has it (read at
    // the contact's sequence: the ticket alone may be in the view before).
    let view = app
        .tickets()
        .await
        .get_ticket(v1::GetTicketRequest {
            ticket_id: ticket.id.clone(),
            min_sequence: first["sequence"].as_u64().unwrap(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        view.activity.iter().any(|a| a.kind == "contact_logged"),
        "{view:?}"
    );
    app.stop().await.unwrap();
}
