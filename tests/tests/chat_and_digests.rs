//! People's notification preferences from the directory: chat to Slack and
//! Teams incoming webhooks (a local receiver checks the documented shapes),
//! `none`, owner alerts always at once, and stakeholder FYIs gathered into
//! one daily digest at an hour of the person's time zone.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use closeloop_proto::v1;
use closeloop_tests::{
    App, Backend, Nats, SmtpSink, TestDb, WebhookReceiver, spawn_app_configured, unique_prefix,
};
use serde_json::Value;
use tonic_types::StatusExt;

async fn person(
    app: &App,
    email: &str,
    notify: Option<v1::NotificationPreferences>,
    chat: Option<v1::ChatWebhook>,
) {
    let mut d = app.directory().await;
    let r = d
        .upsert_person(v1::UpsertPersonRequest {
            person: Some(v1::Person {
                email: email.into(),
                name: format!("Person {email}"),
                manager_email: "lee@vendor.example".into(),
                notify,
                chat,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let p = d
        .get_person(v1::GetPersonRequest {
            email: email.into(),
            min_sequence: r.sequence,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.email, email);
}

fn prefs(channels: &[&str], digest: Option<(u32, &str)>) -> Option<v1::NotificationPreferences> {
    Some(v1::NotificationPreferences {
        channels: channels.iter().map(|c| c.to_string()).collect(),
        digest_hour: digest.map(|d| d.0),
        digest_time_zone: digest.map(|d| d.1.to_string()).unwrap_or_default(),
    })
}

async fn open(app: &App, request_id: &str, owner: &str) -> v1::Ticket {
    app.tickets()
        .await
        .open_ticket(v1::OpenTicketRequest {
            request_id: request_id.into(),
            account_id: "ACME-001".into(),
            owner_email: owner.into(),
            title: format!("Follow up {request_id}"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap()
}

async fn reassign(app: &App, request_id: &str, ticket: &str, to: &str) {
    app.tickets()
        .await
        .reassign_ticket(v1::ReassignTicketRequest {
            request_id: request_id.into(),
            ticket_id: ticket.into(),
            new_owner_email: to.into(),
            reason: "holiday cover".into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// The ticket's notifications once `done` holds for them.
async fn notifications(
    app: &App,
    ticket: &str,
    done: impl Fn(&[v1::TicketNotification]) -> bool,
) -> Vec<v1::TicketNotification> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n = app.wait_ticket(ticket).await.notifications;
        if done(&n) {
            return n;
        }
        assert!(Instant::now() < deadline, "{n:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The reassigned-FYI notification of `carol@` on `ticket`, once requested.
async fn fyi(app: &App, ticket: &str) -> v1::TicketNotification {
    let is = |n: &v1::TicketNotification| {
        n.recipient == "carol@vendor.example" && n.kind == "reassigned_fyi"
    };
    notifications(app, ticket, |n| n.iter().any(is))
        .await
        .into_iter()
        .find(is)
        .unwrap()
}

fn body(r: &Value) -> Value {
    serde_json::from_str(r["body"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferences_chat_and_daily_digests() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let sink = SmtpSink::start();
    let rx = WebhookReceiver::start();
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

    // Bad preferences are refused, every field named.
    let bad = app
        .directory()
        .await
        .upsert_person(v1::UpsertPersonRequest {
            person: Some(v1::Person {
                email: "x@vendor.example".into(),
                notify: prefs(&["sms"], Some((8, "Mars/Olympus"))),
                chat: Some(v1::ChatWebhook {
                    kind: "irc".into(),
                    url: rx.url("/slack/x"),
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let fields: BTreeSet<String> = bad
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from([
            "person.notify.channels[0]".to_string(),
            "person.notify.digest_time_zone".to_string(),
            "person.chat.kind".to_string()
        ])
    );

    // alice: chat only, her own Slack webhook. bob: e-mail and chat, through
    // his team's Teams webhook. carol: e-mail, FYIs in a digest at 08:00 in
    // Auckland. quiet: nothing. nochat: chat, but no webhook anywhere.
    let mut d = app.directory().await;
    let team = d
        .upsert_team(v1::UpsertTeamRequest {
            team: Some(v1::Team {
                id: "cx-emea".into(),
                name: "CX EMEA".into(),
                members: vec!["bob@vendor.example".into()],
                chat: Some(v1::ChatWebhook {
                    kind: "teams".into(),
                    url: rx.url("/teams/cx-emea"),
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let t = d
        .get_team(v1::GetTeamRequest {
            team_id: "cx-emea".into(),
            min_sequence: team.sequence,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.chat.unwrap().kind, "teams");
    person(
        &app,
        "alice@vendor.example",
        prefs(&["chat"], None),
        Some(v1::ChatWebhook {
            kind: "slack".into(),
            url: rx.url("/slack/alice"),
        }),
    )
    .await;
    person(
        &app,
        "bob@vendor.example",
        prefs(&["email", "chat"], None),
        None,
    )
    .await;
    person(
        &app,
        "carol@vendor.example",
        prefs(&["email"], Some((8, "Pacific/Auckland"))),
        None,
    )
    .await;
    person(&app, "quiet@vendor.example", prefs(&["none"], None), None).await;
    person(&app, "nochat@vendor.example", prefs(&["chat"], None), None).await;
    let shown = d
        .get_person(v1::GetPersonRequest {
            email: "carol@vendor.example".into(),
            min_sequence: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.notify.unwrap().digest_time_zone, "Pacific/Auckland");

    let a = open(&app, "t-alice", "alice@vendor.example").await;
    let b = open(&app, "t-bob", "bob@vendor.example").await;
    let q = open(&app, "t-quiet", "quiet@vendor.example").await;
    let c = open(&app, "t-carol", "carol@vendor.example").await;
    let n = open(&app, "t-nochat", "nochat@vendor.example").await;

    // Slack: the documented shape, the ticket in it.
    let slack = rx
        .wait_for("/slack/alice", 1, Duration::from_secs(15))
        .await;
    let s = body(&slack[0]);
    assert_eq!(s["blocks"][0]["type"], "header");
    assert_eq!(s["blocks"][0]["text"]["type"], "plain_text");
    assert!(
        s["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("Follow up t-alice"),
        "{s}"
    );
    assert_eq!(s["blocks"][1]["text"]["type"], "mrkdwn");
    assert!(
        s["blocks"][1]["text"]["text"]
            .as_str()
            .unwrap()
            .contains(&a.id),
        "{s}"
    );
    assert!(s["text"].is_string());
    // Teams: an Adaptive Card message, to bob's team's channel.
    let teams = rx
        .wait_for("/teams/cx-emea", 1, Duration::from_secs(15))
        .await;
    let t = body(&teams[0]);
    assert_eq!(t["type"], "message");
    let card = &t["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["type"], "AdaptiveCard");
    assert_eq!(card["content"]["body"][0]["type"], "TextBlock");
    assert!(
        card["content"]["body"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Follow up t-bob"),
        "{t}"
    );
    // bob also by e-mail; carol's owner alert at once despite her digest;
    // alice not by e-mail.
    let mails = sink.wait_for(2).await;
    let to: BTreeSet<String> = mails
        .iter()
        .map(|m| m["rcpt_to"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        to,
        BTreeSet::from([
            "bob@vendor.example".to_string(),
            "carol@vendor.example".to_string()
        ])
    );
    let bob = notifications(&app, &b.id, |n| {
        n.iter().filter(|n| n.status == "delivered").count() == 2
    })
    .await;
    let channels: BTreeSet<&str> = bob.iter().map(|n| n.channel.as_str()).collect();
    assert_eq!(channels, BTreeSet::from(["chat", "email"]));
    assert!(app.wait_ticket(&q.id).await.notifications.is_empty());
    assert!(
        notifications(&app, &a.id, |n| n.len() == 1 && n[0].status == "delivered").await[0].channel
            == "chat"
    );
    let nochat = notifications(&app, &n.id, |n| n.iter().any(|n| n.status == "gave_up")).await;
    assert!(
        nochat[0]
            .last_error
            .contains("no chat webhook for nochat@vendor.example"),
        "{nochat:?}"
    );

    // carol's FYIs (two of her tickets reassigned away) wait for her digest,
    // 08:00 Auckland time, together.
    reassign(&app, "r-carol-1", &c.id, "dana@vendor.example").await;
    let c2 = open(&app, "t-carol-2", "carol@vendor.example").await;
    reassign(&app, "r-carol-2", &c2.id, "dana@vendor.example").await;
    let (f1, f2) = (fyi(&app, &c.id).await, fyi(&app, &c2.id).await);
    assert_eq!(
        (f1.status.as_str(), f2.status.as_str()),
        ("pending", "pending")
    );
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    let digest_at = |id: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (Option<i64>, i64)>(
                "SELECT digest_at, next_attempt_at FROM notifications WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let (d1, next1) = digest_at(f1.id.clone()).await;
    let (d2, _) = digest_at(f2.id.clone()).await;
    let requested = closeloop_proto::convert::from_timestamp(f1.requested_at.as_ref().unwrap());
    let expected = closeloop_domain::notification::next_digest_at(requested, 8, "Pacific/Auckland")
        .unwrap()
        .as_micros();
    assert_eq!(d1, Some(expected));
    assert_eq!(d2, Some(expected), "one digest for the day");
    assert_eq!(next1, expected);
    let local = jiff::Timestamp::from_microsecond(expected)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::get("Pacific/Auckland").unwrap());
    assert_eq!((local.hour(), local.minute()), (8, 0));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        sink.messages()
            .iter()
            .filter(|m| m["rcpt_to"] == "carol@vendor.example")
            .count(),
        2,
        "her owner alerts only (t-carol, t-carol-2); the FYIs wait"
    );

    // The digest's hour comes (the test moves the digest's due time to now,
    // as the clock would): one message with both FYIs.
    let now = closeloop_notification::view::micros(std::time::SystemTime::now());
    sqlx::query("UPDATE notifications SET next_attempt_at = $1 WHERE digest_at = $2")
        .bind(now)
        .bind(expected)
        .execute(&pool)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let digest = loop {
        let got: Vec<Value> = sink
            .messages()
            .into_iter()
            .filter(|m| m["subject"].as_str().unwrap().contains("daily digest"))
            .collect();
        if !got.is_empty() {
            break got;
        }
        assert!(Instant::now() < deadline, "no digest");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(digest.len(), 1, "{digest:#?}");
    let m = &digest[0];
    assert_eq!(m["rcpt_to"], "carol@vendor.example");
    assert_eq!(
        m["subject"],
        "[closeloop] Your daily digest: 2 ticket updates"
    );
    let text = m["text"].as_str().unwrap();
    assert!(text.contains(&c.id) && text.contains(&c2.id), "{text}");
    assert!(text.contains("8:00 (Pacific/Auckland)"), "{text}");
    assert!(m["html"].as_str().unwrap().contains("<ol>"));
    assert!(m["message_id"].as_str().unwrap().starts_with("<digest-"));
    for id in [&c.id, &c2.id] {
        notifications(&app, id, |n| {
            n.iter().any(|n| {
                n.recipient == "carol@vendor.example"
                    && n.kind == "reassigned_fyi"
                    && n.status == "delivered"
            })
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        sink.messages()
            .iter()
            .filter(|m| m["subject"].as_str().unwrap().contains("daily digest"))
            .count(),
        1,
        "sent once"
    );
    app.stop().await.unwrap();
}
