//! Outbound webhooks against a real HTTP receiver, with signatures checked
//! by the Standard Webhooks reference implementation and bodies by the
//! published JSON Schema; retries, `Retry-After`, `410 Gone`, redirects to
//! internal addresses, a slow endpoint beside a fast one, and registration
//! errors.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use closeloop_proto::v1;
use closeloop_proto::v1::notification_service_client::NotificationServiceClient;
use closeloop_tests::{
    App, Backend, Nats, TestDb, WebhookReceiver, http_get, metric, spawn_app_configured,
    unique_prefix, verify_webhooks,
};
use serde_json::Value;
use tonic_types::StatusExt;

fn config() -> closeloop_notification::role::Config {
    closeloop_notification::role::Config {
        outbound_allow: "127.0.0.0/8".into(),
        ..Default::default()
    }
}

async fn service(app: &App) -> NotificationServiceClient<tonic::transport::Channel> {
    NotificationServiceClient::connect(app.grpc_url())
        .await
        .unwrap()
}

/// Registers `url` for `events` (all when empty), returning (id, secret),
/// once the endpoint is in the view (so the next ticket event reaches it).
async fn add(
    c: &mut NotificationServiceClient<tonic::transport::Channel>,
    url: &str,
    events: &[&str],
    secret: &str,
) -> (String, String) {
    let r = c
        .add_webhook(v1::AddWebhookRequest {
            url: url.into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            secret: secret.into(),
            request_id: format!("add-{url}"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let w = r.webhook.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = c
            .list_webhooks(v1::ListWebhooksRequest { all: false })
            .await
            .unwrap()
            .into_inner();
        if listed.webhooks.iter().any(|l| l.id == w.id) {
            break;
        }
        assert!(Instant::now() < deadline, "endpoint never listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (w.id, r.secret)
}

fn types(requests: &[Value]) -> Vec<String> {
    requests
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(r["body"].as_str().unwrap()).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

async fn open(app: &App, request_id: &str) -> v1::Ticket {
    app.tickets()
        .await
        .open_ticket(v1::OpenTicketRequest {
            request_id: request_id.into(),
            account_id: "ACME-001".into(),
            owner_email: "dana@vendor.example".into(),
            title: "Follow up".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap()
}

async fn signed_filtered_and_verified(backend: Backend) {
    let nats = Nats::start();
    let db = TestDb::new(backend).await;
    let rx = WebhookReceiver::start();
    let app = spawn_app_configured(&nats.url(), &db.url, &unique_prefix(), None, config()).await;
    let (_, ready) = http_get(app.http_addr, "/readyz").await.unwrap();
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(
        ready["outbound"], "guarded; allowed: 127.0.0.0/8",
        "{ready}"
    );
    app.seed_ticket_directory().await;
    let mut c = service(&app).await;
    // One endpoint for everything (a generated secret), one for closures
    // only (the operator's own secret).
    let own = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8G";
    let (all_id, all_secret) = add(&mut c, &rx.url("/ok/all"), &[], "").await;
    let (closed_id, closed_secret) =
        add(&mut c, &rx.url("/ok/closed"), &["ticket.closed"], own).await;
    assert!(all_secret.starts_with("whsec_"));
    assert_eq!(closed_secret, own);
    assert_ne!(all_id, closed_id);
    // A retried registration (same request id) registers nothing new.
    let again = c
        .add_webhook(v1::AddWebhookRequest {
            url: rx.url("/ok/all"),
            request_id: format!("add-{}", rx.url("/ok/all")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.webhook.unwrap().id, all_id);
    assert_eq!(again.secret, all_secret);

    let ticket = open(&app, "wh-open").await;
    let mut t = app.tickets().await;
    t.log_contact(v1::LogContactRequest {
        request_id: "wh-contact".into(),
        ticket_id: ticket.id.clone(),
        channel: v1::ContactChannel::Phone as i32,
        summary: "Called the customer".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    t.close_ticket(v1::CloseTicketRequest {
        request_id: "wh-close".into(),
        ticket_id: ticket.id.clone(),
        root_cause_category: "product".into(),
        root_cause: "The upgrade changed the default workflow settings for every account".into(),
        actions_taken: "Restored the settings and walked the admin through the new options".into(),
        ..Default::default()
    })
    .await
    .unwrap();

    let to_all = rx.wait_for("/ok/all", 3, Duration::from_secs(15)).await;
    let to_closed = rx.wait_for("/ok/closed", 1, Duration::from_secs(15)).await;
    let mut got = types(&to_all);
    got.sort();
    assert_eq!(
        got,
        ["ticket.closed", "ticket.contact_logged", "ticket.opened"]
    );
    assert_eq!(types(&to_closed), ["ticket.closed"]);
    let deliveries: Vec<(String, Value)> = to_all
        .iter()
        .map(|r| (all_secret.clone(), r.clone()))
        .chain(to_closed.iter().map(|r| (own.to_string(), r.clone())))
        .collect();
    for (v, (_, r)) in verify_webhooks(&deliveries).iter().zip(&deliveries) {
        assert_eq!(v, &Ok(()), "{r:#}");
    }
    // A wrong secret does not verify: the check can fail.
    let wrong = verify_webhooks(&[(closed_secret_wrong(), to_closed[0].clone())]);
    assert!(wrong[0].is_err(), "{wrong:?}");
    // The closure carries its documentation and the ticket as it stands.
    let closed: Value = serde_json::from_str(to_closed[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(closed["data"]["ticket_id"], ticket.id.as_str());
    assert_eq!(closed["data"]["ticket"]["status"], "closed");
    assert_eq!(closed["data"]["change"]["root_cause_category"], "product");

    // webhook-id is the notification's id, one per endpoint and event.
    let ids: BTreeSet<String> = deliveries
        .iter()
        .map(|(_, r)| r["headers"]["webhook-id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 4);
    let shown = app.wait_ticket(&ticket.id).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut shown = shown;
    while shown
        .notifications
        .iter()
        .filter(|n| n.channel == "webhook" && n.status == "delivered")
        .count()
        < 4
    {
        assert!(Instant::now() < deadline, "{:#?}", shown.notifications);
        tokio::time::sleep(Duration::from_millis(100)).await;
        shown = app.wait_ticket(&ticket.id).await;
    }
    let recorded: BTreeSet<String> = shown
        .notifications
        .iter()
        .filter(|n| n.channel == "webhook")
        .map(|n| n.id.clone())
        .collect();
    assert_eq!(recorded, ids);

    // A rotation: deliveries carry both signatures while the overlap lasts;
    // each secret alone verifies them.
    let rotated = c
        .rotate_webhook_secret(v1::RotateWebhookSecretRequest {
            id: all_id.clone(),
            keep_previous_secs: Some(3600),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(rotated.secret, all_secret);
    assert!(rotated.webhook.unwrap().previous_secret_until.is_some());
    // The worker reads the secret from the view: wait for the rotation there.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let l = c
            .list_webhooks(v1::ListWebhooksRequest { all: false })
            .await
            .unwrap()
            .into_inner();
        if l.webhooks
            .iter()
            .any(|w| w.id == all_id && w.previous_secret_until.is_some())
        {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.reopen_ticket(v1::ReopenTicketRequest {
        request_id: "wh-reopen".into(),
        ticket_id: ticket.id.clone(),
        reason: "The customer wrote back".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let after = rx.wait_for("/ok/all", 4, Duration::from_secs(15)).await;
    let reopened = after
        .iter()
        .find(|r| r["body"].as_str().unwrap().contains("ticket.reopened"))
        .unwrap()
        .clone();
    let sig = reopened["headers"]["webhook-signature"].as_str().unwrap();
    assert_eq!(sig.split(' ').count(), 2, "{sig}");
    let both = verify_webhooks(&[
        (rotated.secret.clone(), reopened.clone()),
        (all_secret.clone(), reopened.clone()),
    ]);
    assert_eq!(both, [Ok(()), Ok(())]);

    let (_, m) = http_get(app.http_addr, "/metrics").await.unwrap();
    assert!(
        metric(
            &m,
            "closeloop_notifications_total{channel=\"webhook\",outcome=\"delivered\"}"
        ) >= 5,
        "{m}"
    );
    app.stop().await.unwrap();
}

fn closed_secret_wrong() -> String {
    "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_filtered_and_verified_sqlite() {
    signed_filtered_and_verified(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_filtered_and_verified_postgres() {
    signed_filtered_and_verified(Backend::Postgres).await;
}

/// The notification of `ticket` to endpoint `endpoint` once `done` says so.
async fn wait_delivery(
    app: &App,
    ticket: &str,
    endpoint: &str,
    secs: u64,
    done: impl Fn(&v1::TicketNotification) -> bool,
) -> v1::TicketNotification {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = app.wait_ticket(ticket).await;
        if let Some(n) = r
            .notifications
            .iter()
            .find(|n| n.recipient == endpoint && done(n))
        {
            return n.clone();
        }
        assert!(Instant::now() < deadline, "{:#?}", r.notifications);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Failing endpoints: 503 is retried on the schedule with the same
/// webhook-id; `Retry-After` pushes the next attempt out; 410 gives up and
/// disables the endpoint; a redirect to the metadata address is refused;
/// a slow endpoint does not hold up a fast one; bad registrations are
/// refused with a violation per field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_endpoints_retry_back_off_and_stop() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let rx = WebhookReceiver::start();
    let app = spawn_app_configured(&nats.url(), &db.url, &unique_prefix(), None, config()).await;
    app.seed_ticket_directory().await;
    let mut c = service(&app).await;

    let bad = c
        .add_webhook(v1::AddWebhookRequest {
            url: "http://169.254.169.254/latest/meta-data/".into(),
            events: vec!["ticket.opened".into(), "ticket.exploded".into()],
            secret: "not-a-secret".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let fields: Vec<(String, String)> = bad
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| (v.field, v.description))
        .collect();
    let field = |f: &str| {
        fields
            .iter()
            .find(|(n, _)| n == f)
            .unwrap_or_else(|| panic!("no violation of {f}: {fields:?}"))
            .1
            .clone()
    };
    assert!(
        field("url").contains("link-local (cloud metadata)"),
        "{fields:?}"
    );
    assert!(field("url").contains("--outbound-allow"), "{fields:?}");
    assert!(field("events[1]").contains("ticket.exploded"), "{fields:?}");
    assert!(field("secret").contains("whsec_"), "{fields:?}");
    let ftp = c
        .add_webhook(v1::AddWebhookRequest {
            url: "ftp://crm.example/hooks".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(ftp.message().contains("invalid") || ftp.code() == tonic::Code::InvalidArgument);

    let opened = ["ticket.opened"];
    let (flaky, _) = add(&mut c, &rx.url("/flaky/1/x"), &opened, "").await;
    let (limited, _) = add(&mut c, &rx.url("/limited/3600/x"), &opened, "").await;
    let (gone, _) = add(&mut c, &rx.url("/gone/x"), &opened, "").await;
    let (redirect, _) = add(&mut c, &rx.url("/redirect/x"), &opened, "").await;
    let (_slow, _) = add(&mut c, &rx.url("/slow/15/x"), &opened, "").await;
    let (_fast, _) = add(&mut c, &rx.url("/ok/fast"), &opened, "").await;

    let started = Instant::now();
    let ticket = open(&app, "fail-1").await;
    // The fast endpoint is served while the slow one hangs.
    rx.wait_for("/ok/fast", 1, Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        rx.requests_to("/slow").is_empty(),
        "the slow one is still hanging"
    );

    let gave_up = wait_delivery(&app, &ticket.id, &gone, 15, |n| n.status == "gave_up").await;
    assert!(gave_up.last_error.contains("410"), "{gave_up:?}");
    let refused = wait_delivery(&app, &ticket.id, &redirect, 15, |n| n.status == "gave_up").await;
    assert!(
        refused.last_error.contains("169.254.169.254") && refused.last_error.contains("redirected"),
        "{refused:?}"
    );
    let limited_n = wait_delivery(&app, &ticket.id, &limited, 15, |n| n.attempts == 1).await;
    assert_eq!(limited_n.status, "pending");
    assert!(limited_n.last_error.contains("429"), "{limited_n:?}");
    // Retry-After: 3600 puts the next attempt an hour out, past the
    // schedule's 30 s.
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    let (next, requested): (i64, i64) =
        sqlx::query_as("SELECT next_attempt_at, requested_at FROM notifications WHERE id = $1")
            .bind(&limited_n.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(next - requested >= 3_600_000_000, "{}", next - requested);

    // 410 disabled the endpoint; the next ticket does not go there.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let l = c
            .list_webhooks(v1::ListWebhooksRequest { all: false })
            .await
            .unwrap()
            .into_inner();
        let g = l.webhooks.iter().find(|w| w.id == gone).unwrap();
        if g.status == "disabled" {
            assert!(g.disabled_reason.contains("410"), "{g:?}");
            assert_eq!(g.gave_up, 1);
            break;
        }
        assert!(Instant::now() < deadline, "{g:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = open(&app, "fail-2").await;
    rx.wait_for("/ok/fast", 2, Duration::from_secs(10)).await;
    assert!(
        app.wait_ticket(&second.id)
            .await
            .notifications
            .iter()
            .all(|n| n.recipient != gone)
    );
    assert_eq!(rx.requests_to("/gone").len(), 1);

    // Both that gave up are listed as failed.
    let failed = c
        .list_notifications(v1::ListNotificationsRequest {
            status: "gave_up".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let failed: BTreeSet<String> = failed
        .notifications
        .iter()
        .map(|n| n.recipient.clone())
        .collect();
    assert_eq!(failed, BTreeSet::from([gone.clone(), redirect.clone()]));

    // The flaky one: 503 first, then delivered on the schedule's retry
    // (about 30 s later), both attempts with the same webhook-id.
    let delivered = wait_delivery(&app, &ticket.id, &flaky, 50, |n| n.status == "delivered").await;
    assert_eq!(delivered.attempts, 2);
    let tries: Vec<Value> = rx
        .requests_to("/flaky")
        .into_iter()
        .filter(|r| r["headers"]["webhook-id"] == delivered.id.as_str())
        .collect();
    assert_eq!(tries.len(), 2, "{tries:#?}");
    assert_eq!(tries[0]["status"], 503);
    assert_eq!(tries[1]["status"], 200);
    let gap = tries[1]["at"].as_f64().unwrap() - tries[0]["at"].as_f64().unwrap();
    assert!((26.0..40.0).contains(&gap), "retried after {gap} s");
    app.stop().await.unwrap();
}
