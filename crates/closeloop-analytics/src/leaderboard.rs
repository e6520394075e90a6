//! The leaderboard: account teams (the person in each account's `csm`
//! role, configurable) ranked per period by the average over their
//! accounts' responses of the mean of the leaderboard questions.

use std::collections::BTreeMap;

use crate::facts::ResponseFact;
use crate::query::{Dim, Query};
use crate::report::{
    Context, Explained, IdsOf, Items, Key, Memo, Places, ReportError, Row, Table, at, columns,
    counted, owned, response_key, response_passes, time,
};

/// An account without a person in the leaderboard's role.
pub const NO_TEAM: &str = "(none)";

pub const MEASURES: [&str; 5] = ["accounts", "responses", "score", "ranked", "rank"];

/// Scores closer than this are a tie.
const TIE: f64 = 1e-9;

/// The slices a leaderboard takes: the query's, with the period first when
/// it is not among them (a leaderboard is always per period).
pub fn dims(q: &Query) -> Result<Vec<Dim>, ReportError> {
    for d in &q.by {
        if matches!(d, Dim::Workflow | Dim::Owner) {
            return Err(ReportError::NotASlice {
                view: "leaderboard",
                dim: d.as_str(),
                items: "responses, which have no workflow or owner",
            });
        }
    }
    let mut by = q.by.clone();
    if !by.contains(&Dim::Period) {
        by.insert(0, Dim::Period);
    }
    Ok(by)
}

/// A response's leaderboard score: the mean of its answers to the
/// questions it answered (`None` when it answered none).
pub fn response_score(r: &ResponseFact, questions: &[String]) -> Option<f64> {
    let (sum, n) = questions
        .iter()
        .filter_map(|q| r.number(q))
        .fold((0.0, 0u32), |(sum, n), v| (sum + v, n + 1));
    (n > 0).then(|| sum / f64::from(n))
}

#[derive(Default)]
struct Acc {
    accounts: rustc_hash::FxHashSet<crate::facts::Name>,
    responses: u64,
    sum: f64,
}

/// Calls `f` with each response counted: the place of its row key (the
/// slices, then the team) in `places`, the response and its score. One at
/// a time: a year's responses are not gathered first (that raised the
/// bench's peak RSS by 11 MB). A key is made once per distinct
/// [`crate::report::Ids`].
fn each_scored<'a>(
    q: &Query,
    by: &[Dim],
    responses: &'a [ResponseFact],
    cx: &'a Context,
    places: &mut Places<'a>,
    mut f: impl FnMut(u32, &'a ResponseFact, f64),
) -> Result<(), ReportError> {
    let lb = &cx.config.leaderboard;
    let mut place: Memo<Option<u32>> = Memo::new();
    let role = Items::Responses {
        role: Some(&lb.role),
    };
    let mut ids = IdsOf::new(q, cx, by, role, false);
    for r in responses {
        if !q.in_range(r.submitted_at) {
            continue;
        }
        let p = place.get(ids.response(r), || {
            if !response_passes(q, r, cx)? {
                return Ok(None);
            }
            let mut key = by
                .iter()
                .map(|d| response_key(r, *d, q, cx))
                .collect::<Result<Vec<_>, _>>()?;
            key.push(Key::B(
                cx.account(&r.account_id)
                    .and_then(|a| a.team.get(&lb.role))
                    .map_or(NO_TEAM, String::as_str),
            ));
            Ok(Some(places.place(key)))
        })?;
        let Some(p) = p else { continue };
        let Some(score) = response_score(r, &lb.questions) else {
            continue;
        };
        f(p, r, score);
    }
    Ok(())
}

/// Account teams ranked within each combination of the other slices (at
/// least the period). Teams with fewer than the minimum responses, and
/// accounts without a person in the role, are listed unranked; teams with
/// equal scores share a rank (1, 1, 3).
pub fn leaderboard(
    q: &Query,
    responses: &[ResponseFact],
    cx: &Context,
) -> Result<Table, ReportError> {
    let by = dims(q)?;
    let min = u64::from(cx.config.leaderboard.min_responses);
    let mut places = Places::default();
    let mut sums: Vec<Option<Acc>> = Vec::new();
    let mut total = Acc::default();
    // The (place, account id) pairs already in a place's accounts, by the
    // id's address: its text is hashed once per pair, not per response.
    let mut known: rustc_hash::FxHashSet<(u32, usize)> = Default::default();
    each_scored(q, &by, responses, cx, &mut places, |p, r, score| {
        for (p, acc) in [(p, at(&mut sums, p)), (u32::MAX, &mut total)] {
            if known.insert((p, r.account_id.addr())) {
                acc.accounts.insert(r.account_id.clone());
            }
            acc.responses += 1;
            acc.sum += score;
        }
    })?;
    let rows: BTreeMap<Vec<String>, Acc> =
        counted(&places, sums).map(|(k, a)| (owned(k), a)).collect();
    // Scores of the ranked teams, per group (the key without the team).
    let mut groups: BTreeMap<Vec<String>, Vec<f64>> = BTreeMap::new();
    let ranked =
        |k: &[String], a: &Acc| a.responses >= min && k.last().is_some_and(|t| t != NO_TEAM);
    for (k, a) in &rows {
        if ranked(k, a) {
            groups
                .entry(k[..k.len() - 1].to_vec())
                .or_default()
                .push(a.sum / a.responses as f64);
        }
    }
    let row = |key: Vec<String>, a: &Acc, rank: Option<f64>, is_ranked: bool| Row {
        values: vec![
            Some(a.accounts.len() as f64),
            Some(a.responses as f64),
            (a.responses > 0).then(|| a.sum / a.responses as f64),
            Some(f64::from(u8::from(is_ranked))),
            rank,
        ],
        key,
    };
    let mut out: Vec<Row> = rows
        .iter()
        .map(|(k, a)| {
            let is_ranked = ranked(k, a);
            let rank = is_ranked.then(|| {
                let s = a.sum / a.responses as f64;
                let above = groups[&k[..k.len() - 1]]
                    .iter()
                    .filter(|o| **o > s + TIE)
                    .count();
                (above + 1) as f64
            });
            row(k.clone(), a, rank, is_ranked)
        })
        .collect();
    // Within a group: ranked by rank, then the unranked by team.
    out.sort_by(|a, b| {
        let g = |r: &Row| r.key[..r.key.len() - 1].to_vec();
        g(a).cmp(&g(b))
            .then_with(|| {
                let rank = |r: &Row| r.values[4].unwrap_or(f64::INFINITY);
                rank(a).total_cmp(&rank(b))
            })
            .then_with(|| a.key.cmp(&b.key))
    });
    let mut dims: Vec<&'static str> = by.iter().map(|d| d.as_str()).collect();
    dims.push("account_team");
    Ok(Table {
        view: "leaderboard",
        dims,
        measures: MEASURES.to_vec(),
        rows: out,
        total: row(Vec::new(), &total, None, false),
    })
}

/// The responses behind a leaderboard row (`key`: the slices, with the
/// period first when not asked, then the team; empty: every row).
pub fn explain(
    q: &Query,
    key: &[String],
    responses: &[ResponseFact],
    cx: &Context,
) -> Result<Explained, ReportError> {
    let by = dims(q)?;
    let qs = &cx.config.leaderboard.questions;
    let mut lines = Vec::new();
    let mut places = Places::default();
    let mut items = Vec::new();
    each_scored(q, &by, responses, cx, &mut places, |p, r, score| {
        items.push((p, r, score))
    })?;
    for (p, r, score) in items {
        let k = owned(&places.keys[p as usize]);
        if !key.is_empty() && k != key {
            continue;
        }
        let mut line = vec![
            r.feedback_id.to_string(),
            r.response_id.to_string(),
            r.program_id.to_string(),
            r.account_id.to_string(),
            k.last().cloned().unwrap_or_default(),
            time(r.submitted_at),
        ];
        line.extend(
            qs.iter()
                .map(|q| r.number(q).map(|v| v.to_string()).unwrap_or_default()),
        );
        line.push(format!("{score}"));
        lines.push(line);
    }
    let mut columns = columns(&[
        "feedback_id",
        "response_id",
        "program",
        "account",
        "account_team",
        "submitted_at",
    ]);
    columns.extend(qs.iter().cloned());
    columns.push("score".to_string());
    Ok(Explained {
        items: "responses",
        columns,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_scores_the_mean_of_what_it_answered() {
        let mut r = ResponseFact {
            feedback_id: "f".into(),
            response_id: "r".into(),
            program_id: "p".into(),
            account_id: "a".into(),
            submitted_at: 0,
            answers: Box::new([]),
            unmatched: false,
        };
        let qs = ["nps".to_string(), "partnership".to_string()];
        assert_eq!(response_score(&r, &qs), None);
        r.answers = Box::new([("nps".into(), 9.0)]);
        assert_eq!(response_score(&r, &qs), Some(9.0));
        r.answers = Box::new([("nps".into(), 9.0), ("partnership".into(), 6.0)]);
        assert_eq!(response_score(&r, &qs), Some(7.5));
    }
}
