//! How the CLI prints tickets: JSON with the protobuf field names for
//! scripts, aligned text for people.

use closeloop_proto::convert::{from_timestamp, status_word};
use closeloop_proto::v1;
use serde_json::{Value, json};

/// RFC 3339 with microseconds: the precision of gRPC answers and of the
/// events' `Closeloop-Occurred-At`, so CLI output joins with both.
pub fn rfc3339(ts: &Option<prost_types::Timestamp>) -> Value {
    match ts {
        Some(t) => Value::String(
            humantime::format_rfc3339_micros(from_timestamp(t).to_system_time()).to_string(),
        ),
        None => Value::Null,
    }
}

/// Writes formatted output to stdout. A closed pipe (`closeloop ... | head`)
/// ends the program quietly with exit code 0, as the reader has all it
/// wanted; any other write error is reported with exit code 1.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// `println!` that exits quietly on a closed pipe (see [`write_stdout`]).
macro_rules! outln {
    () => { $crate::output::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}
pub(crate) use outln;

fn source_word(s: i32) -> &'static str {
    match v1::TicketSource::try_from(s) {
        Ok(v1::TicketSource::Manual) => "manual",
        Ok(v1::TicketSource::Workflow) => "workflow",
        _ => "unspecified",
    }
}

pub fn ticket_json(t: &v1::Ticket, activity: Option<&[v1::TicketActivity]>) -> Value {
    let closure = t.closure.as_ref().map(|c| {
        json!({
            "root_cause_category": c.root_cause_category,
            "root_cause": c.root_cause,
            "actions_taken": c.actions_taken,
            "opportunity": c.opportunity.as_ref().map(|o| json!({"kind": o.kind, "amount": o.amount})),
        })
    });
    let mut v = json!({
        "id": t.id,
        "status": status_word(t.status),
        "account_id": t.account_id,
        "owner_email": t.owner_email,
        "program_id": t.program_id,
        "title": t.title,
        "source": source_word(t.source),
        "feedback_id": t.feedback_id,
        "workflow_id": t.workflow_id,
        "opened_at": rfc3339(&t.opened_at),
        "last_touched_at": rfc3339(&t.last_touched_at),
        "first_contact_at": rfc3339(&t.first_contact_at),
        "closed_at": rfc3339(&t.closed_at),
        "closure": closure,
        "contact_count": t.contact_count,
        "note_count": t.note_count,
        "reply_count": t.reply_count,
        "reopen_count": t.reopen_count,
        "sequence": t.sequence,
        "stakeholder_emails": t.stakeholder_emails,
        "guide": t.guide.as_ref().map(|g| json!({
            "title": g.title,
            "link": g.link,
            "steps": g.steps,
            "templates": g.templates.iter().map(|t| json!({"name": t.name, "subject": t.subject, "body": t.body})).collect::<Vec<_>>(),
            "talking_points": g.talking_points,
            "faq": g.faq,
        })),
        "sla": t.sla.as_ref().map(|s| json!({
            "first_contact_secs": s.first_contact_secs,
            "escalate_after_secs": s.escalate_after_secs,
            "close_within_secs": s.close_within_secs,
        })),
        "first_contact_due": rfc3339(&t.first_contact_due),
        "close_due": rfc3339(&t.close_due),
        "owner_fallback_reason": t.owner_fallback_reason,
        "config_version": t.config_version,
        "feedback_revision": t.feedback_revision,
        "require_opportunity": t.require_opportunity,
        "waiting_reason": t.waiting_reason,
    });
    if let Some(acts) = activity {
        v["activity"] = acts
            .iter()
            .map(|a| {
                json!({
                    "sequence": a.sequence,
                    "occurred_at": rfc3339(&a.occurred_at),
                    "kind": a.kind,
                    "actor": a.actor,
                    "detail": a.detail,
                })
            })
            .collect();
    }
    v
}

pub fn list_json(r: &v1::ListTicketsResponse) -> Value {
    json!({
        "tickets": r.tickets.iter().map(|t| ticket_json(t, None)).collect::<Vec<_>>(),
        "next_page_token": if r.next_page_token.is_empty() { Value::Null } else { Value::String(r.next_page_token.clone()) },
    })
}

pub fn print_json(v: &Value) {
    outln!("{}", serde_json::to_string_pretty(v).expect("json"));
}

pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn print_ticket(t: &v1::Ticket, activity: Option<&[v1::TicketActivity]>) {
    let v = ticket_json(t, None);
    let rows = [
        ("id", "id"),
        ("status", "status"),
        ("account", "account_id"),
        ("owner", "owner_email"),
        ("program", "program_id"),
        ("title", "title"),
        ("source", "source"),
        ("opened", "opened_at"),
        ("last touched", "last_touched_at"),
        ("first contact", "first_contact_at"),
        ("closed", "closed_at"),
    ];
    for (label, key) in rows {
        outln!("{label:<14} {}", text(&v[key]));
    }
    if !t.owner_fallback_reason.is_empty() {
        outln!("{:<14} FALLBACK OWNER: {}", "flag", t.owner_fallback_reason);
    }
    if !t.stakeholder_emails.is_empty() {
        outln!("{:<14} {}", "stakeholders", t.stakeholder_emails.join(", "));
    }
    outln!(
        "{:<14} first contact by {}, close by {}",
        "sla",
        text(&v["first_contact_due"]),
        text(&v["close_due"])
    );
    if t.require_opportunity {
        outln!("{:<14} closing needs an opportunity", "closure");
    }
    if !t.waiting_reason.is_empty() {
        outln!(
            "{:<14} waiting on the customer: {}",
            "waiting",
            t.waiting_reason
        );
    }
    if t.feedback_revision > 0 {
        outln!("{:<14} revision {}", "feedback", t.feedback_revision);
    }
    if let Some(g) = &t.guide {
        outln!("{:<14} {} {}", "guide", g.title, g.link);
        for (i, step) in g.steps.iter().enumerate() {
            outln!("{:<14} {}. {step}", "", i + 1);
        }
        for p in &g.talking_points {
            outln!("{:<14} - {p}", "");
        }
        for tpl in &g.templates {
            outln!("{:<14} template {:?}: {}", "", tpl.name, tpl.subject);
        }
        if !g.faq.is_empty() {
            outln!("{:<14} FAQ {}", "", g.faq);
        }
    }
    if let Some(c) = &t.closure {
        outln!(
            "{:<14} {}",
            "root cause",
            format_args!("[{}] {}", c.root_cause_category, c.root_cause)
        );
        outln!("{:<14} {}", "actions", c.actions_taken);
        if let Some(o) = &c.opportunity {
            match o.amount {
                Some(a) => outln!("{:<14} {} {a}", "opportunity", o.kind),
                None => outln!("{:<14} {}", "opportunity", o.kind),
            }
        }
    }
    outln!(
        "{:<14} {} contacts, {} notes, {} replies, {} reopens",
        "activity",
        t.contact_count,
        t.note_count,
        t.reply_count,
        t.reopen_count
    );
    if let Some(acts) = activity {
        outln!();
        for a in acts {
            let at = text(&rfc3339(&a.occurred_at));
            outln!("  {at}  {:<16} {}", a.kind, a.detail);
        }
    }
}

/// A duration in seconds as `3d 4h`, `5h 2m`, `40s` (negative: `-`).
pub fn span(secs: i64) -> String {
    let (sign, s) = if secs < 0 { ("-", -secs) } else { ("", secs) };
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sign}{s}s"),
        (0, 0, m) => format!("{sign}{m}m"),
        (0, h, m) => format!("{sign}{h}h {m}m"),
        (d, h, _) => format!("{sign}{d}d {h}h"),
    }
}

/// A ticket's SLA as JSON (`tickets show -o json`).
pub fn sla_json(s: &v1::TicketSla) -> Value {
    json!({
        "calendar": s.calendar,
        "flagged": s.flagged,
        "untouched_since": rfc3339(&s.untouched_since),
        "next_escalations": s.next_escalations.iter().map(|l| json!({
            "level": l.level,
            "due_at": rfc3339(&l.due_at),
        })).collect::<Vec<_>>(),
        "clocks": s.clocks.iter().map(|c| json!({
            "clock": c.clock,
            "run": c.run,
            "state": c.state,
            "budget_secs": c.budget_secs,
            "started_at": rfc3339(&c.started_at),
            "due_at": rfc3339(&c.due_at),
            "original_due": rfc3339(&c.original_due),
            "remaining_secs": c.remaining_secs,
            "warned_pct": c.warned_pct,
            "breached_at": rfc3339(&c.breached_at),
            "paused_secs": c.paused_secs,
            "stopped_at": rfc3339(&c.stopped_at),
        })).collect::<Vec<_>>(),
        "escalations": s.escalations.iter().map(|e| json!({
            "level": e.level,
            "at": rfc3339(&e.at),
            "to": e.to_email,
            "untouched_since": rfc3339(&e.untouched_since),
            "fallback_reason": e.fallback_reason,
        })).collect::<Vec<_>>(),
        "sequence": s.sequence,
    })
}

/// A ticket's SLA clocks and escalations, one line each.
pub fn print_sla(s: &v1::TicketSla) {
    outln!();
    let base = if s.calendar.is_empty() {
        "calendar time".to_string()
    } else {
        format!("business time of calendar {}", s.calendar)
    };
    outln!("sla ({base})");
    for c in &s.clocks {
        let due = text(&rfc3339(&c.due_at));
        let left = match c.state.as_str() {
            "running" | "breached" => {
                if c.remaining_secs >= 0 {
                    format!("{} left", span(c.remaining_secs))
                } else {
                    format!("{} overdue", span(-c.remaining_secs))
                }
            }
            _ => String::new(),
        };
        let mut extra = Vec::new();
        if !c.warned_pct.is_empty() {
            let w: Vec<String> = c.warned_pct.iter().map(|p| format!("{p}%")).collect();
            extra.push(format!("warned at {}", w.join(", ")));
        }
        if c.breached_at.is_some() {
            extra.push(format!("breached {}", text(&rfc3339(&c.breached_at))));
        }
        if c.due_at != c.original_due {
            extra.push(format!(
                "originally due {}",
                text(&rfc3339(&c.original_due))
            ));
        }
        if c.paused_secs > 0 {
            extra.push(format!("paused {}", span(c.paused_secs as i64)));
        }
        outln!(
            "  {:<13} #{} {:<8} due {due}  {left}  {}",
            c.clock,
            c.run,
            c.state,
            extra.join("; ")
        );
    }
    if s.untouched_since.is_some() {
        let next: Vec<String> = s
            .next_escalations
            .iter()
            .map(|l| format!("level {} at {}", l.level, text(&rfc3339(&l.due_at))))
            .collect();
        outln!(
            "  untouched since {}{}",
            text(&rfc3339(&s.untouched_since)),
            if next.is_empty() {
                String::new()
            } else {
                format!("; escalates {}", next.join(", "))
            }
        );
    }
    for e in &s.escalations {
        let flag = if e.fallback_reason.is_empty() {
            String::new()
        } else {
            format!("  FLAGGED: {}", e.fallback_reason)
        };
        outln!(
            "  escalated level {} to {} at {} (untouched since {}){flag}",
            e.level,
            if e.to_email.is_empty() {
                "nobody"
            } else {
                &e.to_email
            },
            text(&rfc3339(&e.at)),
            text(&rfc3339(&e.untouched_since))
        );
    }
}

/// A ticket's notifications as JSON (`tickets show -o json`).
pub fn notifications_json(ns: &[v1::TicketNotification]) -> Value {
    ns.iter()
        .map(|n| {
            json!({
                "id": n.id,
                "ticket_id": n.ticket_id,
                "recipient": n.recipient,
                "channel": n.channel,
                "kind": n.kind,
                "status": n.status,
                "attempts": n.attempts,
                "last_error": n.last_error,
                "requested_at": rfc3339(&n.requested_at),
                "finished_at": rfc3339(&n.finished_at),
            })
        })
        .collect()
}

/// A ticket's notifications, one line each: when, why, where, to whom, how it went.
pub fn print_notifications(ns: &[v1::TicketNotification]) {
    if ns.is_empty() {
        return;
    }
    outln!();
    outln!("notifications");
    for n in ns {
        let at = text(&rfc3339(&n.requested_at));
        let how = match (n.status.as_str(), n.last_error.is_empty()) {
            ("delivered", _) => format!("delivered (attempt {})", n.attempts),
            (status, true) => status.to_string(),
            (status, false) => format!("{status} after {} attempts: {}", n.attempts, n.last_error),
        };
        outln!(
            "  {at}  {:<16} {:<5} {:<30} {how}",
            n.kind,
            n.channel,
            n.recipient
        );
    }
}

/// An RFC 3339 UTC time to the second, keeping its zone
/// (`2026-11-09T09:00:00.000000Z` → `2026-11-09T09:00:00Z`); anything else
/// (`-` for none) as it is.
fn to_seconds(t: &str) -> String {
    match (t.get(..19), t.ends_with('Z')) {
        (Some(s), true) => format!("{s}Z"),
        _ => t.to_string(),
    }
}

pub fn print_list(r: &v1::ListTicketsResponse) {
    let head = [
        "ID", "STATUS", "OWNER", "ACCOUNT", "PROGRAM", "OPENED", "TITLE",
    ]
    .map(String::from);
    let lines: Vec<Vec<String>> = r
        .tickets
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                status_word(t.status).to_string(),
                t.owner_email.clone(),
                t.account_id.clone(),
                if t.program_id.is_empty() {
                    "-".to_string()
                } else {
                    t.program_id.clone()
                },
                to_seconds(&text(&rfc3339(&t.opened_at))),
                t.title.clone(),
            ]
        })
        .collect();
    table(&head, &lines, |_| false);
    if !r.next_page_token.is_empty() {
        outln!("\nmore: --page-token {}", r.next_page_token);
    }
}

/// Aligned columns two spaces apart, each as wide as its widest cell on
/// this page (a long program id or URL pushes its column out, not the
/// columns after it); `right(i)` right-aligns column `i` (numbers).
pub fn table(head: &[String], lines: &[Vec<String>], right: impl Fn(usize) -> bool) {
    for line in aligned(head, lines, right) {
        outln!("{line}");
    }
}

/// [`table`]'s lines: the head, then one per line, without trailing spaces.
fn aligned(head: &[String], lines: &[Vec<String>], right: impl Fn(usize) -> bool) -> Vec<String> {
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l.get(i).map_or(0, |c| c.chars().count()))
                .chain([head[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let fmt = |cells: &[String]| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let w = widths.get(i).copied().unwrap_or(0);
                if right(i) {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    std::iter::once(fmt(head))
        .chain(lines.iter().map(|l| fmt(l)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{aligned, to_seconds};

    #[test]
    fn list_times_keep_their_zone() {
        assert_eq!(
            to_seconds("2026-11-09T09:00:00.000000Z"),
            "2026-11-09T09:00:00Z"
        );
        assert_eq!(to_seconds("-"), "-");
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn a_long_cell_widens_its_own_column_and_numbers_align_right() {
        let head = s(&["ID", "PROGRAM", "N", "TITLE"]);
        let lines = vec![
            s(&["a", "relationship-nps", "7", "x"]),
            s(&["b", "implementation-csat", "12", "y"]),
            s(&["c", "-", "100", ""]),
        ];
        assert_eq!(
            aligned(&head, &lines, |i| i == 2),
            [
                "ID  PROGRAM                N  TITLE",
                "a   relationship-nps       7  x",
                "b   implementation-csat   12  y",
                "c   -                    100",
            ]
        );
    }
}
