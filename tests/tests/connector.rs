//! A CRM connector written from `docs/events.md` alone: a durable pull
//! consumer on every ticket event, restarted mid-stream with events it had
//! received but not acknowledged. Those come back after later events of the
//! same tickets; following the documented rule (apply an event only when its
//! `Closeloop-Previous-Sequence` is the last one applied for that ticket),
//! each ticket's events are still applied exactly once, in order.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer::pull};
use closeloop_proto::v1;
use closeloop_tests::{Backend, Nats, TestDb, spawn_app, unique_prefix};
use futures::StreamExt;

/// What the connector keeps: per ticket, the stream sequences it applied.
#[derive(Default)]
struct Crm {
    applied: HashMap<String, Vec<u64>>,
    /// Events that arrived before their predecessor (negatively acknowledged).
    early: usize,
}

impl Crm {
    fn last(&self, ticket: &str) -> u64 {
        self.applied
            .get(ticket)
            .and_then(|s| s.last().copied())
            .unwrap_or(0)
    }

    /// The documented rule. Returns how to acknowledge the message.
    fn handle(&mut self, m: &jetstream::Message) -> AckKind {
        let ticket = m.subject.rsplit('.').next().unwrap().to_string();
        let seq = m.info().unwrap().stream_sequence;
        let previous: u64 = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Closeloop-Previous-Sequence"))
            .expect("every event carries Closeloop-Previous-Sequence")
            .as_str()
            .parse()
            .unwrap();
        let last = self.last(&ticket);
        if seq <= last {
            AckKind::Ack // applied before: a redelivery
        } else if previous == last {
            self.applied.entry(ticket).or_default().push(seq);
            AckKind::Ack
        } else {
            self.early += 1;
            AckKind::Nak(Some(Duration::from_millis(200)))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_connector_applies_each_tickets_events_in_order() {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let prefix = unique_prefix();
    let app = spawn_app(&nats.url(), &db.url, &prefix).await;
    app.seed_ticket_directory().await;
    let mut c = app.tickets().await;

    // Three tickets, their events interleaved on the stream.
    let mut ids = Vec::new();
    for (i, account) in ["ACC-1", "ACC-2", "ACC-3"].iter().enumerate() {
        let r = c
            .open_ticket(v1::OpenTicketRequest {
                request_id: format!("open-{i}"),
                account_id: account.to_string(),
                owner_email: "dana@vendor.example".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        ids.push(r.ticket.unwrap().id);
    }
    for round in 0..5 {
        for id in &ids {
            c.add_note(v1::AddNoteRequest {
                request_id: format!("note-{round}"),
                ticket_id: id.clone(),
                text: format!("note {round}"),
                actor: String::new(),
            })
            .await
            .unwrap();
        }
    }
    let total = ids.len() * 6;

    // The consumer of the docs' example (ack wait shortened for the test).
    let stream = nats.events_stream(&prefix).await;
    let config = pull::Config {
        durable_name: Some("crm-sync".into()),
        filter_subject: format!("{prefix}.events.ticket.*"),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(1),
        max_deliver: -1,
        ..Default::default()
    };
    let mut crm = Crm::default();

    // First run: receives ten events, applies four, dies without
    // acknowledging the other six.
    let consumer = stream
        .get_or_create_consumer("crm-sync", config.clone())
        .await
        .unwrap();
    let mut batch = consumer.fetch().max_messages(10).messages().await.unwrap();
    let mut handled = 0;
    while let Some(m) = batch.next().await {
        let m = m.unwrap();
        if handled < 4 {
            let ack = crm.handle(&m);
            m.ack_with(ack).await.unwrap();
        }
        handled += 1;
    }
    drop(batch);
    drop(consumer);

    // Restart: later events come first, the six come back after ack_wait.
    let consumer = stream
        .get_or_create_consumer("crm-sync", config)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while crm.applied.values().map(Vec::len).sum::<usize>() < total {
        assert!(Instant::now() < deadline, "connector stalled");
        let mut batch = consumer
            .fetch()
            .max_messages(8)
            .expires(Duration::from_millis(300))
            .messages()
            .await
            .unwrap();
        while let Some(m) = batch.next().await {
            let m = m.unwrap();
            let ack = crm.handle(&m);
            m.ack_with(ack).await.unwrap();
        }
    }
    assert!(
        crm.early > 0,
        "the restart must have delivered some events before their predecessors"
    );

    // Each ticket: exactly its events, in stream order.
    for id in &ids {
        let subject = format!("{prefix}.events.ticket.{id}");
        let mut want = Vec::new();
        let mut seq = 0;
        while let Ok(m) = stream.get_first_raw_message_by_subject(&subject, seq).await {
            want.push(m.sequence);
            seq = m.sequence + 1;
        }
        assert_eq!(crm.applied[id.as_str()], want, "ticket {id}");
    }
    app.stop().await.unwrap();
}
