//! Notification by e-mail, end to end: a detractor's response opens a
//! ticket; its owner and stakeholders receive e-mail at a real SMTP server
//! (aiosmtpd), parsed back by Python's `email` package; closing the ticket
//! tells the stakeholders what was done; nothing is sent twice.

use std::collections::{BTreeMap, BTreeSet};

use closeloop_proto::v1;
use closeloop_tests::{
    Nats, SmtpSink, TestDb, http_get, http_post, routing_decision, spawn_app_configured,
    unique_prefix,
};
use serde_json::Value;

fn notification_config(sink: &SmtpSink) -> closeloop_notification::role::Config {
    closeloop_notification::role::Config {
        smtp_url: Some(sink.url()),
        mail_from: "closeloop <cx@vendor.example>".into(),
        ..Default::default()
    }
}

/// Messages by recipient (the envelope's RCPT TO).
fn by_recipient(messages: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for m in messages {
        out.entry(m["rcpt_to"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(m.clone());
    }
    out
}

async fn notified_owner_and_stakeholders_once_each(backend: closeloop_tests::Backend) {
    let nats = Nats::start();
    let db = TestDb::new(backend).await;
    let prefix = unique_prefix();
    let sink = SmtpSink::start();
    let app = spawn_app_configured(
        &nats.url(),
        &db.url,
        &prefix,
        None,
        notification_config(&sink),
    )
    .await;
    let (_, ready) = http_get(app.http_addr, "/readyz").await.unwrap();
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert!(
        ready["email"]
            .as_str()
            .unwrap()
            .starts_with("on (smtp://127.0.0.1:"),
        "{ready}"
    );
    app.import_example_directory().await;

    let doc = std::fs::read(closeloop_tests::example(
        "feedback/relationship-nps-detractor.json",
    ))
    .unwrap();
    let (s, _, body) = http_post(app.http_addr, "/v1/feedback", &doc).await;
    assert_eq!(s, 202, "{body}");
    let feedback_id = serde_json::from_str::<Value>(&body).unwrap()["feedback_id"]
        .as_str()
        .unwrap()
        .to_string();
    let decided = routing_decision(&nats, &prefix, &feedback_id).await;
    let routed = &decided.tickets[0];
    let ticket = app.wait_ticket(&routed.ticket_id).await.ticket.unwrap();
    let owner = ticket.owner_email.clone();
    let stakeholders: BTreeSet<String> = routed
        .stakeholder_emails
        .iter()
        .filter(|s| **s != owner)
        .cloned()
        .collect();
    assert!(!stakeholders.is_empty(), "{routed:?}");

    // Opening: an alert to the owner, an FYI to each stakeholder.
    let opened = sink.wait_for(1 + stakeholders.len()).await;
    let got = by_recipient(&opened);
    let want: BTreeSet<String> = stakeholders
        .iter()
        .cloned()
        .chain([owner.clone()])
        .collect();
    assert_eq!(
        got.keys().cloned().collect::<BTreeSet<_>>(),
        want,
        "{opened:#?}"
    );
    let alert = &got[&owner][0];
    assert_eq!(alert["from"], "closeloop <cx@vendor.example>");
    let subject = alert["subject"].as_str().unwrap();
    assert!(
        subject.starts_with("[closeloop] New ticket for you: "),
        "{subject}"
    );
    assert!(subject.contains(&ticket.title), "{subject}");
    let text = alert["text"].as_str().unwrap();
    let html = alert["html"].as_str().unwrap();
    // What the customer said, the due dates, the guide and how to act.
    let comment = "Upgrade broke our workflows";
    assert!(text.contains(comment), "{text}");
    assert!(html.contains(comment), "{html}");
    assert!(text.contains("first contact by "), "{text}");
    assert!(
        text.contains(&format!("closeloop tickets show {}", ticket.id)),
        "{text}"
    );
    if let Some(g) = &routed.guide
        && let Some(step) = g.steps.first()
    {
        assert!(text.contains(step.as_str()), "{text}");
    }
    let ids: BTreeSet<String> = opened
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids.len(),
        opened.len(),
        "Message-IDs are per notification: {:#?}",
        opened
            .iter()
            .map(|m| (
                m["rcpt_to"].clone(),
                m["message_id"].clone(),
                m["subject"].clone()
            ))
            .collect::<Vec<_>>()
    );
    for s in &stakeholders {
        let fyi = &got[s][0];
        assert!(
            fyi["subject"]
                .as_str()
                .unwrap()
                .starts_with("[closeloop] FYI: ticket opened"),
            "{fyi}"
        );
    }

    // Closing: the documented outcome to the stakeholders.
    let mut c = app.tickets().await;
    c.log_contact(v1::LogContactRequest {
        request_id: "n-contact".into(),
        ticket_id: ticket.id.clone(),
        channel: v1::ContactChannel::Phone as i32,
        summary: "called the CIO".into(),
        actor: String::new(),
    })
    .await
    .unwrap();
    let root_cause = "A regression in the 4.2 upgrade broke the workflow engine";
    c.close_ticket(v1::CloseTicketRequest {
        request_id: "n-close".into(),
        ticket_id: ticket.id.clone(),
        root_cause_category: "product".into(),
        root_cause: root_cause.into(),
        actions_taken: "Shipped the 4.2.1 hotfix and walked the admins through it".into(),
        opportunity: Some(v1::Opportunity {
            kind: "expansion".into(),
            amount: Some(12000.0),
        }),
        actor: String::new(),
    })
    .await
    .unwrap();
    let all = sink.wait_for(opened.len() + stakeholders.len()).await;
    let closed: Vec<&Value> = all
        .iter()
        .filter(|m| {
            m["subject"]
                .as_str()
                .unwrap()
                .starts_with("[closeloop] Closed: ")
        })
        .collect();
    assert_eq!(
        closed
            .iter()
            .map(|m| m["rcpt_to"].as_str().unwrap().to_string())
            .collect::<BTreeSet<_>>(),
        stakeholders
    );
    assert!(closed[0]["text"].as_str().unwrap().contains(root_cause));

    // Nothing more arrives: the contact notifies nobody, and no
    // notification is sent twice.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let after = sink.messages();
    assert_eq!(after.len(), opened.len() + stakeholders.len(), "{after:#?}");
    let (_, metrics) = http_get(app.http_addr, "/metrics").await.unwrap();
    assert!(
        metrics.contains(&format!(
            "closeloop_notifications_total{{channel=\"email\",outcome=\"delivered\"}} {}",
            after.len()
        )),
        "{metrics}"
    );
    app.stop().await.unwrap();
}

closeloop_tests::on_both_backends!(notified_owner_and_stakeholders_once_each);
