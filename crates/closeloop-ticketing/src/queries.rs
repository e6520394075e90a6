//! Reads over the ticket-state views.

use closeloop_domain::{Status, Timestamp};
use closeloop_proto::{convert, v1};
use closeloop_readmodel::Db;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::errors::TicketError;

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

/// Filters of a ticket listing; all optional.
#[derive(Debug, Clone, Default)]
pub struct TicketFilter {
    pub status: Option<Status>,
    pub owner_email: Option<String>,
    pub program_id: Option<String>,
    pub account_id: Option<String>,
    pub opened_after: Option<Timestamp>,
    pub opened_before: Option<Timestamp>,
}

/// Position after the last ticket of a page: tickets are listed newest first
/// by (opened_at, id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken {
    pub opened_at: i64,
    pub id: String,
}

impl PageToken {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.opened_at, self.id)
    }

    pub fn decode(s: &str) -> Option<PageToken> {
        let (at, id) = s.split_once('.')?;
        let opened_at = at.parse().ok()?;
        uuid::Uuid::try_parse(id).ok()?;
        Some(PageToken {
            opened_at,
            id: id.to_string(),
        })
    }
}

const COLUMNS: &str = "id, status, account_id, owner_email, program_id, title, source, \
    feedback_id, workflow_id, opened_at, last_touched_at, first_contact_at, closed_at, \
    root_cause_category, root_cause, actions_taken, opportunity_kind, opportunity_amount, \
    contact_count, note_count, reply_count, reopen_count, sequence, stakeholders, guide, \
    first_contact_secs, escalate_after_secs, close_within_secs, owner_fallback_reason, \
    config_version, feedback_revision, require_opportunity, waiting_reason";

fn ts(micros: i64) -> prost_types::Timestamp {
    convert::timestamp(Timestamp::from_micros(micros))
}

fn row_to_ticket(r: &AnyRow) -> Result<v1::Ticket, sqlx::Error> {
    let status = match Status::parse(&r.try_get::<String, _>("status")?) {
        Some(s) => convert::status(s),
        None => v1::TicketStatus::Unspecified,
    };
    let source = match r.try_get::<String, _>("source")?.as_str() {
        "manual" => v1::TicketSource::Manual,
        "workflow" => v1::TicketSource::Workflow,
        _ => v1::TicketSource::Unspecified,
    };
    let category: Option<String> = r.try_get("root_cause_category")?;
    let closure = match category {
        Some(root_cause_category) => Some(v1::Closure {
            root_cause_category,
            root_cause: r
                .try_get::<Option<String>, _>("root_cause")?
                .unwrap_or_default(),
            actions_taken: r
                .try_get::<Option<String>, _>("actions_taken")?
                .unwrap_or_default(),
            opportunity: r
                .try_get::<Option<String>, _>("opportunity_kind")?
                .map(|kind| -> Result<_, sqlx::Error> {
                    Ok(v1::Opportunity {
                        kind,
                        amount: r.try_get("opportunity_amount")?,
                    })
                })
                .transpose()?,
        }),
        None => None,
    };
    let count = |c: &str| -> Result<u32, sqlx::Error> { Ok(r.try_get::<i64, _>(c)? as u32) };
    let secs = |c: &str| -> Result<u64, sqlx::Error> { Ok(r.try_get::<i64, _>(c)?.max(0) as u64) };
    let sla = v1::SlaPolicy {
        first_contact_secs: secs("first_contact_secs")?,
        escalate_after_secs: secs("escalate_after_secs")?,
        close_within_secs: secs("close_within_secs")?,
        options: None,
    };
    let opened_at = Timestamp::from_micros(r.try_get("opened_at")?);
    let guide = r
        .try_get::<Option<String>, _>("guide")?
        .and_then(|g| crate::plan_json::guide_from_json(&g))
        .map(|g| convert::guide(&g));
    Ok(v1::Ticket {
        id: r.try_get("id")?,
        status: status as i32,
        account_id: r.try_get("account_id")?,
        owner_email: r.try_get("owner_email")?,
        program_id: r.try_get("program_id")?,
        title: r.try_get("title")?,
        source: source as i32,
        feedback_id: r.try_get("feedback_id")?,
        workflow_id: r.try_get("workflow_id")?,
        opened_at: Some(convert::timestamp(opened_at)),
        last_touched_at: Some(ts(r.try_get("last_touched_at")?)),
        first_contact_at: r.try_get::<Option<i64>, _>("first_contact_at")?.map(ts),
        closed_at: r.try_get::<Option<i64>, _>("closed_at")?.map(ts),
        closure,
        contact_count: count("contact_count")?,
        note_count: count("note_count")?,
        reply_count: count("reply_count")?,
        reopen_count: count("reopen_count")?,
        sequence: r.try_get::<i64, _>("sequence")? as u64,
        stakeholder_emails: crate::plan_json::stakeholders_from_json(
            &r.try_get::<String, _>("stakeholders")?,
        ),
        guide,
        first_contact_due: Some(convert::timestamp(
            opened_at.plus_secs(sla.first_contact_secs),
        )),
        close_due: Some(convert::timestamp(
            opened_at.plus_secs(sla.close_within_secs),
        )),
        sla: Some(sla),
        owner_fallback_reason: r.try_get("owner_fallback_reason")?,
        config_version: r.try_get("config_version")?,
        feedback_revision: count("feedback_revision")?,
        require_opportunity: r.try_get::<i64, _>("require_opportunity")? != 0,
        waiting_reason: r.try_get("waiting_reason")?,
    })
}

/// A read-model query's failure as the service reports it.
pub(crate) fn sql_err(e: sqlx::Error) -> TicketError {
    TicketError::ReadModel(e.to_string())
}

/// One ticket and its activity, oldest first; `None` if the view has no such ticket.
pub async fn get_ticket(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<(v1::Ticket, Vec<v1::TicketActivity>)>, TicketError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM tickets WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql_err)?;
    let Some(row) = row else { return Ok(None) };
    let ticket = row_to_ticket(&row).map_err(sql_err)?;
    // The two reads are two statements, and the projector may commit
    // between them: the activity is read up to the ticket row's own
    // sequence, so the lines always match the ticket shown (never a close
    // line beside a ticket still shown open).
    let activity = sqlx::query(
        "SELECT sequence, occurred_at, kind, actor, detail FROM ticket_activity \
         WHERE ticket_id = $1 AND sequence <= $2 ORDER BY sequence",
    )
    .bind(id)
    .bind(ticket.sequence as i64)
    .fetch_all(&mut *conn)
    .await
    .map_err(sql_err)?
    .iter()
    .map(|r| -> Result<_, sqlx::Error> {
        Ok(v1::TicketActivity {
            sequence: r.try_get::<i64, _>(0)? as u64,
            occurred_at: Some(ts(r.try_get(1)?)),
            kind: r.try_get(2)?,
            actor: r.try_get(3)?,
            detail: r.try_get(4)?,
        })
    })
    .collect::<Result<Vec<_>, _>>()
    .map_err(sql_err)?;
    Ok(Some((ticket, activity)))
}

enum Arg {
    Text(String),
    Int(i64),
}

/// A page of tickets, newest first, and the token of the next page.
pub async fn list_tickets(
    db: &Db,
    filter: &TicketFilter,
    page_size: u32,
    after: Option<&PageToken>,
) -> Result<(Vec<v1::Ticket>, Option<PageToken>), TicketError> {
    let mut conds: Vec<String> = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    let mut push = |cond: &dyn Fn(usize) -> String, arg: Arg| {
        args.push(arg);
        conds.push(cond(args.len()));
    };
    if let Some(s) = filter.status {
        push(&|n| format!("status = ${n}"), Arg::Text(s.as_str().into()));
    }
    if let Some(o) = &filter.owner_email {
        push(&|n| format!("owner_email = ${n}"), Arg::Text(o.clone()));
    }
    if let Some(p) = &filter.program_id {
        push(&|n| format!("program_id = ${n}"), Arg::Text(p.clone()));
    }
    if let Some(a) = &filter.account_id {
        push(&|n| format!("account_id = ${n}"), Arg::Text(a.clone()));
    }
    if let Some(t) = filter.opened_after {
        push(&|n| format!("opened_at >= ${n}"), Arg::Int(t.as_micros()));
    }
    if let Some(t) = filter.opened_before {
        push(&|n| format!("opened_at < ${n}"), Arg::Int(t.as_micros()));
    }
    if let Some(tok) = after {
        push(
            &|n| {
                format!(
                    "(opened_at < ${n} OR (opened_at = ${n} AND id < ${}))",
                    n + 1
                )
            },
            Arg::Int(tok.opened_at),
        );
        args.push(Arg::Text(tok.id.clone()));
    }
    let where_ = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM tickets {where_} ORDER BY opened_at DESC, id DESC LIMIT {}",
        page_size + 1
    );
    // Conditions are constant fragments with numbered placeholders; values are bound.
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s),
            Arg::Int(i) => q.bind(i),
        };
    }
    let rows = q.fetch_all(db.pool()).await.map_err(sql_err)?;
    let mut tickets = rows
        .iter()
        .map(row_to_ticket)
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_err)?;
    let next = if tickets.len() > page_size as usize {
        tickets.truncate(page_size as usize);
        tickets.last().map(|t| PageToken {
            opened_at: t
                .opened_at
                .as_ref()
                .map_or(0, |ts| convert::from_timestamp(ts).as_micros()),
            id: t.id.clone(),
        })
    } else {
        None
    };
    Ok((tickets, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let t = PageToken {
            opened_at: 1_763_800_000_000_000,
            id: "0b6f3a52-8c1e-5d2a-9f00-1c2d3e4f5a6b".into(),
        };
        assert_eq!(PageToken::decode(&t.encode()), Some(t));
        for bad in ["", "x", "1.y", "a.0b6f3a52-8c1e-5d2a-9f00-1c2d3e4f5a6b"] {
            assert_eq!(PageToken::decode(bad), None, "{bad}");
        }
    }
}
