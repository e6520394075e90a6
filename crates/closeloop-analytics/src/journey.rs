//! The journey view: per program (and its journey stage) what came in and
//! what was done about it: responses and the program's metric, tickets
//! opened and open now, closure and first-contact rates, breaches, and
//! responses that triggered no workflow.

use std::collections::BTreeMap;

use crate::facts::{ResponseFact, TicketFact};
use crate::query::{Dim, Query};
use crate::report::{
    Band, Clock, Context, Explained, IdsOf, Items, Key, Memo, Metrics, Outcome, Places,
    ReportError, Row, Table, at, band, columns, counted, metric_of, owned, passes, ratio,
    response_key, response_passes, response_slice, ticket_key, ticket_slice, time,
};

pub const MEASURES: [&str; 9] = [
    "responses",
    "score",
    "tickets",
    "open",
    "closure_rate",
    "first_contact_rate",
    "breached",
    "unmatched",
    "unmatched_rate",
];

/// The slices a journey row takes besides its program: region, segment
/// and period (the same for responses and tickets).
fn check(q: &Query) -> Result<(), ReportError> {
    for d in &q.by {
        if matches!(d, Dim::Workflow | Dim::Owner | Dim::Team) {
            return Err(ReportError::NotASlice {
                view: "journey",
                dim: d.as_str(),
                items: "programs (slice by region, segment or period)",
            });
        }
    }
    Ok(())
}

fn key_of(program: &str, slice: Vec<String>, q: &Query, cx: &Context) -> Vec<String> {
    let mut k = vec![
        program.to_string(),
        cx.stages.get(program).cloned().unwrap_or_default(),
        cx.metrics
            .get(program)
            .map_or("nps", |(kind, _)| kind.as_str())
            .to_string(),
    ];
    k.extend(
        q.by.iter()
            .zip(slice)
            .filter(|(d, _)| **d != Dim::Program)
            .map(|(_, v)| v),
    );
    k
}

#[derive(Default)]
struct Acc {
    responses: u64,
    promoters: u64,
    detractors: u64,
    scored: u64,
    top: u64,
    sum: f64,
    tickets: u64,
    open: u64,
    close_met: u64,
    close_missed: u64,
    fc_met: u64,
    fc_missed: u64,
    breached: u64,
    unmatched: u64,
}

impl Acc {
    fn merge(&mut self, o: &Acc) {
        self.responses += o.responses;
        self.promoters += o.promoters;
        self.detractors += o.detractors;
        self.scored += o.scored;
        self.top += o.top;
        self.sum += o.sum;
        self.tickets += o.tickets;
        self.open += o.open;
        self.close_met += o.close_met;
        self.close_missed += o.close_missed;
        self.fc_met += o.fc_met;
        self.fc_missed += o.fc_missed;
        self.breached += o.breached;
        self.unmatched += o.unmatched;
    }

    fn add_response(&mut self, kind: &str, v: Option<f64>, unmatched: bool) {
        self.responses += 1;
        self.unmatched += u64::from(unmatched);
        let Some(v) = v else { return };
        self.scored += 1;
        self.sum += v;
        match kind {
            "nps" => match band(v) {
                Band::Promoter => self.promoters += 1,
                Band::Detractor => self.detractors += 1,
                Band::Passive => {}
            },
            "csat" if v >= 4.0 => self.top += 1,
            _ => {}
        }
    }

    fn add_ticket(&mut self, t: &TicketFact, as_of: i64) {
        self.tickets += 1;
        self.open += u64::from(t.closed.is_none());
        match Clock::Closure.outcome(t, as_of) {
            Outcome::Met => self.close_met += 1,
            Outcome::Missed => self.close_missed += 1,
            Outcome::Pending => {}
        }
        match Clock::FirstContact.outcome(t, as_of) {
            Outcome::Met => self.fc_met += 1,
            Outcome::Missed => self.fc_missed += 1,
            Outcome::Pending => {}
        }
        self.breached += u64::from(t.sla.breached());
    }

    /// `kind`: the row's metric (`None` for the total, which mixes them).
    fn row(&self, key: Vec<String>, kind: Option<&str>) -> Row {
        let n = self.scored;
        let score = match kind {
            Some("nps") => {
                (n > 0).then(|| 100.0 * (self.promoters as f64 - self.detractors as f64) / n as f64)
            }
            Some("csat") => ratio(self.top, n),
            Some("ces") => (n > 0).then(|| self.sum / n as f64),
            _ => None,
        };
        Row {
            key,
            values: vec![
                Some(self.responses as f64),
                score,
                Some(self.tickets as f64),
                Some(self.open as f64),
                ratio(self.close_met, self.close_met + self.close_missed),
                ratio(self.fc_met, self.fc_met + self.fc_missed),
                Some(self.breached as f64),
                Some(self.unmatched as f64),
                ratio(self.unmatched, self.responses),
            ],
        }
    }
}

/// Per program (its stage and metric first) and the query's other slices.
pub fn journey(
    q: &Query,
    responses: &[ResponseFact],
    tickets: &[TicketFact],
    cx: &Context,
) -> Result<Table, ReportError> {
    check(q)?;
    // Grouped by program then the slices, borrowed: the row keys are made
    // once per row below. An item's group is found by the ids its slices
    // follow from (its key is computed once per distinct ids).
    let mut places = Places::default();
    let mut groups: Vec<Option<Acc>> = Vec::new();
    let mut total = Acc::default();
    let mut metrics = Metrics::new(cx);
    let mut of_response: Memo<Option<u32>> = Memo::new();
    let mut ids = IdsOf::new(q, cx, &q.by, Items::Responses { role: None }, true);
    for r in responses {
        if !q.in_range(r.submitted_at) {
            continue;
        }
        let g = of_response.get(ids.response(r), || {
            if !response_passes(q, r, cx)? {
                return Ok(None);
            }
            let mut key = vec![Key::B(&r.program_id)];
            for d in &q.by {
                key.push(response_key(r, *d, q, cx)?);
            }
            Ok(Some(places.place(key)))
        })?;
        let Some(g) = g else { continue };
        let (kind, v) = metrics.of(r);
        let unmatched = r.unmatched;
        at(&mut groups, g).add_response(kind, v, unmatched);
        total.add_response(kind, v, unmatched);
    }
    let mut of_ticket: Memo<Option<u32>> = Memo::new();
    let mut ticket_ids = IdsOf::new(q, cx, &q.by, Items::Tickets, true);
    for t in tickets {
        if !q.in_range(t.opened_at) {
            continue;
        }
        let g = of_ticket.get(ticket_ids.ticket(t, &t.owner), || {
            if !passes(q, |d| Ok(ticket_slice(t, d, q, cx)))? {
                return Ok(None);
            }
            let mut key = vec![Key::B(&t.program_id)];
            key.extend(q.by.iter().map(|d| ticket_key(t, &t.owner, *d, q, cx)));
            Ok(Some(places.place(key)))
        })?;
        let Some(g) = g else { continue };
        at(&mut groups, g).add_ticket(t, q.as_of);
        total.add_ticket(t, q.as_of);
    }
    let mut rows: BTreeMap<Vec<String>, Acc> = BTreeMap::new();
    for (key, a) in counted(&places, groups) {
        let key = key_of(key[0].as_str(), owned(&key[1..]), q, cx);
        let row = rows.entry(key).or_default();
        row.merge(&a);
    }
    let mut dims = vec!["program", "journey_stage", "metric"];
    dims.extend(
        q.by.iter()
            .filter(|d| **d != Dim::Program)
            .map(|d| d.as_str()),
    );
    Ok(Table {
        view: "journey",
        dims,
        measures: MEASURES.to_vec(),
        rows: rows
            .into_iter()
            .map(|(k, a)| {
                let kind = k[2].clone();
                a.row(k, Some(&kind))
            })
            .collect(),
        total: total.row(Vec::new(), None),
    })
}

/// What a journey drill-down lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Only {
    Responses,
    Unmatched,
    Tickets,
    Open,
    Breached,
}

impl Only {
    pub fn parse(s: &str) -> Option<Only> {
        Some(match s {
            "" | "responses" => Only::Responses,
            "unmatched" => Only::Unmatched,
            "tickets" => Only::Tickets,
            "open" => Only::Open,
            "breached" => Only::Breached,
            _ => return None,
        })
    }
}

/// The responses or tickets of a journey row (`key`: program, stage,
/// metric, then the other slices; empty: every row).
pub fn explain(
    q: &Query,
    key: &[String],
    only: Only,
    responses: &[ResponseFact],
    tickets: &[TicketFact],
    cx: &Context,
) -> Result<Explained, ReportError> {
    check(q)?;
    let mut lines = Vec::new();
    if matches!(only, Only::Responses | Only::Unmatched) {
        for r in responses {
            if !q.in_range(r.submitted_at) || !passes(q, |d| response_slice(r, d, q, cx))? {
                continue;
            }
            let slice =
                q.by.iter()
                    .map(|d| response_slice(r, *d, q, cx))
                    .collect::<Result<Vec<_>, _>>()?;
            let unmatched = r.unmatched;
            if (!key.is_empty() && key_of(&r.program_id, slice, q, cx) != key)
                || (only == Only::Unmatched && !unmatched)
            {
                continue;
            }
            let (kind, v) = metric_of(r, cx);
            lines.push(vec![
                r.feedback_id.to_string(),
                r.response_id.to_string(),
                r.program_id.to_string(),
                r.account_id.to_string(),
                time(r.submitted_at),
                kind.to_string(),
                v.map(|v| v.to_string()).unwrap_or_default(),
                if unmatched { "unmatched" } else { "routed" }.to_string(),
            ]);
        }
        return Ok(Explained {
            items: "responses",
            columns: columns(&[
                "feedback_id",
                "response_id",
                "program",
                "account",
                "submitted_at",
                "metric",
                "score",
                "routing",
            ]),
            lines,
        });
    }
    for t in tickets {
        if !q.in_range(t.opened_at) || !passes(q, |d| Ok(ticket_slice(t, d, q, cx)))? {
            continue;
        }
        let slice: Vec<String> = q.by.iter().map(|d| ticket_slice(t, *d, q, cx)).collect();
        let keep = match only {
            Only::Open => t.closed.is_none(),
            Only::Breached => t.sla.breached(),
            _ => true,
        };
        if (!key.is_empty() && key_of(&t.program_id, slice, q, cx) != key) || !keep {
            continue;
        }
        lines.push(vec![
            t.ticket_id.to_string(),
            t.program_id.to_string(),
            t.account_id.to_string(),
            t.owner.to_string(),
            time(t.opened_at),
            if t.closed.is_some() { "closed" } else { "open" }.to_string(),
            Clock::Closure.outcome(t, q.as_of).as_str().to_string(),
            Clock::FirstContact.outcome(t, q.as_of).as_str().to_string(),
            t.sla.breached().to_string(),
        ]);
    }
    Ok(Explained {
        items: "tickets",
        columns: columns(&[
            "ticket_id",
            "program",
            "account",
            "owner",
            "opened_at",
            "state",
            "closure",
            "first_contact",
            "breached",
        ]),
        lines,
    })
}
