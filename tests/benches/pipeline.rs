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
//!
//! Environment: BENCH_RESPONSES (default 5000), BENCH_DB (sqlite|postgres),
//! BENCH_RAW_MESSAGES (default 20000).

use std::time::{Duration, Instant};

use closeloop_tests::{Backend, Nats, TestDb, raw_publish, spawn_app, unique_prefix};
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
    let app = spawn_app(&nats.url(), &db.url, &prefix).await;
    app.import_example_directory().await;
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    let before_events = nats.event_count(&prefix).await;

    let docs: Vec<Value> = (0..n).map(response).collect();
    let bodies: Vec<Vec<u8>> = docs
        .chunks(500)
        .map(|c| Value::Array(c.to_vec()).to_string().into_bytes())
        .collect();
    let addr = app.http_addr;
    let t0 = Instant::now();
    let statuses: Vec<u16> = futures::stream::iter(bodies)
        .map(|b| async move {
            closeloop_tests::http_post(addr, "/v1/feedback:batch", &b)
                .await
                .0
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let intake = t0.elapsed();
    assert!(
        statuses.iter().all(|s| *s == 202),
        "batch statuses: {statuses:?}"
    );

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
    let events = nats.event_count(&prefix).await - before_events;
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
    drop(app);
}
