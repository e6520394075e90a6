//! Closure quality: each closed ticket scored on the rubric of the
//! programs file (`analytics.quality`), averaged by slice; the best and
//! worst closures listed with the criteria they missed.

use closeloop_programs::Rubric;

use crate::facts::{Closure, TicketFact};
use crate::query::Query;
use crate::report::{
    Context, Explained, Key, Outcome, Row, Rows, Table, closure_outcome, columns,
    first_contact_outcome, for_tickets_as, is_key, owned, sorted, time,
};

/// The criteria, in the order of the view's measures.
pub const CRITERIA: [&str; 6] = [
    "root_cause",
    "actions",
    "contact_before_close",
    "closed_within_target",
    "first_contact_within_target",
    "opportunity",
];

pub const MEASURES: [&str; 8] = [
    "tickets",
    "score",
    "root_cause",
    "actions",
    "contact_before_close",
    "closed_within_target",
    "first_contact_within_target",
    "opportunity",
];

/// One closed ticket's result on each criterion: `None` where the
/// criterion is off or does not apply.
pub fn criteria(t: &TicketFact, c: &Closure, rubric: &Rubric, as_of: i64) -> [Option<bool>; 6] {
    let words = |min: u32, n: u32| (min > 0).then_some(n >= min);
    [
        words(rubric.root_cause_min_words, c.root_cause_words),
        words(rubric.actions_min_words, c.actions_words),
        rubric.contact_before_close.then_some(c.contact_before),
        rubric
            .closed_within_target
            .then(|| closure_outcome(t, as_of) == Outcome::Met),
        rubric
            .first_contact_within_target
            .then(|| first_contact_outcome(t, as_of) == Outcome::Met),
        (rubric.opportunity_when_required && t.require_opportunity).then_some(c.opportunity),
    ]
}

/// Passed / applicable criteria (1.0 when none applies).
pub fn score(results: &[Option<bool>]) -> f64 {
    let applicable = results.iter().flatten().count();
    let passed = results.iter().flatten().filter(|p| **p).count();
    if applicable == 0 {
        1.0
    } else {
        passed as f64 / applicable as f64
    }
}

#[derive(Default)]
struct Acc {
    tickets: u64,
    score_sum: f64,
    passed: [u64; 6],
    applicable: [u64; 6],
}

impl Acc {
    fn add(&mut self, results: &[Option<bool>; 6]) {
        self.tickets += 1;
        self.score_sum += score(results);
        for (i, r) in results.iter().enumerate() {
            if let Some(p) = r {
                self.applicable[i] += 1;
                self.passed[i] += u64::from(*p);
            }
        }
    }

    fn row(&self, key: Vec<String>) -> Row {
        let mut values = vec![
            Some(self.tickets as f64),
            (self.tickets > 0).then(|| 100.0 * self.score_sum / self.tickets as f64),
        ];
        for i in 0..6 {
            values.push(crate::report::ratio(self.passed[i], self.applicable[i]));
        }
        Row { key, values }
    }
}

/// Calls `each` with every closed ticket of the query that passes its
/// filters, its close, and its row key (slices as of its close: its owner
/// then).
fn for_closed<'a>(
    q: &Query,
    tickets: &'a [TicketFact],
    cx: &'a Context,
    each: impl FnMut(&[Key<'a>], &'a TicketFact, &'a Closure),
) {
    for_tickets_as(
        q,
        tickets,
        cx,
        |t| t.closed.as_ref().map(|c| (&*c.owner, c)),
        each,
    );
}

/// Average closure quality of the tickets closed as of the report time,
/// by the query's slices.
pub fn quality(q: &Query, tickets: &[TicketFact], cx: &Context) -> Table {
    let rubric = &cx.config.quality;
    let mut rows: Rows<'_, Acc> = Rows::default();
    let mut total = Acc::default();
    for_closed(q, tickets, cx, |key, t, c| {
        let results = criteria(t, c, rubric, q.as_of);
        rows.entry_ref(key).or_default().add(&results);
        total.add(&results);
    });
    Table {
        view: "quality",
        dims: q.by.iter().map(|d| d.as_str()).collect(),
        measures: MEASURES.to_vec(),
        rows: sorted(rows.into_iter().map(|(k, a)| a.row(owned(&k)))),
        total: total.row(Vec::new()),
    }
}

/// How the drill-down orders closures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Highest score first (the latest close first among equals).
    Best,
    /// Lowest score first (the latest close first among equals).
    Worst,
}

/// The closed tickets of row `key` (every row when empty) with their score
/// and the criteria they missed, ordered and cut to `limit` (0: all).
pub fn explain(
    q: &Query,
    key: &[String],
    order: Option<Order>,
    limit: usize,
    tickets: &[TicketFact],
    cx: &Context,
) -> Explained {
    let rubric = &cx.config.quality;
    let mut scored = Vec::new();
    for_closed(q, tickets, cx, |k, t, c| {
        if !key.is_empty() && !is_key(k, key) {
            return;
        }
        let results = criteria(t, c, rubric, q.as_of);
        let missed: Vec<&str> = results
            .iter()
            .zip(CRITERIA)
            .filter(|(r, _)| **r == Some(false))
            .map(|(_, n)| n)
            .collect();
        scored.push((score(&results), c, t, missed));
    });
    match order {
        Some(Order::Best) => scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.at.cmp(&a.1.at))),
        Some(Order::Worst) => scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.at.cmp(&a.1.at))),
        None => {}
    }
    if limit > 0 {
        scored.truncate(limit);
    }
    let lines = scored
        .into_iter()
        .map(|(s, c, t, missed)| {
            vec![
                t.ticket_id.to_string(),
                t.program_id.to_string(),
                t.workflow().to_string(),
                c.owner.to_string(),
                time(c.at),
                format!("{:.0}", 100.0 * s),
                missed.join(" "),
            ]
        })
        .collect();
    Explained {
        items: "tickets",
        columns: columns(&[
            "ticket_id",
            "program",
            "workflow",
            "owner_at_close",
            "closed_at",
            "score",
            "missed",
        ]),
        lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_counts_only_applicable_criteria() {
        assert_eq!(score(&[Some(true), None, Some(false), None]), 0.5);
        assert_eq!(score(&[None, None]), 1.0);
        assert_eq!(score(&[Some(false)]), 0.0);
    }

    #[test]
    fn word_minimums_and_opportunity_apply_as_configured() {
        let t = TicketFact {
            ticket_id: "t".into(),
            program_id: "p".into(),
            workflow_id: "w".into(),
            account_id: "a".into(),
            opened_at: 0,
            fc_due: 10,
            close_due: 100,
            first_contact: Some(5),
            first_close: Some(50),
            reopens: 0,
            owner: "o@x".into(),
            feedback_id: "".into(),
            require_opportunity: false,
            closed: None,
            sla: Default::default(),
        };
        let c = Closure {
            at: 50,
            owner: "o@x".into(),
            root_cause_words: 15,
            actions_words: 14,
            opportunity: false,
            contact_before: true,
        };
        let r = criteria(&t, &c, &Rubric::default(), 60);
        // 15 words is enough, 14 is not; no opportunity asked: n/a.
        assert_eq!(
            r,
            [
                Some(true),
                Some(false),
                Some(true),
                Some(true),
                Some(true),
                None
            ]
        );
        let asked = TicketFact {
            require_opportunity: true,
            ..t
        };
        assert_eq!(criteria(&asked, &c, &Rubric::default(), 60)[5], Some(false));
        let off = Rubric {
            root_cause_min_words: 0,
            ..Rubric::default()
        };
        assert_eq!(criteria(&asked, &c, &off, 60)[0], None);
    }
}
