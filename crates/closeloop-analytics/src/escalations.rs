//! Escalations and breaches: how many tickets were warned, breached (per
//! clock) and escalated (per level), and their share of the row's tickets.

use crate::facts::TicketFact;
use crate::query::Query;
use crate::report::{
    Context, Explained, Row, Rows, Table, columns, for_selected_tickets, is_key, owned, ratio,
    sorted, time,
};

pub const MEASURES: [&str; 13] = [
    "tickets",
    "warned",
    "warned_rate",
    "first_contact_breached",
    "first_contact_breach_rate",
    "closure_breached",
    "closure_breach_rate",
    "escalated",
    "escalation_rate",
    "level_1",
    "level_2",
    "level_3_plus",
    "open_escalated",
];

#[derive(Default)]
struct Acc {
    tickets: u64,
    warned: u64,
    fc_breached: u64,
    close_breached: u64,
    escalated: u64,
    levels: [u64; 3],
    open_escalated: u64,
}

impl Acc {
    fn add(&mut self, t: &TicketFact) {
        let m = &t.sla;
        self.tickets += 1;
        self.warned += u64::from(m.warned());
        self.fc_breached += u64::from(m.breached_first_contact);
        self.close_breached += u64::from(m.breached_closure);
        if !m.levels.is_empty() {
            self.escalated += 1;
            self.open_escalated += u64::from(t.closed.is_none());
        }
        self.levels[0] += u64::from(m.levels.contains(&1));
        self.levels[1] += u64::from(m.levels.contains(&2));
        self.levels[2] += u64::from(m.levels.iter().any(|l| *l >= 3));
    }

    fn row(&self, key: Vec<String>) -> Row {
        let n = self.tickets;
        Row {
            key,
            values: vec![
                Some(n as f64),
                Some(self.warned as f64),
                ratio(self.warned, n),
                Some(self.fc_breached as f64),
                ratio(self.fc_breached, n),
                Some(self.close_breached as f64),
                ratio(self.close_breached, n),
                Some(self.escalated as f64),
                ratio(self.escalated, n),
                Some(self.levels[0] as f64),
                Some(self.levels[1] as f64),
                Some(self.levels[2] as f64),
                Some(self.open_escalated as f64),
            ],
        }
    }
}

/// Warnings, breaches and escalations of the tickets opened in the
/// period, by the query's slices.
pub fn escalations(q: &Query, tickets: &[TicketFact], cx: &Context) -> Table {
    let mut rows: Rows<'_, Acc> = Rows::default();
    let mut total = Acc::default();
    for_selected_tickets(q, tickets, cx, |key, t| {
        rows.entry_ref(key).or_default().add(t);
        total.add(t);
    });
    Table {
        view: "escalations",
        dims: q.by.iter().map(|d| d.as_str()).collect(),
        measures: MEASURES.to_vec(),
        rows: sorted(rows.into_iter().map(|(k, a)| a.row(owned(&k)))),
        total: total.row(Vec::new()),
    }
}

/// Which tickets of a row to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Only {
    Warned,
    Breached,
    Escalated,
}

impl Only {
    pub fn parse(s: &str) -> Option<Only> {
        match s {
            "warned" => Some(Only::Warned),
            "breached" => Some(Only::Breached),
            "escalated" => Some(Only::Escalated),
            _ => None,
        }
    }
}

/// The tickets of row `key` (every row when empty).
pub fn explain(
    q: &Query,
    key: &[String],
    only: Option<Only>,
    tickets: &[TicketFact],
    cx: &Context,
) -> Explained {
    let mut lines = Vec::new();
    for_selected_tickets(q, tickets, cx, |k, t| {
        let m = &t.sla;
        let keep = match only {
            None => true,
            Some(Only::Warned) => m.warned(),
            Some(Only::Breached) => m.breached(),
            Some(Only::Escalated) => !m.levels.is_empty(),
        };
        if (!key.is_empty() && !is_key(k, key)) || !keep {
            return;
        }
        let clocks = |fc: bool, close: bool| {
            [(fc, "first_contact"), (close, "closure")]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| *n)
                .collect::<Vec<_>>()
                .join(" ")
        };
        lines.push(vec![
            t.ticket_id.to_string(),
            t.program_id.to_string(),
            t.workflow().to_string(),
            t.account_id.to_string(),
            t.owner.to_string(),
            time(t.opened_at),
            clocks(m.warned_first_contact, m.warned_closure),
            clocks(m.breached_first_contact, m.breached_closure),
            m.levels
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            if t.closed.is_some() { "closed" } else { "open" }.to_string(),
        ]);
    });
    Explained {
        items: "tickets",
        columns: columns(&[
            "ticket_id",
            "program",
            "workflow",
            "account",
            "owner",
            "opened_at",
            "warned",
            "breached",
            "escalation_levels",
            "state",
        ]),
        lines,
    }
}
