//! The ticket lifecycle over gRPC against a real nats-server and a real
//! database, run once on SQLite and once on PostgreSQL.

use std::collections::HashSet;

use closeloop_proto::v1;
use closeloop_tests::{Backend, Nats, TestDb, spawn_app, unique_prefix};
use futures::future::join_all;
use tonic::Code;
use tonic_types::StatusExt;

type Client = v1::ticket_service_client::TicketServiceClient<tonic::transport::Channel>;

fn rid() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn open(
    c: &mut Client,
    account: &str,
    owner: &str,
    program: &str,
) -> v1::TicketCommandResponse {
    c.open_ticket(v1::OpenTicketRequest {
        request_id: rid(),
        account_id: account.into(),
        owner_email: owner.into(),
        program_id: program.into(),
        title: format!("ticket for {account}"),
        actor: String::new(),
    })
    .await
    .unwrap()
    .into_inner()
}

async fn contact(c: &mut Client, id: &str) -> v1::TicketCommandResponse {
    c.log_contact(v1::LogContactRequest {
        request_id: rid(),
        ticket_id: id.into(),
        channel: v1::ContactChannel::Phone as i32,
        summary: "Called the customer".into(),
        actor: String::new(),
    })
    .await
    .unwrap()
    .into_inner()
}

fn close_req(id: &str) -> v1::CloseTicketRequest {
    v1::CloseTicketRequest {
        request_id: rid(),
        ticket_id: id.into(),
        root_cause_category: "product".into(),
        root_cause: "Upgrade to 4.2 broke SSO".into(),
        actions_taken: "Hotfix shipped; weekly check-ins".into(),
        opportunity: Some(v1::Opportunity {
            kind: "upsell".into(),
            amount: Some(25000.0),
        }),
        actor: "csm@vendor.example".into(),
    }
}

async fn get(c: &mut Client, id: &str, min_sequence: u64) -> v1::GetTicketResponse {
    c.get_ticket(v1::GetTicketRequest {
        ticket_id: id.into(),
        min_sequence,
    })
    .await
    .unwrap()
    .into_inner()
}

async fn every_command_over_grpc(backend: Backend) {
    let nats = Nats::start();
    let db = TestDb::new(backend).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    app.seed_ticket_directory().await;
    let mut c = app.tickets().await;

    let opened = open(
        &mut c,
        "ACME-001",
        "Dana@Vendor.example",
        "relationship-nps",
    )
    .await;
    let t = opened.ticket.unwrap();
    assert_eq!(t.status, v1::TicketStatus::Open as i32);
    assert_eq!(
        t.owner_email, "dana@vendor.example",
        "emails are normalised"
    );
    let id = t.id.clone();

    let r = contact(&mut c, &id).await;
    assert_eq!(
        r.ticket.as_ref().unwrap().status,
        v1::TicketStatus::Contacted as i32
    );
    assert!(r.ticket.as_ref().unwrap().first_contact_at.is_some());

    c.add_note(v1::AddNoteRequest {
        request_id: rid(),
        ticket_id: id.clone(),
        text: "Customer wants a roadmap call".into(),
        actor: String::new(),
    })
    .await
    .unwrap();
    let r = c
        .reassign_ticket(v1::ReassignTicketRequest {
            request_id: rid(),
            ticket_id: id.clone(),
            new_owner_email: "lee@vendor.example".into(),
            reason: "Dana on leave".into(),
            actor: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.ticket.unwrap().owner_email, "lee@vendor.example");
    let before_reply = get(&mut c, &id, r.sequence)
        .await
        .ticket
        .unwrap()
        .last_touched_at;
    let r = c
        .record_customer_reply(v1::RecordCustomerReplyRequest {
            request_id: rid(),
            ticket_id: id.clone(),
            text: "Thanks, the hotfix works".into(),
            actor: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let after_reply = r.ticket.unwrap();
    assert_eq!(after_reply.reply_count, 1);
    assert_eq!(
        after_reply.last_touched_at, before_reply,
        "a customer reply is not an owner action"
    );

    let r = c.close_ticket(close_req(&id)).await.unwrap().into_inner();
    let closed = r.ticket.unwrap();
    assert_eq!(closed.status, v1::TicketStatus::Closed as i32);
    let closure = closed.closure.unwrap();
    assert_eq!(closure.root_cause_category, "product");
    assert_eq!(closure.opportunity.unwrap().amount, Some(25000.0));

    let r = c
        .reopen_ticket(v1::ReopenTicketRequest {
            request_id: rid(),
            ticket_id: id.clone(),
            reason: "SSO broke again".into(),
            actor: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let reopened = r.ticket.unwrap();
    assert_eq!(
        (reopened.status, reopened.reopen_count, reopened.closure),
        (v1::TicketStatus::Open as i32, 1, None)
    );

    // The read model agrees with the aggregate once it reaches the sequence.
    let view = get(&mut c, &id, r.sequence).await;
    let vt = view.ticket.unwrap();
    assert_eq!(vt.status, v1::TicketStatus::Open as i32);
    assert_eq!(vt.owner_email, "lee@vendor.example");
    assert_eq!(
        (
            vt.contact_count,
            vt.note_count,
            vt.reply_count,
            vt.reopen_count
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(vt.sequence, r.sequence);
    assert_eq!(vt.last_touched_at, reopened.last_touched_at);
    let kinds: Vec<_> = view.activity.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "opened",
            "contact_logged",
            "note_added",
            "owner_reassigned",
            "customer_replied",
            "closed",
            "reopened"
        ]
    );
    assert_eq!(view.activity[5].actor, "csm@vendor.example");
    app.stop().await.unwrap();
}

async fn list_filters_and_pages(backend: Backend) {
    let nats = Nats::start();
    let db = TestDb::new(backend).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    app.seed_ticket_directory().await;
    let mut c = app.tickets().await;
    let mut last = 0;
    let mut ids = Vec::new();
    for i in 0..5 {
        let owner = if i % 2 == 0 {
            "a@vendor.example"
        } else {
            "b@vendor.example"
        };
        let program = if i < 3 {
            "relationship-nps"
        } else {
            "implementation-csat"
        };
        let r = open(&mut c, &format!("ACC-{i}"), owner, program).await;
        ids.push(r.ticket.unwrap().id);
        last = r.sequence;
    }
    last = last.max(contact(&mut c, &ids[0]).await.sequence);
    let list = |req: v1::ListTicketsRequest| {
        let mut c = c.clone();
        async move { c.list_tickets(req).await.unwrap().into_inner() }
    };
    let base = v1::ListTicketsRequest {
        min_sequence: last,
        ..Default::default()
    };
    let all = list(base.clone()).await;
    assert_eq!(all.tickets.len(), 5);
    assert_eq!(all.tickets[0].id, ids[4], "newest first");
    let by_status = list(v1::ListTicketsRequest {
        status: v1::TicketStatus::Contacted as i32,
        ..base.clone()
    })
    .await;
    assert_eq!(
        by_status.tickets.iter().map(|t| &t.id).collect::<Vec<_>>(),
        [&ids[0]]
    );
    let by_owner = list(v1::ListTicketsRequest {
        owner_email: "B@vendor.example".into(),
        ..base.clone()
    })
    .await;
    assert_eq!(by_owner.tickets.len(), 2);
    let by_program = list(v1::ListTicketsRequest {
        program_id: "implementation-csat".into(),
        ..base.clone()
    })
    .await;
    assert_eq!(by_program.tickets.len(), 2);
    let by_account = list(v1::ListTicketsRequest {
        account_id: "ACC-3".into(),
        ..base.clone()
    })
    .await;
    assert_eq!(by_account.tickets[0].id, ids[3]);
    let third = all.tickets[2].opened_at;
    let range = list(v1::ListTicketsRequest {
        opened_after: third,
        ..base.clone()
    })
    .await;
    assert_eq!(range.tickets.len(), 3, "opened_after is inclusive");
    let before = list(v1::ListTicketsRequest {
        opened_before: third,
        ..base.clone()
    })
    .await;
    assert_eq!(before.tickets.len(), 2, "opened_before is exclusive");

    // Pages of 2 visit every ticket exactly once.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(v1::ListTicketsRequest {
            page_size: 2,
            page_token: token.clone(),
            ..base.clone()
        })
        .await;
        assert!(page.tickets.len() <= 2);
        seen.extend(page.tickets.into_iter().map(|t| t.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 5);
    app.stop().await.unwrap();
}

/// Counts messages on the install's event stream.
/// Events the ticketing side writes (tickets, and the directory records
/// seeded first), not the notifications other roles write in reaction.
async fn stream_messages(nats: &Nats, prefix: &str) -> u64 {
    nats.events_of(prefix, &["ticket", "account", "person", "team"])
        .await
}

async fn retried_requests_write_once(backend: Backend) {
    let nats = Nats::start();
    let db = TestDb::new(backend).await;
    let prefix = unique_prefix();
    let app = spawn_app(&nats.url(), &db.url, &prefix).await;
    app.seed_ticket_directory().await;
    // Events of the directory seeded above: the counts below are the ticket's.
    let base = stream_messages(&nats, &prefix).await;
    let mut c = app.tickets().await;
    let req = v1::OpenTicketRequest {
        request_id: "crm-call-4711".into(),
        account_id: "ACME-001".into(),
        owner_email: "dana@vendor.example".into(),
        ..Default::default()
    };
    let first = c.open_ticket(req.clone()).await.unwrap().into_inner();
    let again = c.open_ticket(req.clone()).await.unwrap().into_inner();
    assert!(!first.replayed);
    assert!(again.replayed);
    assert_eq!(first.sequence, again.sequence);
    assert_eq!(
        first.ticket.as_ref().unwrap().id,
        again.ticket.as_ref().unwrap().id
    );
    let id = first.ticket.unwrap().id;

    let note = v1::AddNoteRequest {
        request_id: "note-1".into(),
        ticket_id: id.clone(),
        text: "left a voicemail".into(),
        actor: String::new(),
    };
    // Concurrent duplicates of one request: one write, same answer for all.
    let results = join_all((0..5).map(|_| {
        let mut c = c.clone();
        let note = note.clone();
        async move { c.add_note(note).await.unwrap().into_inner() }
    }))
    .await;
    let seqs: HashSet<_> = results.iter().map(|r| r.sequence).collect();
    assert_eq!(seqs.len(), 1);
    assert_eq!(results.iter().filter(|r| !r.replayed).count(), 1);
    assert_eq!(stream_messages(&nats, &prefix).await, base + 2);

    // After a restart (no cache, outside the broker's duplicate window for
    // all we know) the ticket's own history still answers the retry.
    app.stop().await.unwrap();
    let app = spawn_app(&nats.url(), &db.url, &prefix).await;
    let mut c = app.tickets().await;
    let r = c.add_note(note.clone()).await.unwrap().into_inner();
    assert!(r.replayed);
    assert_eq!(Some(r.sequence), seqs.into_iter().next());
    assert_eq!(stream_messages(&nats, &prefix).await, base + 2);

    // The same request id for a different command is refused, not ignored.
    let err = c
        .log_contact(v1::LogContactRequest {
            request_id: "note-1".into(),
            ticket_id: id.clone(),
            channel: v1::ContactChannel::Email as i32,
            summary: "x".into(),
            actor: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        err.get_details_error_info().unwrap().reason,
        "REQUEST_ID_REUSED"
    );
    // ... and so is the same request id for the same command with other
    // content: its text is not silently dropped behind the first answer.
    let mut other = note.clone();
    other.text = "customer called back: all fixed".into();
    let err = c.add_note(other).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        err.get_details_error_info().unwrap().reason,
        "REQUEST_ID_REUSED"
    );
    assert!(
        err.message().contains("with other content"),
        "{}",
        err.message()
    );
    assert_eq!(stream_messages(&nats, &prefix).await, base + 2);
    let view = get(&mut c, &id, r.sequence).await.ticket.unwrap();
    assert_eq!(view.note_count, 1);
    app.stop().await.unwrap();
}

/// Two replicas (separate processes' worth of state) and many clients write
/// notes on one ticket at once: every note lands exactly once.
async fn racing_clients_lose_nothing(backend: Backend) {
    let nats = Nats::start();
    let db_a = TestDb::new(backend).await;
    let db_b = TestDb::new(backend).await;
    let prefix = unique_prefix();
    let a = spawn_app(&nats.url(), &db_a.url, &prefix).await;
    a.seed_ticket_directory().await;
    // Events of the directory seeded above: the count below is the ticket's.
    let base = stream_messages(&nats, &prefix).await as usize;
    let b = spawn_app(&nats.url(), &db_b.url, &prefix).await;
    let mut ca = a.tickets().await;
    let cb = b.tickets().await;
    let id = open(&mut ca, "ACME-001", "dana@vendor.example", "")
        .await
        .ticket
        .unwrap()
        .id;

    const PER_CLIENT: usize = 20;
    let mut aborted = 0;
    let writes = (0..2 * PER_CLIENT).map(|i| {
        let mut c = if i % 2 == 0 { ca.clone() } else { cb.clone() };
        let id = id.clone();
        async move {
            let req = v1::AddNoteRequest {
                request_id: format!("note-{i}"),
                ticket_id: id,
                text: format!("note {i}"),
                actor: String::new(),
            };
            // The contract: on ABORTED, retry with the same request id.
            let mut aborted = 0;
            loop {
                match c.add_note(req.clone()).await {
                    Ok(r) => return (r.into_inner().sequence, aborted),
                    Err(s) if s.code() == Code::Aborted => aborted += 1,
                    Err(s) => panic!("unexpected error: {s:?}"),
                }
            }
        }
    });
    let mut seqs = HashSet::new();
    for (seq, ab) in join_all(writes).await {
        seqs.insert(seq);
        aborted += ab;
    }
    assert_eq!(seqs.len(), 2 * PER_CLIENT, "every note has its own event");
    let last = *seqs.iter().max().unwrap();
    eprintln!("racing: {aborted} ABORTED answers retried");
    for mut c in [ca, cb] {
        let view = get(&mut c, &id, last).await;
        assert_eq!(view.ticket.unwrap().note_count as usize, 2 * PER_CLIENT);
        assert_eq!(view.activity.len(), 2 * PER_CLIENT + 1);
    }
    assert_eq!(
        stream_messages(&nats, &prefix).await as usize,
        base + 2 * PER_CLIENT + 1
    );
    // The replicas really raced: appends lost on the sequence check and were re-decided.
    let mut conflicts = 0;
    for app in [&a, &b] {
        let (_, body) = closeloop_tests::http_get(app.http_addr, "/metrics")
            .await
            .unwrap();
        conflicts += closeloop_tests::metric(
            &body,
            "closeloop_command_conflicts_total{aggregate=\"ticket\"}",
        );
    }
    eprintln!("racing: {conflicts} sequence conflicts resolved by the server");
    assert!(
        conflicts > 0,
        "the two replicas never conflicted; the test did not race"
    );
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// Everything a view shows, for comparing two builds of it.
/// The ticket views as the API answers them, once every ticket's SLA (a
/// view of its own, the escalation role's events) is there too. The SLA's
/// remaining times are left out: they count from the moment of the answer.
async fn snapshot(c: &mut Client, min_sequence: u64) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    'again: loop {
        let list = c
            .list_tickets(v1::ListTicketsRequest {
                min_sequence,
                page_size: 500,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut out = vec![format!("{list:?}")];
        for t in &list.tickets {
            let mut r = get(c, &t.id, 0).await;
            let Some(sla) = r.sla.as_mut() else {
                assert!(std::time::Instant::now() < deadline, "no SLA on {}", t.id);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue 'again;
            };
            for clock in &mut sla.clocks {
                clock.remaining_secs = 0;
            }
            out.push(format!("{r:?}"));
        }
        return out;
    }
}

async fn empty_database_rebuilds_identical_views(backend: Backend) {
    let nats = Nats::start();
    let db = TestDb::new(backend).await;
    let prefix = unique_prefix();
    let app = spawn_app(&nats.url(), &db.url, &prefix).await;
    app.seed_ticket_directory().await;
    let mut c = app.tickets().await;
    let mut last = 0;
    for i in 0..6 {
        let id = open(
            &mut c,
            &format!("ACC-{i}"),
            "dana@vendor.example",
            "relationship-nps",
        )
        .await
        .ticket
        .unwrap()
        .id;
        last = contact(&mut c, &id).await.sequence;
        if i % 2 == 0 {
            last = c
                .close_ticket(close_req(&id))
                .await
                .unwrap()
                .into_inner()
                .sequence;
        }
    }
    // The SLA view follows its own consumer: settled when two looks agree.
    let mut before = snapshot(&mut c, last).await;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let again = snapshot(&mut c, last).await;
        if again == before {
            break;
        }
        before = again;
    }
    app.stop().await.unwrap();

    db.wipe().await;
    if backend == Backend::Sqlite {
        assert!(!db.sqlite_path().exists());
    }
    let app = spawn_app(&nats.url(), &db.url, &prefix).await;
    let mut c = app.tickets().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut after = snapshot(&mut c, last).await;
    while after != before && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        after = snapshot(&mut c, last).await;
    }
    assert_eq!(before, after);
    assert!(after[0].contains("Closed") || after[0].contains("status: 3"));
    app.stop().await.unwrap();
}

async fn bad_input_gets_specific_errors(backend: Backend) {
    let nats = Nats::start();
    let db = TestDb::new(backend).await;
    let app = spawn_app(&nats.url(), &db.url, &unique_prefix()).await;
    app.seed_ticket_directory().await;
    let mut c = app.tickets().await;
    let id = open(&mut c, "ACME-001", "dana@vendor.example", "")
        .await
        .ticket
        .unwrap()
        .id;

    let fields = |s: &tonic::Status| -> Vec<(String, String)> {
        s.get_details_bad_request()
            .map(|b| {
                b.field_violations
                    .into_iter()
                    .map(|v| (v.field, v.description))
                    .collect()
            })
            .unwrap_or_default()
    };

    // Unknown (well-formed) ticket.
    let unknown = uuid::Uuid::new_v4().to_string();
    let e = c
        .add_note(v1::AddNoteRequest {
            request_id: rid(),
            ticket_id: unknown.clone(),
            text: "x".into(),
            actor: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains(&unknown));
    let e = c
        .get_ticket(v1::GetTicketRequest {
            ticket_id: unknown,
            min_sequence: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Malformed id.
    let e = c
        .get_ticket(v1::GetTicketRequest {
            ticket_id: "T-42; DROP TABLE tickets".into(),
            min_sequence: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(fields(&e)[0].0, "ticket_id");

    // Empty root cause (after a contact, so only the documentation is wrong).
    contact(&mut c, &id).await;
    let mut req = close_req(&id);
    req.root_cause = "   ".into();
    req.actions_taken = String::new();
    let e = c.close_ticket(req).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let f: Vec<_> = fields(&e).into_iter().map(|(f, _)| f).collect();
    assert_eq!(f, ["root_cause", "actions_taken"]);

    // Reassign to the current owner.
    let e = c
        .reassign_ticket(v1::ReassignTicketRequest {
            request_id: rid(),
            ticket_id: id.clone(),
            new_owner_email: "DANA@vendor.example".into(),
            reason: "why not".into(),
            actor: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("already owned by dana@vendor.example"));
    assert_eq!(e.get_details_error_info().unwrap().reason, "SAME_OWNER");

    // Manual tickets name only what exists: every unknown account, owner
    // and program at once, as field details.
    let e = c
        .open_ticket(v1::OpenTicketRequest {
            request_id: rid(),
            account_id: "NOPE-1".into(),
            owner_email: "ghost@vendor.example".into(),
            program_id: "nps-2027".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert_eq!(
        e.get_details_error_info().unwrap().reason,
        "UNKNOWN_REFERENCE"
    );
    let f: Vec<_> = fields(&e).into_iter().map(|(f, _)| f).collect();
    assert_eq!(f, ["account_id", "owner_email", "program_id"]);
    assert!(fields(&e)[2].1.contains("known: relationship-nps"));
    // A known account and owner with a configured program is fine.
    open(&mut c, "ACME-001", "b@vendor.example", "relationship-nps").await;
    // Reassignment to someone outside the directory (escalation could
    // never reach a manager).
    let e = c
        .reassign_ticket(v1::ReassignTicketRequest {
            request_id: rid(),
            ticket_id: id.clone(),
            new_owner_email: "ghost@vendor.example".into(),
            reason: "holiday cover".into(),
            actor: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(fields(&e)[0].0, "new_owner_email");
    assert!(fields(&e)[0].1.contains("not a person in the directory"));

    // Reassign without a reason; bad e-mail.
    let e = c
        .reassign_ticket(v1::ReassignTicketRequest {
            request_id: rid(),
            ticket_id: id.clone(),
            new_owner_email: "lee".into(),
            reason: String::new(),
            actor: String::new(),
        })
        .await
        .unwrap_err();
    let f: Vec<_> = fields(&e).into_iter().map(|(f, _)| f).collect();
    assert_eq!(f, ["new_owner_email", "reason"]);

    // Oversize text says what the limit is.
    let e = c
        .add_note(v1::AddNoteRequest {
            request_id: rid(),
            ticket_id: id.clone(),
            text: "x".repeat(4001),
            actor: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        fields(&e),
        [(
            "text".to_string(),
            "is 4001 characters; the limit is 4000".to_string()
        )]
    );

    // Missing request id, unspecified channel.
    let e = c
        .log_contact(v1::LogContactRequest {
            request_id: String::new(),
            ticket_id: id.clone(),
            channel: 0,
            summary: "x".into(),
            actor: String::new(),
        })
        .await
        .unwrap_err();
    let f: Vec<_> = fields(&e).into_iter().map(|(f, _)| f).collect();
    assert_eq!(f, ["request_id", "channel"]);
    // A channel number the enum does not have is named, not "required".
    let e = c
        .log_contact(v1::LogContactRequest {
            request_id: rid(),
            ticket_id: id.clone(),
            channel: 42,
            summary: "x".into(),
            actor: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        fields(&e),
        [(
            "channel".to_string(),
            "42 is not a contact channel: use PHONE, EMAIL, MEETING or OTHER".to_string()
        )]
    );

    // Reopen an open ticket; close before contact on a fresh ticket.
    let e = c
        .reopen_ticket(v1::ReopenTicketRequest {
            request_id: rid(),
            ticket_id: id.clone(),
            reason: "x".into(),
            actor: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let fresh = open(&mut c, "ACME-002", "dana@vendor.example", "")
        .await
        .ticket
        .unwrap()
        .id;
    let e = c.close_ticket(close_req(&fresh)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(
        e.get_details_error_info().unwrap().reason,
        "CONTACT_REQUIRED"
    );

    // Bad list arguments.
    let e = c
        .list_tickets(v1::ListTicketsRequest {
            page_size: 501,
            page_token: "garbage".into(),
            owner_email: "nobody".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let f: Vec<_> = fields(&e).into_iter().map(|(f, _)| f).collect();
    assert_eq!(f, ["owner_email", "page_size", "page_token"]);
    app.stop().await.unwrap();
}

closeloop_tests::on_both_backends!(
    every_command_over_grpc,
    list_filters_and_pages,
    retried_requests_write_once,
    racing_clients_lose_nothing,
    empty_database_rebuilds_identical_views,
    bad_input_gets_specific_errors,
);
