//! The example connector (`examples/crm-connector/`) against a running
//! closeloop: tickets mirrored into the CRM through signed webhooks, a
//! customer comment logged in the CRM recorded back on the ticket (once,
//! however often it is sent), the owner told of it, and the CRM's case
//! following every change.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use closeloop_proto::v1;
use closeloop_proto::v1::notification_service_client::NotificationServiceClient;
use closeloop_tests::{
    Backend, Nats, SmtpSink, TestDb, free_addr, spawn_app_configured, unique_prefix,
};
use serde_json::{Value, json};

/// A Python process of the example, killed when dropped.
struct Py(Child);

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn example(script: &str, args: &[String]) -> Py {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/crm-connector")
        .join(script);
    let mut child = Command::new("/usr/bin/python3")
        .arg(path)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening"), "{script}: {line}");
    Py(child)
}

async fn http(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let url = url.to_string();
    let method = method.to_string();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("/usr/bin/python3")
            .args([
                "-c",
                r#"
import json, sys, urllib.request, urllib.error
method, url, body = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request(url, data=body.encode() if body else None, method=method,
                             headers={"content-type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        status, text = r.status, r.read().decode()
except urllib.error.HTTPError as e:
    status, text = e.code, e.read().decode()
print(json.dumps({"status": status, "body": json.loads(text) if text.strip().startswith(("{", "[")) else text}))
"#,
                &method,
                &url,
                &body.map(|b| b.to_string()).unwrap_or_default(),
            ])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        (v["status"].as_u64().unwrap() as u16, v["body"].clone())
    })
    .await
    .unwrap()
}

/// The CRM's case `id` once `done` holds for it.
async fn case(crm: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, c) = http("GET", &format!("{crm}/api/cases/{id}"), None).await;
        if status == 200 && done(&c) {
            return c;
        }
        assert!(Instant::now() < deadline, "case {id}: {status} {c}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_connector_mirrors_tickets_and_writes_replies_back() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let sink = SmtpSink::start();
    let app = spawn_app_configured(
        &nats.url(),
        &db.url,
        &unique_prefix(),
        None,
        closeloop_notification::role::Config {
            smtp_url: Some(sink.url()),
            mail_from: "closeloop <cx@vendor.example>".into(),
            outbound_allow: "127.0.0.0/8".into(),
            ..Default::default()
        },
    )
    .await;
    app.seed_ticket_directory().await;
    let (crm_port, connector_port) = (free_addr().port(), free_addr().port());
    let crm = format!("http://127.0.0.1:{crm_port}");
    let connector = format!("http://127.0.0.1:{connector_port}");

    // Register the connector; hand it the secret.
    let mut n = NotificationServiceClient::connect(app.grpc_url())
        .await
        .unwrap();
    let added = n
        .add_webhook(v1::AddWebhookRequest {
            url: format!("{connector}/closeloop"),
            description: "CRM connector".into(),
            request_id: "crm-connector".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{}\n", added.secret)).unwrap();
    let _connector = example(
        "connector.py",
        &[
            "--port".into(),
            connector_port.to_string(),
            "--secret-file".into(),
            secret.display().to_string(),
            "--crm".into(),
            crm.clone(),
            "--closeloop".into(),
            format!("http://{}", app.http_addr),
        ],
    );
    let _crm = example(
        "crm.py",
        &[
            "--port".into(),
            crm_port.to_string(),
            "--hook".into(),
            format!("{connector}/crm"),
        ],
    );
    let test = n
        .test_webhook(v1::WebhookRequest {
            id: added.webhook.unwrap().id,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(test.delivered, "{test:?}");
    // A delivery with a wrong signature is refused by the connector.
    let (status, _) = http(
        "POST",
        &format!("{connector}/closeloop"),
        Some(json!({"type": "ticket.opened"})),
    )
    .await;
    assert_eq!(status, 401);

    // closeloop → CRM.
    let mut t = app.tickets().await;
    let ticket = t
        .open_ticket(v1::OpenTicketRequest {
            request_id: "crm-open".into(),
            account_id: "ACME-001".into(),
            owner_email: "dana@vendor.example".into(),
            title: "Renewal at risk".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    let c = case(&crm, &ticket.id, |c| c["status"] == "open").await;
    assert_eq!(c["title"], "Renewal at risk");
    assert_eq!(c["owner"], "dana@vendor.example");
    t.log_contact(v1::LogContactRequest {
        request_id: "crm-contact".into(),
        ticket_id: ticket.id.clone(),
        channel: v1::ContactChannel::Phone as i32,
        summary: "Called the sponsor".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    case(&crm, &ticket.id, |c| c["status"] == "contacted").await;

    // CRM → closeloop: a customer comment, sent twice.
    let comment = json!({"id": "c-981", "text": "Thanks for the call, the fix works"});
    let (status, _) = http(
        "POST",
        &format!("{crm}/api/cases/{}/comments", ticket.id),
        Some(comment.clone()),
    )
    .await;
    assert_eq!(status, 201);
    let again = json!({"case_id": ticket.id, "comment": comment});
    let (status, _) = http("POST", &format!("{connector}/crm"), Some(again)).await;
    assert_eq!(
        status, 204,
        "a retried write-back is answered, not applied again"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let shown = loop {
        let shown = app.wait_ticket(&ticket.id).await;
        if shown.ticket.as_ref().unwrap().reply_count >= 1 {
            break shown;
        }
        assert!(Instant::now() < deadline, "{shown:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(shown.ticket.as_ref().unwrap().reply_count, 1);
    // The owner is told, and the CRM's case sees the reply event too.
    let mails = sink.wait_for(2).await;
    assert!(
        mails.iter().any(|m| m["rcpt_to"] == "dana@vendor.example"
            && m["subject"]
                .as_str()
                .unwrap()
                .starts_with("[closeloop] The customer replied")
            && m["text"].as_str().unwrap().contains("the fix works")),
        "{mails:#?}"
    );
    case(&crm, &ticket.id, |c| {
        c["last_event"] == "ticket.customer_replied"
    })
    .await;

    t.close_ticket(v1::CloseTicketRequest {
        request_id: "crm-close".into(),
        ticket_id: ticket.id.clone(),
        root_cause_category: "product".into(),
        root_cause: "The renewal quote missed the discount agreed in the last review".into(),
        actions_taken: "Sent a corrected quote and confirmed it with the sponsor".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let closed = case(&crm, &ticket.id, |c| c["status"] == "closed").await;
    assert!(
        closed["resolution"]
            .as_str()
            .unwrap()
            .contains("missed the discount"),
        "{closed}"
    );
    assert_eq!(closed["comments"].as_array().unwrap().len(), 1);
    app.stop().await.unwrap();
}
