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

    // The ticket lists who was told, on which channel, and how it went.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let listed = loop {
        let r = c
            .get_ticket(v1::GetTicketRequest {
                ticket_id: ticket.id.clone(),
                min_sequence: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let n = r.notifications;
        if n.len() == 1 + 2 * stakeholders.len() && n.iter().all(|n| n.status == "delivered") {
            break n;
        }
        assert!(std::time::Instant::now() < deadline, "{n:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let owner_alert = listed.iter().find(|n| n.recipient == owner).unwrap();
    assert_eq!(
        (
            owner_alert.kind.as_str(),
            owner_alert.channel.as_str(),
            owner_alert.attempts
        ),
        ("owner_assigned", "email", 1)
    );
    assert_eq!(
        format!("<{}@closeloop>", owner_alert.id),
        alert["message_id"].as_str().unwrap()
    );
    assert!(owner_alert.finished_at.is_some());

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
    assert!(
        metrics.contains(&format!(
            "closeloop_notification_delivery_seconds_count{{channel=\"email\"}} {}",
            after.len()
        )),
        "{metrics}"
    );
    app.stop().await.unwrap();
}

closeloop_tests::on_both_backends!(notified_owner_and_stakeholders_once_each);

/// Waits (up to `secs`) until ticket `id` lists a notification for which
/// `done` holds, and returns it.
async fn wait_notification(
    c: &mut v1::ticket_service_client::TicketServiceClient<tonic::transport::Channel>,
    id: &str,
    secs: u64,
    done: impl Fn(&v1::TicketNotification) -> bool,
) -> v1::TicketNotification {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        // A routed ticket may not be in the ticket view yet: not found is
        // "not yet", like a notification not listed yet.
        let listed = match c
            .get_ticket(v1::GetTicketRequest {
                ticket_id: id.to_string(),
                min_sequence: 0,
            })
            .await
        {
            Ok(r) => r.into_inner().notifications,
            Err(e) if e.code() == tonic::Code::NotFound => Vec::new(),
            Err(e) => panic!("{e:?}"),
        };
        if let Some(n) = listed.iter().find(|n| done(n)) {
            return n.clone();
        }
        assert!(std::time::Instant::now() < deadline, "{listed:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A refused address gives up at once; a deferred one is retried on the
/// schedule (30 s after the first attempt) and then delivered, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_mail_gives_up_deferred_mail_is_retried() {
    let nats = Nats::start();
    let db = TestDb::new(closeloop_tests::Backend::Sqlite).await;
    let sink = SmtpSink::picky();
    let app = spawn_app_configured(
        &nats.url(),
        &db.url,
        &unique_prefix(),
        None,
        notification_config(&sink),
    )
    .await;
    app.seed_ticket_directory().await;
    app.seed_person("nobody@vendor.example", None).await;
    app.seed_person("flaky@vendor.example", None).await;
    let mut c = app.tickets().await;
    let open = |request_id: &str, owner: &str| v1::OpenTicketRequest {
        request_id: request_id.into(),
        account_id: "ACME-001".into(),
        owner_email: owner.into(),
        title: "Follow up".into(),
        ..Default::default()
    };
    let refused = c
        .open_ticket(open("n-refused", "nobody@vendor.example"))
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    let deferred = c
        .open_ticket(open("n-deferred", "flaky@vendor.example"))
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();

    let gave_up = wait_notification(&mut c, &refused.id, 15, |n| n.status == "gave_up").await;
    assert_eq!(gave_up.attempts, 1);
    assert!(gave_up.last_error.contains("550"), "{gave_up:?}");

    let first = wait_notification(&mut c, &deferred.id, 15, |n| n.attempts == 1).await;
    assert_eq!(first.status, "pending", "{first:?}");
    assert!(first.last_error.contains("451"), "{first:?}");
    // The second attempt comes after the schedule's 30 s.
    let delivered = wait_notification(&mut c, &deferred.id, 60, |n| n.status == "delivered").await;
    assert_eq!(delivered.attempts, 2);
    let waited = delivered.finished_at.as_ref().map(|t| t.seconds).unwrap()
        - delivered.requested_at.as_ref().map(|t| t.seconds).unwrap();
    assert!(waited >= 29, "retried after {waited} s");
    let got = sink.messages();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0]["rcpt_to"], "flaky@vendor.example");
    assert_eq!(
        got[0]["message_id"].as_str().unwrap(),
        format!("<{}@closeloop>", delivered.id)
    );
    let (_, metrics) = http_get(app.http_addr, "/metrics").await.unwrap();
    for (outcome, n) in [("delivered", 1), ("failed", 2), ("gave_up", 1)] {
        assert!(
            metrics.contains(&format!(
                "closeloop_notifications_total{{channel=\"email\",outcome=\"{outcome}\"}} {n}"
            )),
            "{outcome}: {metrics}"
        );
    }
    app.stop().await.unwrap();
}

/// Without an SMTP server e-mail is off: `/readyz` says so and no e-mail
/// notification is requested (none piles up to go out when it is switched
/// on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_smtp_email_is_off_and_nothing_piles_up() {
    let nats = Nats::start();
    let db = TestDb::new(closeloop_tests::Backend::Sqlite).await;
    let app = closeloop_tests::spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    let (_, ready) = http_get(app.http_addr, "/readyz").await.unwrap();
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["email"], "off: no --smtp-url", "{ready}");
    app.seed_ticket_directory().await;
    let mut c = app.tickets().await;
    let opened = c
        .open_ticket(v1::OpenTicketRequest {
            request_id: "off-1".into(),
            account_id: "ACME-001".into(),
            owner_email: "dana@vendor.example".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let t = opened.ticket.unwrap();
    // The notification consumer has handled the ticket's event ...
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (_, m) = http_get(app.http_addr, "/metrics").await.unwrap();
        if m.contains(
            "closeloop_consumer_messages_total{consumer=\"notification\",verdict=\"done\"} 1",
        ) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{m}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // ... and requested nothing.
    let r = c
        .get_ticket(v1::GetTicketRequest {
            ticket_id: t.id,
            // The consumer having handled the event says nothing of the
            // ticket view: read it at least as new as the command's write.
            min_sequence: opened.sequence,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.notifications.is_empty(), "{:?}", r.notifications);
    let (_, m) = http_get(app.http_addr, "/metrics").await.unwrap();
    assert!(
        m.contains("closeloop_notifications_total{channel=\"email\",outcome=\"requested\"} 0"),
        "{m}"
    );
    app.stop().await.unwrap();
}
