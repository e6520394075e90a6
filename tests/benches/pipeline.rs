//! `make bench`: the hot path against the broker's raw speed on this machine.
//!
//! 1. Raw JetStream publish rate: 300-byte messages to a file-backed R1
//!    stream, awaited one at a time and with 512 acks in flight.
//! 2. The whole front half of the loop, in process, on a private nats-server
//!    and a fresh database: N canonical responses posted to
//!    `/v1/feedback:batch` (500 per request, 4 requests in flight), routed,
//!    and opened as tickets. Reported: intake rate (responses durably
//!    accepted per second), end-to-end rate (responses whose ticket is in the
//!    ticket view per second), events written per response, and the
//!    end-to-end rate as a fraction of the pipelined raw publish rate.
//! 3. Owner notified: every ticket's owner alert e-mailed to a local SMTP
//!    server (Debian's aiosmtpd, storing into a Maildir): notifications per
//!    second, and p50/p99 from the response's batch being accepted to the
//!    owner's e-mail being stored (the Maildir file name's arrival time);
//!    and the same for each ticket's `ticket.opened` webhook delivery to a
//!    local receiver (tests/support/webhook_receiver.py).
//!
//! Environment: BENCH_RESPONSES (default 5000), BENCH_DB (sqlite|postgres),
//! BENCH_RAW_MESSAGES (default 20000), BENCH_NO_MAIL=1 (e-mail off, no
//! webhook: the front half alone, for comparison; part 3 is skipped).

use std::time::{Duration, Instant};

use std::collections::HashMap;

use closeloop_tests::{
    Backend, Nats, SmtpSink, TestDb, WebhookReceiver, raw_publish, spawn_app_configured,
    unique_prefix,
};
use futures::StreamExt;
use serde_json::{Value, json};
use sqlx::Row;

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// A response that opens exactly one ticket.
fn response(i: usize) -> Value {
    let (program, answers, attributes) = match i % 5 {
        0..=2 => (
            "relationship-nps",
            json!({"nps": (i % 11) as i64, "partnership": 7}),
            json!({"region": "EMEA"}),
        ),
        3 => (
            "implementation-csat",
            json!({"csat": 1 + (i % 2) as i64}),
            json!({"implementation_led_by": if i.is_multiple_of(2) { "vendor" } else { "partner" }, "partner_id": "P-042"}),
        ),
        _ => ("product-experience", json!({"experience": 1}), json!({})),
    };
    json!({
        "response_id": format!("B{i:08}"), "source": "bench",
        "program": program, "account_id": "ACME-001",
        "respondent": {"email": "cio@acme.example", "name": "Dana Li", "role": "CIO"},
        "submitted_at": "2026-11-02T09:30:00Z",
        "answers": answers, "attributes": attributes,
    })
}

async fn count(db: &sqlx::AnyPool, sql: &str) -> i64 {
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(db)
        .await
        .map(|r| r.get::<i64, _>(0))
        .unwrap_or(0)
}

/// The `closeloop` binary's allocator, so the process measured is the one
/// shipped.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_usize("BENCH_RESPONSES", 5000);
    let raw_n = env_usize("BENCH_RAW_MESSAGES", 20_000);
    let backend = match std::env::var("BENCH_DB").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    sqlx::any::install_default_drivers();

    let nats = Nats::start();
    let awaited = raw_publish(&nats, raw_n / 4, 1).await;
    let pipelined = raw_publish(&nats, raw_n, 512).await;
    println!("broker: nats-server 2.9 file storage R1, 300-byte messages");
    println!("  publish, each ack awaited:   {awaited:>9.0} msg/s");
    println!("  publish, 512 acks in flight: {pipelined:>9.0} msg/s");

    let db = TestDb::new(backend).await;
    let prefix = unique_prefix();
    let sink = SmtpSink::start();
    let receiver = WebhookReceiver::start();
    let mail = std::env::var_os("BENCH_NO_MAIL").is_none();
    let app = spawn_app_configured(
        &nats.url(),
        &db.url,
        &prefix,
        None,
        if mail {
            closeloop_notification::role::Config {
                smtp_url: Some(sink.url()),
                mail_from: "bench <cx@vendor.example>".into(),
                outbound_allow: "127.0.0.0/8".into(),
                ..Default::default()
            }
        } else {
            Default::default()
        },
    )
    .await;
    app.import_example_directory().await;
    if mail {
        // A connected system that wants every new ticket.
        let mut n =
            closeloop_proto::v1::notification_service_client::NotificationServiceClient::connect(
                app.grpc_url(),
            )
            .await
            .unwrap();
        n.add_webhook(closeloop_proto::v1::AddWebhookRequest {
            url: receiver.url("/ok/bench"),
            events: vec!["ticket.opened".into()],
            request_id: "bench".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while n
            .list_webhooks(closeloop_proto::v1::ListWebhooksRequest { all: false })
            .await
            .unwrap()
            .into_inner()
            .webhooks
            .is_empty()
        {
            assert!(Instant::now() < deadline, "webhook endpoint never listed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    // The front half's own events (notifications are counted apart).
    let front = ["feedback", "routing", "rotation", "ticket"];
    let before_events = nats.events_of(&prefix, &front).await;

    let docs: Vec<Value> = (0..n).map(response).collect();
    let bodies: Vec<Vec<u8>> = docs
        .chunks(500)
        .map(|c| Value::Array(c.to_vec()).to_string().into_bytes())
        .collect();
    let addr = app.http_addr;
    let t0 = Instant::now();
    let start_wall = std::time::SystemTime::now();
    // (batch index, status, when it was accepted, since t0)
    let statuses: Vec<(usize, u16, Duration)> =
        futures::stream::iter(bodies.into_iter().enumerate())
            .map(|(i, b)| async move {
                let s = closeloop_tests::http_post(addr, "/v1/feedback:batch", &b)
                    .await
                    .0;
                (i, s, t0.elapsed())
            })
            .buffer_unordered(4)
            .collect()
            .await;
    let intake = t0.elapsed();
    assert!(
        statuses.iter().all(|(_, s, _)| *s == 202),
        "batch statuses: {statuses:?}"
    );
    let accepted_at: HashMap<usize, Duration> =
        statuses.iter().map(|(i, _, at)| (*i, *at)).collect();

    let trace = std::env::var_os("BENCH_TRACE").is_some();
    let events_stream = nats.events_stream(&prefix).await;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let tickets = count(&pool, "SELECT COUNT(*) FROM tickets").await;
        if trace {
            let mut line = format!("{:>7.2?} tickets {tickets:>6}", t0.elapsed());
            for c in ["routing", "ticketing-routes"] {
                if let Ok(mut consumer) = events_stream
                    .get_consumer::<async_nats::jetstream::consumer::pull::Config>(c)
                    .await
                    && let Ok(i) = consumer.info().await
                {
                    line.push_str(&format!(
                        "  {c}: pending {:>6} in-flight {:>5}",
                        i.num_pending, i.num_ack_pending
                    ));
                }
            }
            println!("{line}");
        }
        if tickets as usize >= n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {tickets} of {n} tickets after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(if trace { 250 } else { 20 })).await;
    }
    let e2e = t0.elapsed();
    let events = nats.events_of(&prefix, &front).await - before_events;
    let intake_rate = n as f64 / intake.as_secs_f64();
    let e2e_rate = n as f64 / e2e.as_secs_f64();
    let per = events as f64 / n as f64;
    println!(
        "pipeline: {n} responses, {backend:?} read models, all roles in one process (debug={})",
        cfg!(debug_assertions)
    );
    println!("  intake (202 = durably stored): {intake_rate:>9.0} responses/s  ({intake:.2?})");
    println!("  end to end (ticket in view):   {e2e_rate:>9.0} responses/s  ({e2e:.2?})");
    println!(
        "  events written per response:   {per:>9.2}  ({:.0} events/s)",
        events as f64 / e2e.as_secs_f64()
    );
    println!(
        "  end to end / pipelined raw publish: {:.3} (responses), {:.3} (events)",
        e2e_rate / pipelined,
        events as f64 / e2e.as_secs_f64() / pipelined
    );

    if !mail {
        println!("  (BENCH_NO_MAIL: e-mail off, owner notified not measured)");
        return;
    }
    // 3. Owner notified: one owner alert per ticket.
    let mut ticket_batch: HashMap<String, usize> = HashMap::new();
    let by_feedback: HashMap<String, usize> = (0..n)
        .map(|i| {
            let fid = closeloop_contracts::feedback::FeedbackId::of("bench", &format!("B{i:08}"));
            (fid.to_string(), i / 500)
        })
        .collect();
    for r in sqlx::query("SELECT id, feedback_id FROM tickets")
        .fetch_all(&pool)
        .await
        .unwrap()
    {
        let (id, fid): (String, String) = (r.get(0), r.get(1));
        if let Some(b) = by_feedback.get(&fid) {
            ticket_batch.insert(id, *b);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(900);
    let owner_alerts = loop {
        let alerts = sink.arrivals("New ticket for you");
        if alerts.len() >= n {
            break alerts;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} owner alerts after 15 minutes",
            alerts.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut latencies: Vec<f64> = Vec::new();
    let mut last = Duration::ZERO;
    for (ticket, arrived) in &owner_alerts {
        let Some(batch) = ticket_batch.get(ticket) else {
            continue;
        };
        let since = arrived.duration_since(start_wall).unwrap_or_default();
        last = last.max(since);
        latencies.push((since.saturating_sub(accepted_at[batch])).as_secs_f64() * 1000.0);
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    println!(
        "  owner notified (e-mail stored by a local aiosmtpd): {:>6.0} notifications/s over the run ({:.2?}); \
         accepted -> e-mailed p50 {:.0} ms, p99 {:.0} ms ({} owner alerts)",
        latencies.len() as f64 / last.as_secs_f64(),
        last,
        pct(0.50),
        pct(0.99),
        latencies.len()
    );
    // Every e-mail (owner alerts and the stakeholders' FYIs) stored by then.
    let all_mail = sink.arrivals("");
    let mail_last = all_mail
        .iter()
        .map(|(_, at)| at.duration_since(start_wall).unwrap_or_default())
        .max()
        .unwrap_or_default();
    println!(
        "  all e-mail (owner alerts and stakeholder FYIs): {:>6.0} e-mails/s ({} e-mails by {:.2?})",
        all_mail.len() as f64 / mail_last.as_secs_f64(),
        all_mail.len(),
        mail_last
    );

    // Each ticket's ticket.opened delivered to the webhook receiver.
    let deadline = Instant::now() + Duration::from_secs(900);
    let hooks = loop {
        let got = receiver.requests_to("/ok/bench");
        if got.len() >= n {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} webhook deliveries after 15 minutes",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let start_unix = start_wall
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut latencies: Vec<f64> = Vec::new();
    let mut last = 0f64;
    for r in &hooks {
        let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
        let Some(batch) = body["data"]["ticket_id"]
            .as_str()
            .and_then(|t| ticket_batch.get(t))
        else {
            continue;
        };
        let since = r["at"].as_f64().unwrap() - start_unix;
        last = last.max(since);
        latencies.push((since - accepted_at[batch].as_secs_f64()) * 1000.0);
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    println!(
        "  webhook delivered (ticket.opened, signed, to a local receiver): {:>6.0} deliveries/s over the run ({:.2}s); \
         accepted -> delivered p50 {:.0} ms, p99 {:.0} ms ({} deliveries)",
        latencies.len() as f64 / last,
        last,
        pct(0.50),
        pct(0.99),
        latencies.len()
    );
    drop(app);
}
