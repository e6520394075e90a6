//! `make bench`, SLA timers (issue 10):
//!
//! 1. **Tick cost**: the timer worker's look at the due table (`due`: what
//!    is due now, and `earliest`: when to wake) with 10 000 and with
//!    1 000 000 open tickets whose timers are not due (five timers each,
//!    written straight into `sla_timers`). Reported: wall time and process
//!    CPU time per tick. Target: the 1 M tick within 2× of the 10 k tick.
//! 2. **Delay**: 10 000 tickets opened on a simulated clock, then the clock
//!    moved 24 hours: 10 000 first-contact warnings fall due at once.
//!    Reported: from the move to each `SlaWarned` event in the stream (its
//!    broker timestamp), p50 / p99 / max, and the rate. Target p99 ≤ 1 s.
//!
//! Environment: BENCH_DB (sqlite|postgres), BENCH_TIMER_TICKETS (default
//! 10 000), BENCH_BIG_TICKETS (default 1 000 000), BENCH_TICKS (default 500).

use std::time::{Duration, Instant, SystemTime};

use closeloop_proto::v1;
use closeloop_tests::{AppOptions, Backend, Nats, TestDb, spawn_app_with, unique_prefix};
use futures::StreamExt;

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// This process's CPU time (user + system), from /proc.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 (1-based), 11 and 12 here.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn pct(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Fills `sla_timers` up to `n` tickets of five not-due timers each.
async fn fill(db: &closeloop_readmodel::Db, from: usize, to: usize, backend: Backend) {
    let far = 4_102_444_800_000_000i64; // 2100-01-01
    let sql = match backend {
        Backend::Sqlite => format!(
            "WITH RECURSIVE c(x) AS (SELECT {from} UNION ALL SELECT x + 1 FROM c WHERE x < {last}), \
             k(key, off) AS (VALUES ('first_contact/1/warn50', 1), ('first_contact/1/warn75', 2), \
             ('first_contact/1/breach', 3), ('closure/1/breach', 4), ('untouched/1/level1', 5)) \
             INSERT INTO sla_timers (ticket_id, timer_key, due_at, owner_email, program_id, level) \
             SELECT 'bench-' || x, key, {far} + x * 10 + off, 'dana@vendor.example', 'p', 0 FROM c, k",
            last = to - 1
        ),
        Backend::Postgres => format!(
            "INSERT INTO sla_timers (ticket_id, timer_key, due_at, owner_email, program_id, level) \
             SELECT 'bench-' || x, key, {far} + x * 10 + off, 'dana@vendor.example', 'p', 0 \
             FROM generate_series({from}, {last}) AS x, \
             (VALUES ('first_contact/1/warn50', 1), ('first_contact/1/warn75', 2), \
             ('first_contact/1/breach', 3), ('closure/1/breach', 4), ('untouched/1/level1', 5)) AS k(key, off)",
            last = to - 1
        ),
    };
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(db.pool())
        .await
        .unwrap();
    if backend == Backend::Postgres {
        sqlx::query("ANALYZE sla_timers")
            .execute(db.pool())
            .await
            .unwrap();
    }
}

/// Wall and CPU time per tick, over `ticks` ticks.
async fn ticks(db: &closeloop_readmodel::Db, ticks: usize) -> (Duration, Duration) {
    let now = closeloop_domain::Timestamp::from_system_time(SystemTime::now()).as_micros();
    // Warm up.
    for _ in 0..10 {
        closeloop_escalation::timers::due(db, now, closeloop_escalation::timers::BATCH)
            .await
            .unwrap();
    }
    let (wall, cpu0) = (Instant::now(), cpu());
    for _ in 0..ticks {
        let due = closeloop_escalation::timers::due(db, now, closeloop_escalation::timers::BATCH)
            .await
            .unwrap();
        assert!(due.is_empty());
        closeloop_escalation::timers::earliest(db).await.unwrap();
    }
    (wall.elapsed() / ticks as u32, (cpu() - cpu0) / ticks as u32)
}

/// The `closeloop` binary's allocator, so the process measured is the one
/// shipped.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let small = env_usize("BENCH_TIMER_TICKETS", 10_000);
    let big = env_usize("BENCH_BIG_TICKETS", 1_000_000);
    let n_ticks = env_usize("BENCH_TICKS", 500);
    let backend = match std::env::var("BENCH_DB").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    sqlx::any::install_default_drivers();
    let nats = Nats::start();

    // 1. Tick cost.
    {
        let db = TestDb::new(backend).await;
        let app = spawn_app_with(
            &nats.url(),
            &db.url,
            &unique_prefix(),
            AppOptions {
                roles: closeloop_server::Roles::parse("escalation").unwrap(),
                ..AppOptions::default()
            },
        )
        .await;
        app.stop().await.unwrap();
        let rm = closeloop_readmodel::Db::connect(&db.url).await.unwrap();
        fill(&rm, 0, small, backend).await;
        let (w_small, c_small) = ticks(&rm, n_ticks).await;
        let started = Instant::now();
        fill(&rm, small, big, backend).await;
        let filled = started.elapsed();
        let (w_big, c_big) = ticks(&rm, n_ticks).await;
        println!(
            "SLA timer tick ({backend:?}; a tick = due timers + the earliest due time), {n_ticks} ticks each:"
        );
        println!(
            "  {small:>9} open tickets ({:>8} timers): wall {:>8.1} µs, CPU {:>8.1} µs per tick",
            small * 5,
            w_small.as_secs_f64() * 1e6,
            c_small.as_secs_f64() * 1e6
        );
        println!(
            "  {big:>9} open tickets ({:>8} timers): wall {:>8.1} µs, CPU {:>8.1} µs per tick (filled in {:.1} s)",
            big * 5,
            w_big.as_secs_f64() * 1e6,
            c_big.as_secs_f64() * 1e6,
            filled.as_secs_f64()
        );
        let ratio = w_big.as_secs_f64() / w_small.as_secs_f64().max(1e-9);
        println!(
            "  {big} / {small} wall: {ratio:.2}x (target ≤ 2x) {}",
            if ratio <= 2.0 { "MET" } else { "MISSED" }
        );
    }

    // 2. Delay from due time to event, 10 000 due at once.
    let db = TestDb::new(backend).await;
    let prefix = unique_prefix();
    let app = spawn_app_with(
        &nats.url(),
        &db.url,
        &prefix,
        AppOptions {
            clock: closeloop_server::ClockConfig::Simulated {
                start: Some(humantime::parse_rfc3339("2026-01-05T08:00:00Z").unwrap()),
            },
            ..AppOptions::default()
        },
    )
    .await;
    app.seed_ticket_directory().await;
    let started = Instant::now();
    let clients: Vec<_> = futures::future::join_all((0..16).map(|_| app.tickets())).await;
    futures::stream::iter(0..small)
        .map(|i| {
            let mut c = clients[i % clients.len()].clone();
            async move {
                c.open_ticket(v1::OpenTicketRequest {
                    request_id: format!("bench-{i}"),
                    account_id: "ACME-001".into(),
                    owner_email: "dana@vendor.example".into(),
                    title: format!("bench {i}"),
                    ..Default::default()
                })
                .await
                .unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let rm = closeloop_readmodel::Db::connect(&db.url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sla_timers WHERE timer_key = 'first_contact/1/warn50'",
        )
        .fetch_one(rm.pool())
        .await
        .unwrap_or(0);
        if n as usize >= small {
            break;
        }
        assert!(Instant::now() < deadline, "timers not scheduled: {n}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "{small} tickets opened and their timers scheduled in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Quiet, then the clock moves: every 50% warning is due at once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stream = nats.events_stream(&prefix).await;
    let before = stream.clone().info().await.unwrap().state.last_sequence;
    let moved = SystemTime::now();
    v1::clock_service_client::ClockServiceClient::connect(app.grpc_url())
        .await
        .unwrap()
        .advance_clock(v1::AdvanceClockRequest { seconds: 24 * 3600 })
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: format!("{prefix}.events.sla.>"),
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: before + 1,
            },
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut delays = Vec::with_capacity(small);
    let deadline = Instant::now() + Duration::from_secs(300);
    while delays.len() < small && Instant::now() < deadline {
        let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(30), messages.next()).await
        else {
            break;
        };
        let kind = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Closeloop-Event-Type").map(|v| v.to_string()))
            .unwrap_or_default();
        if kind != "closeloop.v1.SlaWarned" {
            continue;
        }
        let published: SystemTime = m.info().unwrap().published.into();
        delays.push(published.duration_since(moved).unwrap_or_default());
    }
    delays.sort();
    let last = delays.last().copied().unwrap_or_default();
    println!(
        "{} of {small} warnings due at once written: from the clock's move p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({:.0}/s) {}",
        delays.len(),
        pct(&delays, 0.5).as_secs_f64() * 1e3,
        pct(&delays, 0.99).as_secs_f64() * 1e3,
        last.as_secs_f64() * 1e3,
        delays.len() as f64 / last.as_secs_f64().max(1e-9),
        if delays.len() == small && pct(&delays, 0.99) <= Duration::from_secs(1) {
            "(target p99 ≤ 1 s: MET)"
        } else {
            "(target p99 ≤ 1 s: MISSED)"
        }
    );
    app.stop().await.unwrap();
}
