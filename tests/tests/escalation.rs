//! Escalation end to end on a simulated clock: SLA warnings and breaches,
//! escalations to the owner's manager (and the manager's manager, and the
//! program's fallback when there is no manager), pauses, e-mail to a real
//! SMTP server, the weekly report; timers that survive restarts of the
//! role and of NATS and an empty database, two escalation replicas on
//! PostgreSQL that never fire a timer twice, `sla recompute` of open tickets
//! after a workflow's policy changed, notification retries that wait
//! for the simulated clock, and timers that wait for the observer to see
//! their ticket's latest events.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use closeloop_domain::sla::{RecordedSla, SlaEvent};
use closeloop_proto::v1;
use closeloop_proto::v1::clock_service_client::ClockServiceClient;
use closeloop_proto::v1::escalation_service_client::EscalationServiceClient;
use closeloop_server::{ClockConfig, Roles};
use closeloop_tests::{
    App, AppOptions, Backend, Nats, SmtpSink, TestDb, spawn_app_with, unique_prefix,
};

const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

/// Monday 2026-01-05 08:00 UTC.
fn t0() -> std::time::SystemTime {
    humantime::parse_rfc3339("2026-01-05T08:00:00Z").unwrap()
}

/// The example programs file with the SLA defaults manual tickets get:
/// a second escalation level after 14 days untouched, and the closure
/// clock paused while the ticket waits on the customer.
fn programs(dir: &std::path::Path) -> PathBuf {
    let text = std::fs::read_to_string(closeloop_tests::example("programs.yaml")).unwrap();
    let start = text.find("\ndefaults:").unwrap() + 1;
    let end = text.find("\nprograms:").unwrap() + 1;
    let text = format!(
        "{}defaults:\n  sla:\n    first_contact: 48h\n    escalate_after: 7d\n    \
         escalate_further: [14d]\n    close_within: 30d\n    pause_while_waiting: true\n\n\
         reports:\n  weekly:\n    - region: EMEA\n      time_zone: Europe/London\n      \
         recipients: [salesops-emea@vendor.example]\n\n{}",
        &text[..start],
        &text[end..]
    );
    let path = dir.join("programs.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn start(
    nats: &Nats,
    db: &TestDb,
    prefix: &str,
    dir: &std::path::Path,
    mail: Option<&SmtpSink>,
    roles: &str,
) -> App {
    spawn_app_with(
        &nats.url(),
        &db.url,
        prefix,
        AppOptions {
            clock: ClockConfig::Simulated { start: Some(t0()) },
            programs: programs(dir),
            roles: Roles::parse(roles).unwrap(),
            notification: closeloop_notification::role::Config {
                smtp_url: mail.map(SmtpSink::url),
                mail_from: "closeloop <cx@vendor.example>".into(),
                ..Default::default()
            },
            ..AppOptions::default()
        },
    )
    .await
}

/// The setup of the tests that read e-mail: a broker, a SQLite database, a
/// directory for the programs file, a prefix and an SMTP sink, with every
/// role started on them and the ticket directory seeded. Keep each part
/// alive (bind it, `_name` if unused) for as long as the test runs.
async fn with_mail() -> (Nats, TestDb, tempfile::TempDir, String, SmtpSink, App) {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix();
    let sink = SmtpSink::start();
    let app = start(&nats, &db, &prefix, dir.path(), Some(&sink), "all").await;
    app.seed_ticket_directory().await;
    (nats, db, dir, prefix, sink, app)
}

async fn advance(app: &App, secs: u64) {
    ClockServiceClient::connect(app.grpc_url())
        .await
        .unwrap()
        .advance_clock(v1::AdvanceClockRequest { seconds: secs })
        .await
        .unwrap();
}

async fn open(app: &App, request: &str, owner: &str) -> String {
    app.tickets()
        .await
        .open_ticket(v1::OpenTicketRequest {
            request_id: request.into(),
            account_id: "ACME-001".into(),
            owner_email: owner.into(),
            program_id: "relationship-nps".into(),
            title: format!("ticket {request}"),
            actor: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap()
        .id
}

async fn contact(app: &App, id: &str, request: &str) {
    app.tickets()
        .await
        .log_contact(v1::LogContactRequest {
            request_id: request.into(),
            ticket_id: id.into(),
            channel: v1::ContactChannel::Phone as i32,
            summary: "called".into(),
            actor: String::new(),
        })
        .await
        .unwrap();
}

async fn note(app: &App, id: &str, request: &str) {
    app.tickets()
        .await
        .add_note(v1::AddNoteRequest {
            request_id: request.into(),
            ticket_id: id.into(),
            text: "still on it".into(),
            actor: String::new(),
        })
        .await
        .unwrap();
}

/// Waits (up to 15 s) until ticket `id`'s SLA satisfies `ok`.
async fn sla_until(
    app: &App,
    id: &str,
    what: &str,
    ok: impl Fn(&v1::TicketSla) -> bool,
) -> v1::TicketSla {
    let mut c = app.tickets().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let sla = match c
            .get_ticket(v1::GetTicketRequest {
                ticket_id: id.into(),
                min_sequence: 0,
            })
            .await
        {
            Ok(r) => r.into_inner().sla,
            // Not in the ticket view yet.
            Err(s) if s.code() == tonic::Code::NotFound => None,
            Err(s) => panic!("{what}: {s:?}"),
        };
        if let Some(s) = &sla
            && ok(s)
        {
            return s.clone();
        }
        assert!(Instant::now() < deadline, "{what}: {sla:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn clock<'a>(s: &'a v1::TicketSla, name: &str) -> &'a v1::TicketClock {
    s.clocks.iter().rev().find(|c| c.clock == name).unwrap()
}

fn secs_after_t0(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref().unwrap().seconds
        - t0()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
}

/// Every SLA event in the stream.
async fn sla_events(nats: &Nats, prefix: &str) -> Vec<RecordedSla> {
    use futures::StreamExt;
    let js = async_nats::jetstream::new(nats.client().await);
    let stream = nats.events_stream(prefix).await;
    let total = stream.get_info().await.unwrap().state.messages;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: format!("{prefix}.events.sla.>"),
            ..Default::default()
        })
        .await
        .unwrap();
    let _ = js;
    let mut out = Vec::new();
    let mut msgs = consumer.messages().await.unwrap();
    loop {
        let next = tokio::time::timeout(Duration::from_millis(500), msgs.next()).await;
        let Ok(Some(Ok(m))) = next else { break };
        let info = m.info().unwrap();
        let stored = closeloop_eventstore::StoredEvent {
            subject: m.subject.to_string(),
            sequence: info.stream_sequence,
            envelope: None,
            payload: m.payload.clone(),
            pending: 0,
        };
        out.push(closeloop_contracts::sla::decode(&stored).unwrap());
        if info.pending == 0 || out.len() as u64 >= total {
            break;
        }
    }
    out
}

/// Each timer firing (warning, breach, escalation) by ticket: how often.
fn firings(events: &[RecordedSla]) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for e in events {
        let key = match &e.event {
            SlaEvent::Warned { kind, run, pct, .. } => format!("{kind}/{run}/warn{pct}"),
            SlaEvent::Breached { kind, run, .. } => format!("{kind}/{run}/breach"),
            SlaEvent::Escalated { period, level, .. } => format!("untouched/{period}/level{level}"),
            _ => continue,
        };
        *out.entry((e.ticket_id.to_string(), key)).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clocks_warn_breach_escalate_and_pause_on_the_simulated_clock() {
    let (nats, _db, _dir, prefix, sink, app) = with_mail().await;
    // dana reports to lee, lee to mia; solo has no manager.
    app.seed_person("mia@vendor.example", None).await;
    app.seed_person("lee@vendor.example", Some("mia@vendor.example"))
        .await;
    app.seed_person("solo@vendor.example", None).await;

    // A: no contact (first contact breaches); B: contacted, touched on day
    // 6; C: no manager; D: waits on the customer from day 6 to day 13.
    let a = open(&app, "a", "dana@vendor.example").await;
    let b = open(&app, "b", "dana@vendor.example").await;
    let c = open(&app, "c", "solo@vendor.example").await;
    let d = open(&app, "d", "dana@vendor.example").await;
    for (id, r) in [(&b, "b1"), (&c, "c1"), (&d, "d1")] {
        contact(&app, id, r).await;
    }
    let s = sla_until(&app, &a, "clocks start", |s| s.clocks.len() == 2).await;
    assert_eq!(secs_after_t0(&clock(&s, "first_contact").due_at), 48 * 3600);
    assert_eq!(secs_after_t0(&clock(&s, "closure").due_at), 30 * 86_400);
    assert_eq!(secs_after_t0(&s.next_escalations[0].due_at), 7 * 86_400);
    assert_eq!(secs_after_t0(&s.next_escalations[1].due_at), 14 * 86_400);
    sla_until(&app, &d, "contact stops the first-contact clock", |s| {
        clock(s, "first_contact").state == "met"
    })
    .await;

    // First contact: warnings at 24 h and 36 h, the breach at 48 h.
    advance(&app, 24 * HOUR).await;
    sla_until(&app, &a, "50% warning at 24 h", |s| {
        clock(s, "first_contact").warned_pct == [50]
    })
    .await;
    advance(&app, 12 * HOUR).await;
    sla_until(&app, &a, "75% warning at 36 h", |s| {
        clock(s, "first_contact").warned_pct == [50, 75]
    })
    .await;
    advance(&app, 12 * HOUR - 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = sla_until(&app, &a, "not breached a second early", |_| true).await;
    assert_eq!(clock(&s, "first_contact").state, "running", "{s:#?}");
    advance(&app, 1).await;
    let s = sla_until(&app, &a, "breach at 48 h", |s| {
        clock(s, "first_contact").state == "breached"
    })
    .await;
    let fc = clock(&s, "first_contact");
    assert_eq!(secs_after_t0(&fc.breached_at), 48 * 3600);
    assert!(fc.remaining_secs <= 0);

    // Day 6: a note on B (a touch) and a wait on D.
    advance(&app, 4 * DAY).await;
    note(&app, &b, "b2").await;
    app.tickets()
        .await
        .wait_on_customer(v1::WaitRequest {
            request_id: "d2".into(),
            ticket_id: d.clone(),
            reason: "waiting for their logs".into(),
            actor: String::new(),
        })
        .await
        .unwrap();
    sla_until(&app, &d, "the closure clock pauses", |s| {
        clock(s, "closure").state == "paused"
    })
    .await;
    sla_until(&app, &b, "the note starts a new untouched period", |s| {
        secs_after_t0(&s.untouched_since) == 6 * 86_400
    })
    .await;

    // Day 7: A and D (untouched since day 0) escalate to lee; C has no
    // manager: the program's fallback owner, flagged.
    advance(&app, DAY).await;
    let s = sla_until(&app, &a, "A escalates on day 7", |s| {
        !s.escalations.is_empty()
    })
    .await;
    assert_eq!(
        (s.escalations[0].level, s.escalations[0].to_email.as_str()),
        (1, "lee@vendor.example")
    );
    assert_eq!(secs_after_t0(&s.escalations[0].at), 7 * 86_400);
    let s = sla_until(&app, &c, "C escalates to the fallback", |s| {
        !s.escalations.is_empty()
    })
    .await;
    assert_eq!(s.escalations[0].to_email, "cx-operations@vendor.example");
    assert!(s.flagged);
    assert!(
        s.escalations[0]
            .fallback_reason
            .contains("solo@vendor.example has no manager"),
        "{s:#?}"
    );

    // Day 13 less a second: B (touched on day 6) has not escalated.
    advance(&app, 6 * DAY - 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = sla_until(&app, &b, "B", |_| true).await;
    assert!(s.escalations.is_empty(), "{s:#?}");
    advance(&app, 1).await;
    let s = sla_until(&app, &b, "B escalates on day 13", |s| {
        !s.escalations.is_empty()
    })
    .await;
    assert_eq!(secs_after_t0(&s.escalations[0].at), 13 * 86_400);
    assert_eq!(secs_after_t0(&s.escalations[0].untouched_since), 6 * 86_400);

    // Day 13: the customer replies on D: the closure clock resumes, 7 days
    // later than it was due.
    app.tickets()
        .await
        .record_customer_reply(v1::RecordCustomerReplyRequest {
            request_id: "d3".into(),
            ticket_id: d.clone(),
            text: "here are the logs".into(),
            actor: String::new(),
        })
        .await
        .unwrap();
    let s = sla_until(&app, &d, "a reply resumes the clock", |s| {
        clock(s, "closure").state == "running"
    })
    .await;
    let cl = clock(&s, "closure");
    assert_eq!(cl.paused_secs, 7 * DAY);
    assert_eq!(secs_after_t0(&cl.original_due), 30 * 86_400);
    assert_eq!(secs_after_t0(&cl.due_at), 37 * 86_400);

    // Day 20: level 2 for B (untouched 14 days): lee's manager, mia.
    advance(&app, 7 * DAY).await;
    let s = sla_until(&app, &b, "B level 2 on day 20", |s| {
        s.escalations.len() == 2
    })
    .await;
    assert_eq!(
        (s.escalations[1].level, s.escalations[1].to_email.as_str()),
        (2, "mia@vendor.example")
    );

    // E-mail: warnings and the breach to the owner, escalations to the
    // manager with the owner in copy.
    let mails = sink.wait_for(1).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let subjects = loop {
        let all = sink.messages();
        let subjects: Vec<(String, String)> = all
            .iter()
            .map(|m| {
                (
                    m["rcpt_to"].as_str().unwrap_or_default().to_string(),
                    m["subject"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        if subjects
            .iter()
            .any(|(to, s)| to == "mia@vendor.example" && s.starts_with("[closeloop] Escalation"))
            || Instant::now() > deadline
        {
            break subjects;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = mails;
    let has = |to: &str, prefix: &str, title: &str| {
        subjects
            .iter()
            .any(|(t, s)| t == to && s.starts_with(prefix) && s.contains(title))
    };
    assert!(
        has(
            "dana@vendor.example",
            "[closeloop] Due soon (first contact)",
            "ticket a"
        ),
        "{subjects:#?}"
    );
    assert!(
        has(
            "dana@vendor.example",
            "[closeloop] Overdue (first contact)",
            "ticket a"
        ),
        "{subjects:#?}"
    );
    assert!(
        has(
            "lee@vendor.example",
            "[closeloop] Escalation: dana@vendor.example has not touched ticket b",
            "ticket b"
        ),
        "{subjects:#?}"
    );
    assert!(
        has(
            "dana@vendor.example",
            "[closeloop] Escalated to lee@vendor.example",
            "ticket b"
        ),
        "{subjects:#?}"
    );
    assert!(
        has("mia@vendor.example", "[closeloop] Escalation", "ticket b"),
        "{subjects:#?}"
    );
    assert!(
        has(
            "cx-operations@vendor.example",
            "[closeloop] Escalation",
            "ticket c"
        ),
        "{subjects:#?}"
    );
    let escalation = sink
        .messages()
        .into_iter()
        .find(|m| {
            m["rcpt_to"] == "lee@vendor.example"
                && m["subject"].as_str().unwrap().contains("ticket b")
        })
        .unwrap();
    // The owner is named in copy (a reply to all reaches them) but gets
    // their own message (above), not this one.
    assert_eq!(escalation["cc"], "dana@vendor.example", "{escalation:#?}");
    assert!(
        sink.messages()
            .iter()
            .all(|m| !m["rcpt_to"].as_str().unwrap_or_default().contains(',')),
        "a message delivered to more than one recipient"
    );
    let text = escalation["text"].as_str().unwrap();
    assert!(
        text.contains("has not touched this ticket since 2026-01-11T08:00:00Z (7 days)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("closeloop tickets show {b}")),
        "{text}"
    );

    // The weekly report: every open ticket that is breached, escalated or
    // due within 24 hours, by owner.
    let r = EscalationServiceClient::connect(app.grpc_url())
        .await
        .unwrap()
        .weekly_report(v1::WeeklyReportRequest {
            region: String::new(),
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner();
    let listed: BTreeMap<String, String> = r
        .owners
        .iter()
        .flat_map(|o| {
            o.tickets.iter().map(move |t| {
                (
                    t.ticket_id.clone(),
                    format!("{} {}", o.owner_email, t.reasons),
                )
            })
        })
        .collect();
    assert_eq!(listed[&a], "dana@vendor.example breached,escalated");
    assert_eq!(listed[&b], "dana@vendor.example escalated");
    assert_eq!(listed[&c], "solo@vendor.example escalated");
    assert_eq!(r.tickets, 4, "{r:#?}");
    // As of day 1 nothing needed attention yet but A's first contact (due
    // within 24 hours).
    let day1 = closeloop_proto::convert::timestamp(closeloop_domain::Timestamp::from_system_time(
        t0() + Duration::from_secs(DAY + 3600),
    ));
    let r = EscalationServiceClient::connect(app.grpc_url())
        .await
        .unwrap()
        .weekly_report(v1::WeeklyReportRequest {
            region: String::new(),
            as_of: Some(day1),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.tickets, 1, "{r:#?}");
    assert_eq!(r.owners[0].tickets[0].ticket_id, a);
    assert_eq!(r.owners[0].tickets[0].reasons, "due_soon");

    // Every firing happened exactly once.
    let fired = firings(&sla_events(&nats, &prefix).await);
    assert!(fired.values().all(|n| *n == 1), "{fired:#?}");
    app.stop().await.unwrap();
}

/// A timer scheduled before a restart of the role, a restart of NATS and
/// the loss of the database still fires, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timers_survive_restarts_and_an_empty_database_and_fire_once() {
    let mut nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix();
    let app = start(&nats, &db, &prefix, dir.path(), None, "all").await;
    app.seed_ticket_directory().await;
    let e = open(&app, "e", "dana@vendor.example").await;
    contact(&app, &e, "e1").await;
    sla_until(&app, &e, "clocks start", |s| !s.next_escalations.is_empty()).await;
    advance(&app, 6 * DAY).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The role stops, NATS restarts, the read models are lost.
    app.stop().await.unwrap();
    nats.restart();
    db.wipe().await;
    let app = start(&nats, &db, &prefix, dir.path(), None, "all").await;
    // The clock kept its time (the install's bucket), and the directory
    // and timers come back from the events.
    let now = ClockServiceClient::connect(app.grpc_url())
        .await
        .unwrap()
        .get_clock(v1::GetClockRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(secs_after_t0(&now.now), 6 * 86_400);
    assert_eq!(now.kind, "simulated");
    advance(&app, DAY).await;
    let s = sla_until(&app, &e, "escalates on day 7 after the restarts", |s| {
        !s.escalations.is_empty()
    })
    .await;
    assert_eq!(secs_after_t0(&s.escalations[0].at), 7 * 86_400);

    // And once more: a restart after firing does not fire again.
    app.stop().await.unwrap();
    let app = start(&nats, &db, &prefix, dir.path(), None, "all").await;
    advance(&app, HOUR).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fired = firings(&sla_events(&nats, &prefix).await);
    assert_eq!(
        fired[&(e.clone(), "untouched/2/level1".to_string())],
        1,
        "{fired:#?}"
    );
    assert!(fired.values().all(|n| *n == 1), "{fired:#?}");

    // NATS alone restarts while the role runs, between scheduling level 2
    // (day 14) and its time: it fires once.
    nats.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let moved = ClockServiceClient::connect(app.grpc_url())
            .await
            .unwrap()
            .advance_clock(v1::AdvanceClockRequest { seconds: 7 * DAY })
            .await;
        if moved.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "clock not movable after the NATS restart: {moved:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s = sla_until(&app, &e, "level 2 after the NATS restart", |s| {
        s.escalations.len() == 2
    })
    .await;
    assert_eq!(s.escalations[1].level, 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fired = firings(&sla_events(&nats, &prefix).await);
    assert_eq!(
        fired[&(e.clone(), "untouched/2/level2".to_string())],
        1,
        "{fired:#?}"
    );
    assert!(fired.values().all(|n| *n == 1), "{fired:#?}");
    app.stop().await.unwrap();
}

/// Two escalation replicas on one PostgreSQL database and one broker:
/// every timer fires once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_postgres_never_fire_a_timer_twice() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix();
    let app = start(&nats, &db, &prefix, dir.path(), None, "all").await;
    let replica = start(&nats, &db, &prefix, dir.path(), None, "escalation").await;
    app.seed_ticket_directory().await;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(open(&app, &format!("r{i}"), "dana@vendor.example").await);
    }
    for id in &ids {
        sla_until(&app, id, "clocks start", |s| s.clocks.len() == 2).await;
    }
    // Two moves, each making several timers of every ticket due at once.
    advance(&replica, 2 * DAY).await;
    advance(&app, 5 * DAY).await;
    for id in &ids {
        sla_until(&app, id, "escalated", |s| !s.escalations.is_empty()).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fired = firings(&sla_events(&nats, &prefix).await);
    // Per ticket: two first-contact warnings, its breach, one escalation.
    assert_eq!(fired.len(), ids.len() * 4, "{fired:#?}");
    assert!(fired.values().all(|n| *n == 1), "{fired:#?}");
    replica.stop().await.unwrap();
    app.stop().await.unwrap();
}

/// A clock that jumps past a ticket's first-contact due time (as after a
/// day with no escalation role running) fires both warnings and the
/// breach at once: the owner is told of the breach only, not that the
/// ticket is "due soon" when it is already overdue. The warnings are
/// still recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn warnings_fired_after_the_due_time_are_not_sent() {
    let (_nats, _db, _dir, _prefix, sink, app) = with_mail().await;
    let late = open(&app, "late", "dana@vendor.example").await;
    sla_until(&app, &late, "clocks start", |s| s.clocks.len() == 2).await;
    sink.wait_for(1).await; // the owner's "assigned" e-mail
    advance(&app, 3 * DAY).await;
    let s = sla_until(&app, &late, "first contact breached", |s| {
        clock(s, "first_contact").state == "breached"
    })
    .await;
    assert_eq!(clock(&s, "first_contact").warned_pct, [50, 75]);
    let subjects = |to: &str| -> Vec<String> {
        sink.messages()
            .iter()
            .filter(|m| m["rcpt_to"].as_str() == Some(to))
            .map(|m| m["subject"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !subjects("dana@vendor.example")
        .iter()
        .any(|s| s.starts_with("[closeloop] Overdue (first contact)"))
    {
        assert!(
            Instant::now() < deadline,
            "{:#?}",
            subjects("dana@vendor.example")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The warnings came before the breach on the ticket's SLA subject; give
    // their e-mails, had they been requested, time to arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let told = subjects("dana@vendor.example");
    assert!(
        !told.iter().any(|s| s.starts_with("[closeloop] Due soon")),
        "{told:#?}"
    );
    // Nor is one requested. The ticket's notifications and timers are
    // listed by its id in any case; an id that is not a ticket id is refused.
    let mut n =
        closeloop_proto::v1::notification_service_client::NotificationServiceClient::connect(
            app.grpc_url(),
        )
        .await
        .unwrap();
    let kinds: Vec<String> = n
        .list_notifications(v1::ListNotificationsRequest {
            ticket_id: late.to_uppercase(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .notifications
        .into_iter()
        .map(|n| n.kind)
        .collect();
    assert!(kinds.iter().any(|k| k == "sla_breach"), "{kinds:?}");
    assert!(!kinds.iter().any(|k| k == "sla_warning"), "{kinds:?}");
    let mut esc = EscalationServiceClient::connect(app.grpc_url())
        .await
        .unwrap();
    let timers = esc
        .list_timers(v1::ListTimersRequest {
            limit: 100,
            ticket_id: late.to_uppercase(),
        })
        .await
        .unwrap()
        .into_inner()
        .timers;
    assert!(timers.iter().all(|t| t.ticket_id == late) && !timers.is_empty());
    let bad = n
        .list_notifications(v1::ListNotificationsRequest {
            ticket_id: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    let bad = esc
        .list_timers(v1::ListTimersRequest {
            limit: 1,
            ticket_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    assert!(bad.message().contains("is not a ticket id"), "{bad:?}");
    app.stop().await.unwrap();
}

/// The weekly report of a region: generated at its scheduled time (Monday
/// 08:00 London) once, however often the role restarts, and e-mailed to
/// the region's list.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_weekly_report_is_generated_once_on_schedule_and_mailed() {
    let (nats, db, dir, prefix, sink, app) = with_mail().await;
    let mut d = app.directory().await;
    for (id, region) in [("ACME-001", "EMEA"), ("WAYNE-7", "AMER")] {
        d.upsert_account(v1::UpsertAccountRequest {
            account: Some(v1::Account {
                id: id.into(),
                name: format!("Account {id}"),
                region: region.into(),
                team: vec![v1::AccountTeamMember {
                    role: "csm".into(),
                    email: "dana@vendor.example".into(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while d
        .get_account(v1::GetAccountRequest {
            account_id: "WAYNE-7".into(),
            min_sequence: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .region
        != "AMER"
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An EMEA ticket and an AMER one, neither contacted.
    let emea = open(&app, "emea", "dana@vendor.example").await;
    let amer = app
        .tickets()
        .await
        .open_ticket(v1::OpenTicketRequest {
            request_id: "amer".into(),
            account_id: "WAYNE-7".into(),
            owner_email: "dana@vendor.example".into(),
            program_id: "relationship-nps".into(),
            title: "ticket amer".into(),
            actor: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap()
        .id;
    sla_until(&app, &amer, "clocks start", |s| s.clocks.len() == 2).await;
    // The first start reports nothing about the past (t0 is itself a
    // Monday 08:00).
    advance(&app, 3 * DAY).await;
    sla_until(&app, &emea, "breached", |s| {
        clock(s, "first_contact").state == "breached"
    })
    .await;
    assert!(
        sink.messages()
            .iter()
            .all(|m| m["rcpt_to"] != "salesops-emea@vendor.example")
    );

    // Monday 12 January, 08:00 London.
    advance(&app, 4 * DAY).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mail = loop {
        if let Some(m) = sink
            .messages()
            .into_iter()
            .find(|m| m["rcpt_to"] == "salesops-emea@vendor.example")
        {
            break m;
        }
        assert!(Instant::now() < deadline, "no report mailed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        mail["subject"],
        "[closeloop] Weekly open-ticket report, EMEA: 1 ticket needs attention"
    );
    let text = mail["text"].as_str().unwrap();
    assert!(text.contains("as of 2026-01-12T08:00:00Z"), "{text}");
    assert!(text.contains("dana@vendor.example (1)"), "{text}");
    assert!(
        text.contains("ticket emea (ACME-001), 7 days old: breached"),
        "{text}"
    );
    assert!(!text.contains("ticket amer"), "{text}");

    // Asked for a region: its name in any case; a region no ticket has is
    // said to be one, with the regions there are.
    let mut esc = EscalationServiceClient::connect(app.grpc_url())
        .await
        .unwrap();
    let mut ask = async |region: &str| {
        esc.weekly_report(v1::WeeklyReportRequest {
            region: region.into(),
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner()
    };
    let r = ask("emea").await;
    assert_eq!((r.tickets, r.region_unknown), (1, false), "{r:#?}");
    assert!(r.known_regions.is_empty());
    let r = ask("Atlantis").await;
    assert_eq!((r.tickets, r.region_unknown), (0, true), "{r:#?}");
    assert_eq!(r.known_regions, ["AMER", "EMEA"]);

    // The report is in the log, once; a restart does not write it again.
    let reports = || async {
        closeloop_tests::subject_payloads(
            &nats,
            &prefix,
            &format!(
                "{prefix}.events.report.{}",
                closeloop_domain::report::ReportKey::of_region("EMEA")
            ),
        )
        .await
        .len()
    };
    assert_eq!(reports().await, 1);
    app.stop().await.unwrap();
    let app = start(&nats, &db, &prefix, dir.path(), Some(&sink), "all").await;
    advance(&app, HOUR).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reports().await, 1);
    // A week later, the next one.
    advance(&app, 7 * DAY).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while reports().await < 2 {
        assert!(Instant::now() < deadline, "no second report");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mails = sink
        .messages()
        .into_iter()
        .filter(|m| m["rcpt_to"] == "salesops-emea@vendor.example")
        .count();
    assert!(mails <= 2, "one mail per report: {mails}");
    app.stop().await.unwrap();
}

/// The example programs file with program `relationship-nps` closing
/// within 20 days and its workflow `rnps-detractor`'s first contact due
/// within `first_contact` (e.g. `48h`).
fn programs_with_detractor_sla(dir: &std::path::Path, first_contact: &str) -> PathBuf {
    let path = programs(dir);
    let text = std::fs::read_to_string(&path).unwrap();
    let anchor = "        when: answers.nps <= 6\n";
    let program = "    name: Relationship NPS\n";
    assert!(text.contains(anchor) && text.contains(program));
    let text = text
        .replacen(
            anchor,
            &format!("{anchor}        sla: {{first_contact: {first_contact}}}\n"),
            1,
        )
        .replacen(
            program,
            &format!("{program}    sla: {{close_within: 20d}}\n"),
            1,
        );
    std::fs::write(&path, text).unwrap();
    path
}

/// A routed ticket of workflow `rnps-detractor` (from response
/// `response_id`).
async fn routed_detractor(app: &App, nats: &Nats, prefix: &str, response_id: &str) -> String {
    // Submitted before the simulated clock's start (a response from the
    // future is refused).
    let doc = std::fs::read_to_string(closeloop_tests::example(
        "feedback/relationship-nps-detractor.json",
    ))
    .unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    doc["submitted_at"] = "2026-01-02T09:30:00Z".into();
    doc["response_id"] = response_id.into();
    let doc = serde_json::to_vec(&doc).unwrap();
    let (s, _, body) = closeloop_tests::http_post(app.http_addr, "/v1/feedback", &doc).await;
    assert_eq!(s, 202, "{body}");
    let feedback_id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["feedback_id"]
        .as_str()
        .unwrap()
        .to_string();
    let decided = closeloop_tests::routing_decision(nats, prefix, &feedback_id).await;
    let routed = decided
        .tickets
        .iter()
        .find(|t| t.workflow_id == "rnps-detractor")
        .unwrap_or_else(|| panic!("{decided:?}"));
    routed.ticket_id.clone()
}

/// A program's policy for its manual tickets and as its workflows' base;
/// `sla recompute` on live tickets: a workflow's new policy leaves tickets
/// already open as they were until an operator recomputes; then their
/// first-contact clock is due on the new policy (counted from the
/// opening), the old timers are gone, the new ones fire once, and a second
/// recompute finds nothing to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn program_policies_and_recompute_of_open_tickets() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix();
    let with = |first_contact: &str| AppOptions {
        clock: ClockConfig::Simulated { start: Some(t0()) },
        programs: programs_with_detractor_sla(dir.path(), first_contact),
        ..AppOptions::default()
    };
    let app = spawn_app_with(&nats.url(), &db.url, &prefix, with("48h")).await;
    app.import_example_directory().await;
    let routed = routed_detractor(&app, &nats, &prefix, "R_1").await;
    let manual = open(&app, "manual", "raj.patel@vendor.example").await;
    let s = sla_until(&app, &routed, "clocks start", |s| !s.clocks.is_empty()).await;
    assert_eq!(secs_after_t0(&clock(&s, "first_contact").due_at), 48 * 3600);
    // Both run the program's closure target; the manual ticket the
    // defaults' first contact.
    assert_eq!(secs_after_t0(&clock(&s, "closure").due_at), 20 * 86_400);
    let m = sla_until(&app, &manual, "manual clocks start", |s| {
        !s.clocks.is_empty()
    })
    .await;
    assert_eq!(secs_after_t0(&clock(&m, "closure").due_at), 20 * 86_400);
    assert_eq!(secs_after_t0(&clock(&m, "first_contact").due_at), 48 * 3600);
    app.stop().await.unwrap();

    // The workflow now wants first contact within 24 h; the open ticket
    // keeps its policy until recomputed.
    let app = spawn_app_with(&nats.url(), &db.url, &prefix, with("24h")).await;
    advance(&app, HOUR).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = sla_until(&app, &routed, "unchanged after restart", |s| {
        !s.clocks.is_empty()
    })
    .await;
    assert_eq!(secs_after_t0(&clock(&s, "first_contact").due_at), 48 * 3600);
    // A ticket opened after the change runs the new policy.
    let later = routed_detractor(&app, &nats, &prefix, "R_2").await;
    let l = sla_until(&app, &later, "new ticket", |s| !s.clocks.is_empty()).await;
    assert_eq!(secs_after_t0(&clock(&l, "first_contact").due_at), 25 * 3600);
    let mut esc = EscalationServiceClient::connect(app.grpc_url())
        .await
        .unwrap();
    // A recompute reads the escalation role's own view, which may be a
    // moment behind the ticket view read above: wait until it holds the
    // new ticket (its timers are projected with its row).
    let deadline = Instant::now() + Duration::from_secs(15);
    while esc
        .list_timers(v1::ListTimersRequest {
            limit: 1,
            ticket_id: later.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .timers
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the escalation view never held {later}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bad = esc
        .recompute_sla(v1::RecomputeSlaRequest {
            workflow_id: "no-such-workflow".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    let r = esc
        .recompute_sla(v1::RecomputeSlaRequest {
            workflow_id: "rnps-detractor".into(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.recomputed, r.unchanged), (1, 1));
    let s = sla_until(&app, &routed, "due on the new policy", |s| {
        s.clocks
            .iter()
            .any(|c| c.clock == "first_contact" && c.run == 2)
    })
    .await;
    let fc = clock(&s, "first_contact");
    assert_eq!(secs_after_t0(&fc.due_at), 24 * 3600, "{s:#?}");
    assert_eq!(fc.state, "running", "{s:#?}");
    // The manual ticket (another policy) was not touched.
    let m = sla_until(&app, &manual, "manual", |s| !s.clocks.is_empty()).await;
    assert_eq!(secs_after_t0(&clock(&m, "first_contact").due_at), 48 * 3600);

    // The new run's timers: warnings at 12 h and 18 h, breach at 24 h,
    // each once; nothing of the replaced run fires at 48 h.
    advance(&app, 23 * HOUR).await;
    let s = sla_until(&app, &routed, "breach at 24 h", |s| {
        clock(s, "first_contact").breached_at.is_some()
    })
    .await;
    assert_eq!(
        secs_after_t0(&clock(&s, "first_contact").breached_at),
        24 * 3600
    );
    advance(&app, 25 * HOUR).await;
    sla_until(&app, &manual, "manual breach at 48 h", |s| {
        clock(s, "first_contact").breached_at.is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fired = firings(&sla_events(&nats, &prefix).await);
    let of_routed: Vec<&String> = fired
        .keys()
        .filter(|(t, _)| *t == routed)
        .map(|(_, k)| k)
        .collect();
    assert_eq!(
        of_routed,
        [
            "first_contact/2/breach",
            "first_contact/2/warn50",
            "first_contact/2/warn75"
        ],
        "{fired:#?}"
    );
    assert!(fired.values().all(|n| *n == 1), "{fired:#?}");

    // Asked again: nothing left to change.
    let r = esc
        .recompute_sla(v1::RecomputeSlaRequest {
            workflow_id: "rnps-detractor".into(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.recomputed, r.unchanged), (0, 2));
    app.stop().await.unwrap();
}

/// Notification delivery follows the install's clock: on a simulated clock
/// a failed webhook delivery is retried when the clock reaches the retry's
/// time (about 30 s later on the schedule), not when the wall clock does;
/// the retry keeps its webhook-id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notification_retries_follow_the_simulated_clock() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let rx = closeloop_tests::WebhookReceiver::start();
    let prefix = unique_prefix();
    let app = spawn_app_with(
        &nats.url(),
        &db.url,
        &prefix,
        AppOptions {
            clock: ClockConfig::Simulated { start: Some(t0()) },
            programs: programs(dir.path()),
            notification: closeloop_notification::role::Config {
                outbound_allow: "127.0.0.0/8".into(),
                ..Default::default()
            },
            ..AppOptions::default()
        },
    )
    .await;
    app.seed_ticket_directory().await;
    let mut n =
        closeloop_proto::v1::notification_service_client::NotificationServiceClient::connect(
            app.grpc_url(),
        )
        .await
        .unwrap();
    let w = n
        .add_webhook(v1::AddWebhookRequest {
            url: rx.url("/flaky/1/x"),
            events: vec!["ticket.opened".into()],
            request_id: "add".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .webhook
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !n
        .list_webhooks(v1::ListWebhooksRequest { all: false })
        .await
        .unwrap()
        .into_inner()
        .webhooks
        .iter()
        .any(|l| l.id == w.id)
    {
        assert!(Instant::now() < deadline, "endpoint never listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let t = open(&app, "hooked", "dana@vendor.example").await;
    let first = rx.wait_for("/flaky", 1, Duration::from_secs(10)).await;
    // The 503 is recorded; the retry is due ~30 s later on the install's
    // clock, which stands still: wall time passing does not bring it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = app.wait_ticket(&t).await;
        if r.notifications.iter().any(|x| x.attempts == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "{:#?}", r.notifications);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rx.requests_to("/flaky").len(), 1, "retried before its time");
    // 20 s on: still before the earliest retry time (27 s with jitter).
    advance(&app, 20).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(rx.requests_to("/flaky").len(), 1, "retried before its time");
    // 40 s on: past the latest (33 s).
    advance(&app, 20).await;
    let both = rx.wait_for("/flaky", 2, Duration::from_secs(10)).await;
    let id = |r: &serde_json::Value| r["headers"]["webhook-id"].clone();
    assert_eq!(id(&first[0]), id(&both[1]), "{both:#?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = app.wait_ticket(&t).await;
        if r.notifications.iter().any(|x| x.status == "delivered") {
            break;
        }
        assert!(Instant::now() < deadline, "{:#?}", r.notifications);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await.unwrap();
}

/// A timer never fires on an SLA that has not yet seen its ticket's
/// latest events. The escalation role is down while a contact is logged
/// (before any of the ticket's timers was due) behind a backlog of other
/// tickets' events larger than the observer's window of unacknowledged
/// messages, and the clock passes the first-contact due time. When the
/// role comes back its timer worker finds the ticket's warnings and breach
/// due before the observer has reached the contact: they wait (`deferred`)
/// and, once the contact is observed, never fire.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_timer_waits_for_the_observer_to_see_the_tickets_latest_events() {
    use futures::StreamExt;
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix();
    let app = start(&nats, &db, &prefix, dir.path(), None, "ingestion,ticketing").await;
    let escalation = start(&nats, &db, &prefix, dir.path(), None, "escalation").await;
    app.seed_ticket_directory().await;
    let x = open(&app, "x", "dana@vendor.example").await;
    sla_until(&app, &x, "clocks start", |s| s.clocks.len() == 2).await;
    escalation.stop().await.unwrap();

    // Behind the contact: more ticket events than the observer takes
    // unacknowledged (1024), each a new SLA to write.
    const BACKLOG: usize = 1500;
    let tickets = app.tickets().await;
    let opened = futures::stream::iter(0..BACKLOG)
        .map(|i| {
            let mut c = tickets.clone();
            async move {
                c.open_ticket(v1::OpenTicketRequest {
                    request_id: format!("backlog-{i}"),
                    account_id: "ACME-001".into(),
                    owner_email: "dana@vendor.example".into(),
                    program_id: "relationship-nps".into(),
                    title: format!("backlog {i}"),
                    actor: String::new(),
                })
                .await
                .unwrap();
            }
        })
        .buffer_unordered(16)
        .count()
        .await;
    assert_eq!(opened, BACKLOG);
    advance(&app, HOUR).await;
    contact(&app, &x, "x1").await;
    // Past the first-contact due time (48 h): both warnings and the breach
    // are due.
    advance(&app, 48 * HOUR).await;

    let escalation = start(&nats, &db, &prefix, dir.path(), None, "escalation").await;
    let s = sla_until(&app, &x, "the contact reaches the SLA", |s| {
        clock(s, "first_contact").state == "met"
    })
    .await;
    let fc = clock(&s, "first_contact");
    assert!(fc.warned_pct.is_empty(), "{s:#?}");
    assert!(fc.breached_at.is_none(), "{s:#?}");
    // The backlog's own first-contact timers fire (they had no contact):
    // the worker was running while the observer worked through them.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let fired = firings(&sla_events(&nats, &prefix).await);
        let breaches = fired
            .keys()
            .filter(|(_, k)| k == "first_contact/1/breach")
            .count();
        if breaches == BACKLOG {
            assert!(
                !fired.keys().any(|(t, _)| *t == x),
                "a timer of the contacted ticket fired: {:?}",
                fired.keys().filter(|(t, _)| *t == x).collect::<Vec<_>>()
            );
            assert!(fired.values().all(|n| *n == 1));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{breaches} of {BACKLOG} backlog breaches"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The window was real: the worker found timers due whose tickets'
    // latest events the observer had not handled yet.
    let (_, body) = closeloop_tests::http_get(escalation.http_addr, "/metrics")
        .await
        .unwrap();
    let deferred =
        closeloop_tests::metric(&body, "closeloop_sla_timers_total{outcome=\"deferred\"}");
    assert!(deferred > 0, "no timer was deferred:\n{body}");
    escalation.stop().await.unwrap();
    app.stop().await.unwrap();
}
