//! The ticket-state projection: `tickets` (one row per ticket) and
//! `ticket_activity` (one row per event).

use std::collections::HashMap;

use closeloop_domain::ticket::Origin;
use closeloop_domain::{RecordedEvent, TicketEvent, TicketId};
use closeloop_eventstore::{Prefix, StoredEvent};
use closeloop_readmodel::{Insert, Projection, ProjectionError, Val, chunks, values_sql};
use sqlx::AnyConnection;

/// Checkpoint name of the ticket-state projection.
pub const NAME: &str = "ticket_state";

pub struct TicketStateProjection;

impl Projection for TicketStateProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, prefix: &Prefix) -> String {
        prefix.aggregate_filter(crate::AGGREGATE)
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let rec = closeloop_contracts::ticket::decode(event)
            .map_err(|e| ProjectionError::Poison(e.to_string()))?;
        apply(conn, &rec).await?;
        let mut lines = activity_insert();
        lines.rows.push(activity(&rec));
        lines.write(conn).await?;
        Ok(())
    }

    /// The batch's ticket rows in few statements ([`apply_grouped`]), its
    /// activity lines in one multi-row `INSERT`.
    async fn apply_batch(
        &self,
        conn: &mut AnyConnection,
        events: &[StoredEvent],
    ) -> Result<Vec<(u64, String)>, sqlx::Error> {
        let mut poisoned = Vec::new();
        let mut recs = Vec::with_capacity(events.len());
        for ev in events {
            match closeloop_contracts::ticket::decode(ev) {
                Ok(rec) => recs.push(rec),
                Err(e) => poisoned.push((ev.sequence, e.to_string())),
            }
        }
        apply_grouped(conn, &recs).await?;
        let mut lines = activity_insert();
        lines.rows.extend(recs.iter().map(activity));
        lines.write(conn).await?;
        Ok(poisoned)
    }
}

/// An empty insert of `ticket_activity` rows (each applies once: a row
/// already there is left out).
fn activity_insert() -> Insert {
    Insert::new(
        "ticket_activity",
        &[
            "ticket_id",
            "sequence",
            "occurred_at",
            "kind",
            "actor",
            "detail",
        ],
    )
}

/// `r`'s activity line, in [`activity_insert`]'s columns.
fn activity(r: &RecordedEvent) -> Vec<Val> {
    vec![
        Val::S(r.ticket_id.to_string()),
        Val::I(r.sequence as i64),
        Val::I(r.occurred_at.as_micros()),
        Val::from(r.event.kind()),
        Val::from(r.actor.as_str()),
        Val::S(describe(&r.event)),
    ]
}

/// One line describing an event, for the activity timeline.
pub fn describe(e: &TicketEvent) -> String {
    match e {
        TicketEvent::Opened {
            account_id,
            owner_email,
            title,
            origin,
            plan,
            ..
        } => {
            let how = match origin {
                Origin::Manual => "manually".to_string(),
                Origin::Workflow { workflow_id, .. } => format!("by workflow {workflow_id}"),
            };
            let title = if title.is_empty() {
                String::new()
            } else {
                format!(" \"{title}\"")
            };
            let flag = match &plan.fallback_reason {
                Some(why) => format!(" (fallback owner: {why})"),
                None => String::new(),
            };
            format!("opened{title} {how} for {account_id}, owner {owner_email}{flag}")
        }
        TicketEvent::ContactLogged { channel, summary } => {
            format!("{}: {summary}", channel.as_str())
        }
        TicketEvent::NoteAdded { text } => text.clone(),
        TicketEvent::OwnerReassigned {
            previous_owner_email,
            new_owner_email,
            reason,
        } => format!("{previous_owner_email} -> {new_owner_email}: {reason}"),
        TicketEvent::CustomerReplied { text } => text.clone(),
        TicketEvent::Closed {
            root_cause_category,
            root_cause,
            actions_taken,
            opportunity,
        } => {
            let opp = match opportunity {
                Some((k, Some(a))) => format!(" (opportunity: {k} {a})"),
                Some((k, None)) => format!(" (opportunity: {k})"),
                None => String::new(),
            };
            format!("[{root_cause_category}] {root_cause}; actions: {actions_taken}{opp}")
        }
        TicketEvent::Reopened { reason } => reason.clone(),
        TicketEvent::FeedbackRevised { revision, summary } => {
            format!("response revised (revision {revision}): {summary}")
        }
        TicketEvent::AwaitingCustomer { reason } => format!("waiting on the customer: {reason}"),
        TicketEvent::WaitEnded { reason } => format!("no longer waiting: {reason}"),
    }
}

/// `last_touched_at = max(last_touched_at, at)`, portable to SQLite and PostgreSQL.
const TOUCH: &str =
    "last_touched_at = CASE WHEN last_touched_at < $3 THEN $3 ELSE last_touched_at END";

/// Applies `r` to its ticket's row (its activity line is written apart).
async fn apply(conn: &mut AnyConnection, r: &RecordedEvent) -> Result<(), sqlx::Error> {
    let id = r.ticket_id.to_string();
    let seq = r.sequence as i64;
    let at = r.occurred_at.as_micros();
    // $1 id, $2 sequence, $3 occurred_at; each update applies once (sequence guard).
    // Only constant SQL fragments are formatted in; values are bound.
    let update = |set: &str| {
        sqlx::AssertSqlSafe(format!(
            "UPDATE tickets SET {set}, sequence = $2 WHERE id = $1 AND sequence < $2"
        ))
    };
    let sqlite = conn.backend_name() == "SQLite";
    match &r.event {
        // The kinds a live batch is made of: the grouped statements' own
        // code, with one row.
        TicketEvent::Opened { .. } => open_rows(conn, sqlite, &[r]).await?,
        TicketEvent::ContactLogged { .. } => contact_rows(conn, sqlite, &[r]).await?,
        TicketEvent::Closed { .. } => close_rows(conn, sqlite, &[r]).await?,
        TicketEvent::FeedbackRevised { revision, .. } => {
            // Not an owner action: last_touched_at stays.
            sqlx::query(update(
                "feedback_revision = CASE WHEN feedback_revision < $3 THEN $3 \
                 ELSE feedback_revision END",
            ))
            .bind(&id)
            .bind(seq)
            .bind(i64::from(*revision))
            .execute(&mut *conn)
            .await?;
        }
        TicketEvent::NoteAdded { .. } => {
            sqlx::query(update(&format!("note_count = note_count + 1, {TOUCH}")))
                .bind(&id)
                .bind(seq)
                .bind(at)
                .execute(&mut *conn)
                .await?;
        }
        TicketEvent::OwnerReassigned {
            new_owner_email, ..
        } => {
            sqlx::query(update(&format!("owner_email = $4, {TOUCH}")))
                .bind(&id)
                .bind(seq)
                .bind(at)
                .bind(new_owner_email.as_str())
                .execute(&mut *conn)
                .await?;
        }
        TicketEvent::AwaitingCustomer { reason } => {
            // Not an owner action: last_touched_at stays.
            sqlx::query(update("waiting_reason = $3"))
                .bind(&id)
                .bind(seq)
                .bind(reason.as_str())
                .execute(&mut *conn)
                .await?;
        }
        TicketEvent::WaitEnded { .. } => {
            sqlx::query(update("waiting_reason = ''"))
                .bind(&id)
                .bind(seq)
                .execute(&mut *conn)
                .await?;
        }
        TicketEvent::CustomerReplied { .. } => {
            // Not an owner action: last_touched_at stays; a wait ends.
            sqlx::query(update("reply_count = reply_count + 1, waiting_reason = ''"))
                .bind(&id)
                .bind(seq)
                .execute(&mut *conn)
                .await?;
        }
        TicketEvent::Reopened { .. } => {
            sqlx::query(update(&format!(
                "status = 'open', reopen_count = reopen_count + 1, closed_at = NULL, \
                 root_cause_category = NULL, root_cause = NULL, actions_taken = NULL, \
                 opportunity_kind = NULL, opportunity_amount = NULL, {TOUCH}"
            )))
            .bind(&id)
            .bind(seq)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Applies `recs` (in stream order) to their tickets' rows in few
/// statements. The batch is cut into rounds: each ticket's first event in
/// the batch, then each one's second, and so on, so that a round names a
/// ticket at most once and a ticket's events keep their order. Within a
/// round, the openings, contacts and closes (nearly all of a live batch)
/// are written as multi-row statements in [`chunks`], the rest one
/// by one. A live batch of ten events took fourteen statements, each a
/// round trip to SQLite's thread (which sleeps between them); with 16
/// clients that thread now goes to sleep 0.74 times per command instead of
/// 1.3 (`docs/operations.md`, the command path).
async fn apply_grouped(
    conn: &mut AnyConnection,
    recs: &[RecordedEvent],
) -> Result<(), sqlx::Error> {
    let sqlite = conn.backend_name() == "SQLite";
    let mut round_of: HashMap<TicketId, usize> = HashMap::with_capacity(recs.len());
    let mut rounds: Vec<Vec<&RecordedEvent>> = Vec::new();
    for r in recs {
        let k = round_of.entry(r.ticket_id).or_insert(0);
        if *k == rounds.len() {
            rounds.push(Vec::new());
        }
        rounds[*k].push(r);
        *k += 1;
    }
    for round in rounds {
        let (mut opened, mut contacts, mut closes) = (Vec::new(), Vec::new(), Vec::new());
        for r in round {
            match &r.event {
                TicketEvent::Opened { .. } => opened.push(r),
                TicketEvent::ContactLogged { .. } => contacts.push(r),
                TicketEvent::Closed { .. } => closes.push(r),
                _ => apply(conn, r).await?,
            }
        }
        for chunk in chunks(&opened) {
            open_rows(conn, sqlite, chunk).await?;
        }
        for chunk in chunks(&contacts) {
            contact_rows(conn, sqlite, chunk).await?;
        }
        for chunk in chunks(&closes) {
            close_rows(conn, sqlite, chunk).await?;
        }
    }
    Ok(())
}

/// The `tickets` rows of `rs` (all `Opened`; a row already there stays).
async fn open_rows(
    conn: &mut AnyConnection,
    sqlite: bool,
    rs: &[&RecordedEvent],
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO tickets (id, sequence, opened_at, last_touched_at, status, account_id, \
         owner_email, program_id, title, source, feedback_id, workflow_id, stakeholders, \
         guide, first_contact_secs, escalate_after_secs, close_within_secs, \
         owner_fallback_reason, config_version, require_opportunity) VALUES {} \
         ON CONFLICT (id) DO NOTHING",
        values_sql(
            sqlite,
            "(?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rs.len()
        )
    );
    let secs = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for r in rs {
        let TicketEvent::Opened {
            account_id,
            owner_email,
            program_id,
            title,
            origin,
            plan,
        } = &r.event
        else {
            unreachable!("open_rows takes openings only");
        };
        let (source, feedback_id, workflow_id) = origin.parts();
        let at = r.occurred_at.as_micros();
        q = q
            .bind(r.ticket_id.to_string())
            .bind(r.sequence as i64)
            .bind(at)
            .bind(at)
            .bind(account_id.as_str())
            .bind(owner_email.as_str())
            .bind(program_id.as_str())
            .bind(title.as_str())
            .bind(source)
            .bind(feedback_id)
            .bind(workflow_id)
            .bind(crate::plan_json::stakeholders_to_json(&plan.stakeholders))
            .bind(plan.guide.as_ref().map(crate::plan_json::guide_to_json))
            .bind(secs(plan.sla.first_contact_secs))
            .bind(secs(plan.sla.escalate_after_secs))
            .bind(secs(plan.sla.close_within_secs))
            .bind(plan.fallback_reason.clone().unwrap_or_default())
            .bind(plan.config_version.as_str())
            .bind(i64::from(plan.require_opportunity));
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

/// An owner action on `n` tickets in one statement: each row of `row`
/// gives the ticket id (`v.column1`), the event's sequence (`v.column2`)
/// and its time (`v.column3`), then what `set` reads. Every row also
/// touches its ticket and takes the sequence, once (sequence guard).
fn grouped_update(sqlite: bool, set: &str, row: &str, n: usize) -> String {
    format!(
        "UPDATE tickets SET {set}, \
         last_touched_at = CASE WHEN last_touched_at < v.column3 THEN v.column3 \
         ELSE last_touched_at END, sequence = v.column2 \
         FROM (VALUES {}) AS v WHERE tickets.id = v.column1 AND tickets.sequence < v.column2",
        values_sql(sqlite, row, n)
    )
}

/// Applies `rs` (all `ContactLogged`, one per ticket) in one statement,
/// each once (sequence guard).
async fn contact_rows(
    conn: &mut AnyConnection,
    sqlite: bool,
    rs: &[&RecordedEvent],
) -> Result<(), sqlx::Error> {
    let sql = grouped_update(
        sqlite,
        "status = 'contacted', contact_count = contact_count + 1, \
         first_contact_at = COALESCE(first_contact_at, v.column3)",
        "(?, ?, ?)",
        rs.len(),
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for r in rs {
        q = q
            .bind(r.ticket_id.to_string())
            .bind(r.sequence as i64)
            .bind(r.occurred_at.as_micros());
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

/// Applies `rs` (all `Closed`, one per ticket) in one statement, each once
/// (sequence guard).
async fn close_rows(
    conn: &mut AnyConnection,
    sqlite: bool,
    rs: &[&RecordedEvent],
) -> Result<(), sqlx::Error> {
    // The cast tells PostgreSQL the type of a kind that may be NULL in
    // every row (a VALUES column takes one type for all its rows). The
    // amount is bound as two values that are never NULL: whether there is
    // one (1 or 0), and the number (0 when there is none). sqlx's `Any`
    // driver declares a NULL `f64` to PostgreSQL as a 4-byte `real` (sqlx
    // 0.9 swaps `Real` and `Double` for NULLs), and PostgreSQL keeps the
    // statement prepared with that type: after a close without an amount,
    // the next close with one failed on that connection ("incorrect binary
    // data format"), and the ticket view stopped there, retrying that batch.
    let sql = grouped_update(
        sqlite,
        "status = 'closed', closed_at = v.column3, root_cause_category = v.column4, \
         root_cause = v.column5, actions_taken = v.column6, opportunity_kind = v.column7, \
         opportunity_amount = v.column8",
        "(?, ?, ?, ?, ?, ?, CAST(? AS TEXT), CASE WHEN ? = 1 THEN ? END)",
        rs.len(),
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for r in rs {
        let TicketEvent::Closed {
            root_cause_category,
            root_cause,
            actions_taken,
            opportunity,
        } = &r.event
        else {
            unreachable!("close_rows takes closes only");
        };
        let (kind, has_amount, amount) = match opportunity {
            Some((k, Some(a))) => (Some(k.as_str()), 1i64, *a),
            Some((k, None)) => (Some(k.as_str()), 0, 0.0),
            None => (None, 0, 0.0),
        };
        q = q
            .bind(r.ticket_id.to_string())
            .bind(r.sequence as i64)
            .bind(r.occurred_at.as_micros())
            .bind(root_cause_category.as_str())
            .bind(root_cause.as_str())
            .bind(actions_taken.as_str())
            .bind(kind)
            .bind(has_amount)
            .bind(amount);
    }
    q.execute(&mut *conn).await?;
    Ok(())
}
