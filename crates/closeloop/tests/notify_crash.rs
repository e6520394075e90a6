//! Killing the notification role mid-delivery (SIGKILL, `closeloop serve`
//! as a process) and starting it again sends every notification, and never
//! one under a new id: a copy, if any, carries the same Message-ID.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use closeloop_proto::v1;
use closeloop_tests::{Backend, Nats, RoleProcess, SmtpSink, TestDb, http_get, unique_prefix};

fn start(nats: &str, db: &str, prefix: &str, smtp: &str) -> RoleProcess {
    RoleProcess::start(
        env!("CARGO_BIN_EXE_closeloop"),
        "all",
        (nats, db, prefix),
        &[
            ("CLOSELOOP_SMTP_URL", smtp.to_string()),
            ("CLOSELOOP_MAIL_FROM", "cx@vendor.example".to_string()),
        ],
    )
}

async fn ready(p: &RoleProcess) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(p.http, "/readyz").await.map(|(s, _)| s) != Some(200) {
        assert!(Instant::now() < deadline, "closeloop did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Puts the owner and the account every test ticket uses in the directory
/// of the server at `url`.
async fn seed_directory(url: &str) {
    let mut d = v1::directory_service_client::DirectoryServiceClient::connect(url.to_string())
        .await
        .unwrap();
    d.upsert_person(v1::UpsertPersonRequest {
        person: Some(v1::Person {
            email: "dana@vendor.example".into(),
            name: "Dana".into(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    d.upsert_account(v1::UpsertAccountRequest {
        account: Some(v1::Account {
            id: "ACME-001".into(),
            name: "Acme".into(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_notifier_resends_nothing_under_a_new_id() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let prefix = unique_prefix();
    let sink = SmtpSink::slow();
    let mut p = start(&nats.url(), &db.url, &prefix, &sink.url());
    ready(&p).await;
    let url = format!("http://{}", p.grpc);
    seed_directory(&url).await;
    let mut t = v1::ticket_service_client::TicketServiceClient::connect(url)
        .await
        .unwrap();
    // More than the worker sends at once to the SMTP server (32), so they
    // cannot all arrive in one wave before the kill.
    const TICKETS: usize = 60;
    let mut ids = Vec::new();
    for i in 0..TICKETS {
        let r = t
            .open_ticket(v1::OpenTicketRequest {
                request_id: format!("crash-{i}"),
                account_id: "ACME-001".into(),
                owner_email: "dana@vendor.example".into(),
                title: format!("Ticket {i}"),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        ids.push(r.ticket.unwrap().id);
    }
    // Kill it once some, not all, of the owner alerts have arrived.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = sink.messages().len();
        if n >= 1 {
            assert!(n < TICKETS, "all {n} arrived before the kill: send more");
            break;
        }
        assert!(Instant::now() < deadline, "no message arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.child.kill().await.unwrap();
    let before = sink.messages().len();

    // Started again: what was in flight is sent once its claim expires.
    let p = start(&nats.url(), &db.url, &prefix, &sink.url());
    ready(&p).await;
    let mut t =
        v1::ticket_service_client::TicketServiceClient::connect(format!("http://{}", p.grpc))
            .await
            .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut wanted = BTreeSet::new();
    for id in &ids {
        loop {
            let r = t
                .get_ticket(v1::GetTicketRequest {
                    ticket_id: id.clone(),
                    min_sequence: 0,
                })
                .await
                .unwrap()
                .into_inner();
            if let [n] = r.notifications.as_slice()
                && n.status == "delivered"
            {
                wanted.insert(format!("<{}@closeloop>", n.id));
                break;
            }
            assert!(Instant::now() < deadline, "{:#?}", r.notifications);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let got = sink.messages();
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    for m in &got {
        *by_id
            .entry(m["message_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(
        by_id.keys().cloned().collect::<BTreeSet<_>>(),
        wanted,
        "every message is one of the notifications, each notification arrived"
    );
    eprintln!(
        "{before} of {TICKETS} arrived before the kill; {} copies after the restart",
        got.len() - by_id.len()
    );
}

/// Adding the notification role to an install with history tells nobody
/// about old tickets: its consumer starts at the end of the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_notifier_does_not_mail_about_history() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let prefix = unique_prefix();
    let sink = SmtpSink::start();
    let before = RoleProcess::start(
        env!("CARGO_BIN_EXE_closeloop"),
        "ingestion,ticketing",
        (&nats.url(), &db.url, &prefix),
        &[],
    );
    ready(&before).await;
    let url = format!("http://{}", before.grpc);
    seed_directory(&url).await;
    let open = |request_id: &str| v1::OpenTicketRequest {
        request_id: request_id.into(),
        account_id: "ACME-001".into(),
        owner_email: "dana@vendor.example".into(),
        ..Default::default()
    };
    let mut t = v1::ticket_service_client::TicketServiceClient::connect(url)
        .await
        .unwrap();
    t.open_ticket(open("old")).await.unwrap();
    drop(before);

    let p = start(&nats.url(), &db.url, &prefix, &sink.url());
    ready(&p).await;
    let mut t =
        v1::ticket_service_client::TicketServiceClient::connect(format!("http://{}", p.grpc))
            .await
            .unwrap();
    let new = t.open_ticket(open("new")).await.unwrap().into_inner();
    let got = sink.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got_all = sink.messages();
    assert_eq!(got_all.len(), 1, "{got_all:#?}");
    assert!(
        got[0]["text"]
            .as_str()
            .unwrap()
            .contains(&new.ticket.unwrap().id),
        "{got:#?}"
    );
}
