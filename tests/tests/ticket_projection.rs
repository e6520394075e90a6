//! The ticket view's batch writes (`apply_batch`, which groups a batch's
//! openings, contacts and closes into multi-row statements) leave exactly
//! the rows that applying the same events one at a time (`apply`) leaves,
//! on SQLite and PostgreSQL: for batches of every size from one event to
//! the whole stream, where one ticket has several events in a batch and
//! every kind of event is mixed in. And a ticket's read shows its activity
//! only up to its row, whatever the projector commits between the read's
//! two statements.

use closeloop_domain::ticket::{Closure, Origin, Plan};
use closeloop_domain::values::Channel;
use closeloop_domain::{AccountId, Email, RequestId, Text, TicketCommand, TicketId};
use closeloop_eventstore::{EventContext, EventStore, Prefix, StoredEvent};
use closeloop_readmodel::{Db, Projection};
use closeloop_tests::{Backend, Nats, TestDb, event_store};
use closeloop_ticketing::commands::TicketCommands;
use closeloop_ticketing::projection::TicketStateProjection;
use futures::StreamExt;
use sqlx::{Connection, Row};

/// Every column of `tickets`, as one text per row.
const TICKET_COLUMNS: &[&str] = &[
    "id",
    "status",
    "account_id",
    "owner_email",
    "program_id",
    "title",
    "source",
    "feedback_id",
    "workflow_id",
    "opened_at",
    "last_touched_at",
    "first_contact_at",
    "closed_at",
    "root_cause_category",
    "root_cause",
    "actions_taken",
    "opportunity_kind",
    "opportunity_amount",
    "contact_count",
    "note_count",
    "reply_count",
    "reopen_count",
    "sequence",
    "stakeholders",
    "guide",
    "first_contact_secs",
    "escalate_after_secs",
    "close_within_secs",
    "owner_fallback_reason",
    "config_version",
    "feedback_revision",
    "require_opportunity",
    "waiting_reason",
];

const ACTIVITY_COLUMNS: &[&str] = &[
    "ticket_id",
    "sequence",
    "occurred_at",
    "kind",
    "actor",
    "detail",
];

fn text(s: &str) -> Text {
    Text::parse("t", s, 4000).unwrap()
}

fn close(opportunity: Option<(&str, Option<f64>)>) -> TicketCommand {
    TicketCommand::Close(
        Closure::parse(
            "product",
            "the export timed out on large accounts",
            "raised the limit and called the customer",
            opportunity,
        )
        .unwrap(),
    )
}

/// Ticket `i`'s commands after its opening: every kind of event, in
/// orders that differ from ticket to ticket.
fn script(i: usize) -> Vec<TicketCommand> {
    let contact = |s: &str| TicketCommand::LogContact {
        channel: Channel::Phone,
        summary: text(s),
    };
    match i % 6 {
        0 => vec![contact("called"), close(None)],
        1 => vec![
            contact("called"),
            contact("called again"),
            TicketCommand::AddNote {
                text: text("a note"),
            },
            close(Some(("upsell", Some(1200.5)))),
        ],
        2 => vec![
            TicketCommand::WaitOnCustomer {
                reason: text("waiting for logs"),
            },
            TicketCommand::RecordReply {
                text: text("here are the logs"),
            },
            contact("mailed"),
            close(Some(("renewal", None))),
            TicketCommand::Reopen {
                reason: text("it came back"),
            },
            contact("called once more"),
            close(None),
        ],
        3 => vec![
            TicketCommand::Reassign {
                new_owner: Email::parse("e", "lee@vendor.example").unwrap(),
                reason: text("vacation"),
            },
            TicketCommand::AttachFeedback {
                revision: 2,
                summary: "comment added".into(),
            },
            contact("met"),
        ],
        4 => vec![
            TicketCommand::WaitOnCustomer {
                reason: text("on leave"),
            },
            TicketCommand::EndWait {
                reason: text("back"),
            },
            contact("called"),
            close(Some(("upsell", Some(3.0)))),
        ],
        _ => vec![],
    }
}

/// Writes the scripts of `n` tickets through the ticket executor, one step
/// of every ticket in turn (so the stream interleaves tickets), and
/// returns how many events were written.
async fn write_events(store: &EventStore, n: usize) -> usize {
    let commands = TicketCommands::new(store.clone());
    let ctx = EventContext::caused_by(None, "dana@vendor.example");
    let mut scripts: Vec<(TicketId, Vec<TicketCommand>)> = Vec::new();
    for i in 0..n {
        let rid = RequestId::parse("r", &format!("open-{i}")).unwrap();
        let id = TicketId::for_manual_request(&rid);
        let open = TicketCommand::Open {
            account_id: AccountId::parse("a", &format!("ACME-{:03}", i % 7)).unwrap(),
            owner: Email::parse("o", "dana@vendor.example").unwrap(),
            program_id: None,
            title: Some(text(&format!("ticket {i}"))),
            origin: Origin::Manual,
            plan: Box::<Plan>::default(),
        };
        commands
            .execute(id, rid.as_str(), &ctx, &open)
            .await
            .unwrap();
        scripts.push((id, script(i)));
    }
    let mut written = n;
    let longest = scripts.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
    for step in 0..longest {
        for (id, script) in &scripts {
            if let Some(cmd) = script.get(step) {
                let rid = format!("{id}-{step}");
                commands.execute(*id, &rid, &ctx, cmd).await.unwrap();
                written += 1;
            }
        }
    }
    written
}

async fn read_events(store: &EventStore, prefix: &Prefix, n: usize) -> Vec<StoredEvent> {
    let filter = prefix.aggregate_filter(closeloop_ticketing::AGGREGATE);
    let events = store.follow(&filter, 0).await.unwrap();
    events.take(n).map(|e| e.unwrap()).collect().await
}

async fn fresh_view(backend: Backend) -> (TestDb, Db) {
    let test_db = TestDb::new(backend).await;
    let db = Db::connect(&test_db.url).await.unwrap();
    let set = closeloop_runtime::MigrationSet::of([
        &closeloop_readmodel::MIGRATOR,
        &closeloop_ticketing::MIGRATOR,
    ])
    .unwrap();
    db.migrate(&set.migrator().await.unwrap()).await.unwrap();
    (test_db, db)
}

/// Applies `events` in batches of `sizes` (cycled), each in a transaction
/// of its own; a size of 0 applies events one at a time through `apply`.
async fn apply_in(db: &Db, events: &[StoredEvent], sizes: &[usize]) {
    let p = TicketStateProjection;
    let mut w = db.writer().await.unwrap();
    let mut rest = events;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (batch, after) = rest.split_at((*size).max(1).min(rest.len()));
        rest = after;
        let mut tx = w.begin().await.unwrap();
        if *size == 0 {
            p.apply(&mut tx, &batch[0]).await.unwrap_or_else(|e| {
                panic!(
                    "{:?}: {e}",
                    batch[0].envelope.as_ref().map(|e| e.event_type.clone())
                )
            });
        } else {
            let poisoned = p.apply_batch(&mut tx, batch).await.unwrap();
            assert!(poisoned.is_empty(), "{poisoned:?}");
        }
        tx.commit().await.unwrap();
    }
}

/// The rows of `table` (each row's columns as one text), sorted.
async fn rows(db: &Db, table: &str, columns: &[&str]) -> Vec<String> {
    let cols: Vec<String> = columns
        .iter()
        .map(|c| format!("COALESCE(CAST({c} AS TEXT), '<null>')"))
        .collect();
    let sql = format!(
        "SELECT {} AS r FROM {table} ORDER BY r",
        cols.join(" || '|' || ")
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect()
}

/// Fails naming the rows that differ, not printing both tables.
fn same(got: &[String], want: &[String], what: &str) {
    let missing: Vec<_> = want.iter().filter(|r| !got.contains(r)).take(3).collect();
    let extra: Vec<_> = got.iter().filter(|r| !want.contains(r)).take(3).collect();
    assert!(
        got.len() == want.len() && missing.is_empty() && extra.is_empty(),
        "{what}: {} rows, want {}; rows wanted but missing (first 3): {missing:#?}; \
         rows there but not wanted: {extra:#?}",
        got.len(),
        want.len()
    );
}

async fn batches_equal_one_at_a_time(backend: Backend) {
    let nats = Nats::start();
    let (prefix, store) = event_store(&nats).await;
    let written = write_events(&store, 30).await;
    let events = read_events(&store, &prefix, written).await;
    assert_eq!(events.len(), written);

    let (_one_db, one) = fresh_view(backend).await;
    apply_in(&one, &events, &[0]).await;
    let want_tickets = rows(&one, "tickets", TICKET_COLUMNS).await;
    let want_activity = rows(&one, "ticket_activity", ACTIVITY_COLUMNS).await;
    assert_eq!(want_tickets.len(), 30);
    assert_eq!(want_activity.len(), written);
    // The scripts reach every status and fill every optional column.
    for status in ["|open|", "|contacted|", "|closed|"] {
        assert!(
            want_tickets.iter().any(|r| r.contains(status)),
            "no {status} ticket"
        );
    }
    assert!(want_tickets.iter().any(|r| r.contains("|upsell|1200.5|")));

    reads_never_show_activity_past_the_ticket(&one).await;

    for sizes in [
        &[1][..],
        &[2, 3, 5, 7],
        &[16, 1, 40],
        &[64],
        &[events.len()],
    ] {
        let (_db, batched) = fresh_view(backend).await;
        apply_in(&batched, &events, sizes).await;
        same(
            &rows(&batched, "tickets", TICKET_COLUMNS).await,
            &want_tickets,
            &format!("tickets, batches of {sizes:?}"),
        );
        same(
            &rows(&batched, "ticket_activity", ACTIVITY_COLUMNS).await,
            &want_activity,
            &format!("ticket_activity, batches of {sizes:?}"),
        );
        // Applied again (a replica that lost the checkpoint race), nothing changes.
        apply_in(&batched, &events, sizes).await;
        same(
            &rows(&batched, "tickets", TICKET_COLUMNS).await,
            &want_tickets,
            &format!("tickets, batches of {sizes:?}, applied twice"),
        );
    }
}

/// `GetTicket` reads the ticket's row, then its activity: two statements,
/// between which the projector may commit the ticket's next events. What a
/// commit in between leaves is made here directly (an activity line past
/// every ticket's row), and each ticket must read as before: its activity
/// up to its row's sequence, never a line the row does not reflect yet.
async fn reads_never_show_activity_past_the_ticket(db: &Db) {
    let mut conn = db.pool().acquire().await.unwrap();
    let ids: Vec<String> = sqlx::query("SELECT id FROM tickets ORDER BY id")
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut before = Vec::new();
    for id in &ids {
        let read = closeloop_ticketing::queries::get_ticket(&mut conn, id)
            .await
            .unwrap()
            .unwrap();
        assert!(!read.1.is_empty(), "{id} has no activity");
        before.push(read);
    }
    let ahead = sqlx::query(
        "INSERT INTO ticket_activity (ticket_id, sequence, occurred_at, kind, actor, detail) \
         SELECT id, sequence + 1000000, opened_at, 'note', 'dana@vendor.example', 'later' \
         FROM tickets",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    assert_eq!(ahead.rows_affected(), ids.len() as u64);
    for (id, want) in ids.iter().zip(&before) {
        let got = closeloop_ticketing::queries::get_ticket(&mut conn, id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got, want, "{id}: a line past the ticket's row was read");
    }
    sqlx::query("DELETE FROM ticket_activity WHERE sequence >= 1000000")
        .execute(&mut *conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_batches_equal_one_at_a_time() {
    batches_equal_one_at_a_time(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_batches_equal_one_at_a_time() {
    batches_equal_one_at_a_time(Backend::Postgres).await;
}
