//! Vendor webhooks over real HTTP: signatures, mapping, idempotent
//! created/updated deliveries and the tickets they open.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use closeloop_tests::{
    Backend, Nats, TestDb, routing_decision, spawn_app_with_webhooks, unique_prefix,
};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const DELIGHTED_KEY: &str = "delighted-private-api-key";
const FORMBRICKS_KEY: &[u8] = b"formbricks signing key bytes";

fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// POST with extra headers: (status, body as JSON).
async fn post(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let _ = s.write_all(body).await;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn delighted_body(event: &str, comment: Option<&str>) -> Vec<u8> {
    json!({
        "event_type": event,
        "event_id": "evt1",
        "event_data": {
            "id": "D-5435",
            "person": {"id": "5975", "email": "cio@acme.example", "name": "Dana Li"},
            "survey_type": "nps", "score": 4, "comment": comment,
            "created_at": 1762075800,
            // Delighted stamps every change; the comment comes a minute later.
            "updated_at": if comment.is_some() { 1762075860 } else { 1762075800 },
            "person_properties": {"account_id": "ACME-001", "region": "EMEA", "role": "CIO"},
            "additional_answers": []
        }
    })
    .to_string()
    .into_bytes()
}

fn signed_delighted(body: &[u8]) -> Vec<(&'static str, String)> {
    vec![(
        "X-Delighted-Webhook-Signature",
        format!(
            "sha256={}",
            hex::encode(mac(DELIGHTED_KEY.as_bytes(), &[body]))
        ),
    )]
}

fn signed_formbricks(body: &[u8], at: u64) -> Vec<(&'static str, String)> {
    let id = "msg_2Jz8";
    let ts = at.to_string();
    let sig = B64.encode(mac(
        FORMBRICKS_KEY,
        &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
    ));
    vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", ts),
        ("webhook-signature", format!("v1,{sig}")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delighted_and_formbricks_deliveries_become_feedback_and_tickets() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("delighted.key"), DELIGHTED_KEY).unwrap();
    std::fs::write(
        dir.path().join("formbricks.key"),
        format!("whsec_{}\n", B64.encode(FORMBRICKS_KEY)),
    )
    .unwrap();
    let mapping = std::fs::read_to_string(closeloop_tests::example("webhooks.yaml"))
        .unwrap()
        .replace(
            "secret_env: CLOSELOOP_DELIGHTED_API_KEY",
            &format!(
                "secret_file: {}",
                dir.path().join("delighted.key").display()
            ),
        )
        .replace(
            "secret_env: CLOSELOOP_FORMBRICKS_SECRET",
            &format!(
                "secret_file: {}",
                dir.path().join("formbricks.key").display()
            ),
        );
    let file = dir.path().join("webhooks.yaml");
    std::fs::write(&file, mapping).unwrap();
    let app = spawn_app_with_webhooks(&nats.url(), &db.url, &prefix, Some(file)).await;
    app.import_example_directory().await;
    let addr = app.http_addr;

    // Delighted: a score first, the comment later; one feedback, one ticket.
    let created = delighted_body("survey_response.created", None);
    let (s, first) = post(
        addr,
        "/v1/webhooks/delighted",
        &signed_delighted(&created),
        &created,
    )
    .await;
    assert_eq!(
        (s, first["status"].as_str()),
        (202, Some("received")),
        "{first}"
    );
    let (s, again) = post(
        addr,
        "/v1/webhooks/delighted",
        &signed_delighted(&created),
        &created,
    )
    .await;
    assert_eq!(
        (s, again["status"].as_str()),
        (202, Some("duplicate")),
        "a redelivery is a duplicate"
    );
    let updated = delighted_body("survey_response.updated", Some("Support never called back"));
    let (s, upd) = post(
        addr,
        "/v1/webhooks/delighted",
        &signed_delighted(&updated),
        &updated,
    )
    .await;
    assert_eq!((s, upd["status"].as_str()), (202, Some("updated")), "{upd}");
    assert_eq!(upd["feedback_id"], first["feedback_id"]);
    // Delighted redelivering `created` after `updated`: a duplicate of the
    // first delivery, answered at once, never applied over the comment.
    let (s, late) = post(
        addr,
        "/v1/webhooks/delighted",
        &signed_delighted(&created),
        &created,
    )
    .await;
    assert_eq!(
        (s, late["status"].as_str()),
        (202, Some("duplicate")),
        "{late}"
    );
    assert_eq!(late["sequence"], first["sequence"]);
    let fid = first["feedback_id"].as_str().unwrap();
    let d = routing_decision(&nats, &prefix, fid).await;
    assert_eq!(d.tickets.len(), 1);
    assert_eq!(d.tickets[0].workflow_id, "rnps-detractor");
    assert_eq!(d.answers.get("nps").map(String::as_str), Some("4"));

    // Bad signatures and tampering store nothing.
    let (s, p) = post(addr, "/v1/webhooks/delighted", &[], &created).await;
    assert_eq!(
        (s, p["type"].as_str()),
        (401, Some("https://closeloop.dev/problems/bad-signature"))
    );
    let tampered = delighted_body("survey_response.created", Some("forged"));
    let (s, _) = post(
        addr,
        "/v1/webhooks/delighted",
        &signed_delighted(&created),
        &tampered,
    )
    .await;
    assert_eq!(s, 401);
    // Signed but unmappable: no account id.
    let mut no_account: Value = serde_json::from_slice(&created).unwrap();
    no_account["event_data"]["person_properties"] = Value::Null;
    let no_account = no_account.to_string().into_bytes();
    let (s, p) = post(
        addr,
        "/v1/webhooks/delighted",
        &signed_delighted(&no_account),
        &no_account,
    )
    .await;
    assert_eq!(s, 422, "{p}");
    assert_eq!(p["errors"][0]["pointer"], "/account_id");
    // Signed, mapped, but invalid for the program: NPS 11.
    let mut nps11: Value = serde_json::from_slice(&created).unwrap();
    nps11["event_data"]["id"] = json!("D-11");
    nps11["event_data"]["score"] = json!(11);
    let nps11 = nps11.to_string().into_bytes();
    let (s, p) = post(
        addr,
        "/v1/webhooks/delighted",
        &signed_delighted(&nps11),
        &nps11,
    )
    .await;
    assert_eq!(s, 422, "{p}");
    assert!(p["errors"].to_string().contains("/answers/nps"), "{p}");
    // Events without a response are acknowledged and ignored.
    let unsub = json!({"event_type": "unsubscribe.created", "event_data": {}})
        .to_string()
        .into_bytes();
    let (s, p) = post(
        addr,
        "/v1/webhooks/delighted",
        &signed_delighted(&unsub),
        &unsub,
    )
    .await;
    assert_eq!((s, p["status"].as_str()), (200, Some("ignored")));

    // Formbricks (Standard Webhooks).
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let fb = json!({
        "webhookId": "wh1", "event": "responseFinished",
        "data": {"id": "FB-1", "surveyId": "clx_product_experience", "finished": true,
                 "createdAt": "2026-11-02T09:30:00.000Z",
                 "data": {"account_id": "ACME-001", "experience_rating": 1, "what_could_be_better": "Dashboards are slow"},
                 "contactAttributes": {"email": "pm@acme.example", "name": "Pat"}}
    })
    .to_string()
    .into_bytes();
    let (s, got) = post(
        addr,
        "/v1/webhooks/formbricks",
        &signed_formbricks(&fb, now),
        &fb,
    )
    .await;
    assert_eq!(
        (s, got["status"].as_str()),
        (202, Some("received")),
        "{got}"
    );
    let d = routing_decision(&nats, &prefix, got["feedback_id"].as_str().unwrap()).await;
    let wf: Vec<_> = d.tickets.iter().map(|t| t.workflow_id.as_str()).collect();
    assert_eq!(wf, ["px-negative", "px-product-triage"]);
    // A replayed delivery from 10 minutes ago is refused.
    let (s, p) = post(
        addr,
        "/v1/webhooks/formbricks",
        &signed_formbricks(&fb, now - 600),
        &fb,
    )
    .await;
    assert_eq!(s, 401);
    assert!(p["detail"].as_str().unwrap().contains("replay"), "{p}");
    let mut wrong_key = signed_formbricks(&fb, now);
    wrong_key[2].1 = format!("v1,{}", B64.encode(mac(b"other key", &[b"x"])));
    let (s, _) = post(addr, "/v1/webhooks/formbricks", &wrong_key, &fb).await;
    assert_eq!(s, 401);
    // Oversize body.
    let big = vec![b' '; 300 * 1024];
    let (s, _) = post(
        addr,
        "/v1/webhooks/formbricks",
        &signed_formbricks(&big, now),
        &big,
    )
    .await;
    assert_eq!(s, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_without_a_mapping_file_are_404() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app_with_webhooks(&nats.url(), &db.url, &unique_prefix(), None).await;
    let (s, p) = post(app.http_addr, "/v1/webhooks/delighted", &[], b"{}").await;
    assert_eq!(s, 404);
    assert_eq!(
        p["type"],
        "https://closeloop.dev/problems/webhook-not-configured"
    );
}
