//! The uplift of acting on feedback: accounts with an NPS response in two
//! consecutive periods, split by whether a ticket opened from their first
//! response of the earlier period was closed before their first response of
//! the later one; each group's NPS in both periods, the change, and the
//! difference of the changes with a seeded bootstrap 95% interval.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;

use crate::facts::{Id, ResponseFact, TicketFact};
use crate::query::{Dim, Query};
use crate::report::{
    Band, Context, Explained, IdsOf, Items, Memo, Metrics, ReportError, Row, Table, band, columns,
    passes, response_slice, time,
};

pub const MEASURES: [&str; 11] = [
    "acted_accounts",
    "acted_before",
    "acted_after",
    "acted_change",
    "not_acted_accounts",
    "not_acted_before",
    "not_acted_after",
    "not_acted_change",
    "uplift",
    "ci_low",
    "ci_high",
];

/// Bootstrap resamples.
pub const RESAMPLES: usize = 1000;
/// The bootstrap's seed ("closeloo" in ASCII): the same data always gives
/// the same interval.
pub const SEED: u64 = 0x636c_6f73_656c_6f6f;

/// NPS counts: promoters, detractors, answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub promoters: u64,
    pub detractors: u64,
    pub n: u64,
}

impl Counts {
    fn add(&mut self, v: f64) {
        self.n += 1;
        match band(v) {
            Band::Promoter => self.promoters += 1,
            Band::Detractor => self.detractors += 1,
            Band::Passive => {}
        }
    }

    fn plus(self, o: Counts) -> Counts {
        Counts {
            promoters: self.promoters + o.promoters,
            detractors: self.detractors + o.detractors,
            n: self.n + o.n,
        }
    }

    pub fn nps(self) -> Option<f64> {
        (self.n > 0)
            .then(|| 100.0 * (self.promoters as f64 - self.detractors as f64) / self.n as f64)
    }
}

/// One account in one pair of periods.
#[derive(Debug, Clone)]
pub struct Pair {
    /// `2025→2026`: the two periods' bucket labels.
    pub periods: String,
    pub key: Vec<String>,
    pub account_id: String,
    pub acted: bool,
    /// Its first response of the earlier period, the tickets opened from
    /// it, and when the first of them closed.
    pub first_response: String,
    pub tickets: Vec<String>,
    pub closed_at: Option<i64>,
    /// Its first response in the later period.
    pub next_response_at: i64,
    pub before: Counts,
    pub after: Counts,
}

fn check(q: &Query) -> Result<(), ReportError> {
    for d in &q.by {
        if matches!(d, Dim::Workflow | Dim::Owner | Dim::Period) {
            return Err(ReportError::NotASlice {
                view: "uplift",
                dim: d.as_str(),
                items: "accounts in pairs of consecutive periods (the pair is always the first column; slice by program, team, region or segment)",
            });
        }
    }
    Ok(())
}

/// One account's NPS answers in one period.
struct InPeriod<'a> {
    /// Its first response (earliest; the smaller feedback id on a tie).
    first: &'a ResponseFact,
    /// When `first` was submitted, kept here: comparing each response with
    /// it then reads no other response.
    first_at: i64,
    counts: Counts,
}

/// Every account's pairs of consecutive periods in which it answered NPS.
pub fn pairs(
    q: &Query,
    responses: &[ResponseFact],
    tickets: &[TicketFact],
    cx: &Context,
) -> Result<Vec<Pair>, ReportError> {
    check(q)?;
    // Per account, per period start: its first NPS response (earliest, then
    // by feedback id) and the counts of all of them. Counting needs no
    // order, so nothing per response is kept.
    // Accounts in the order first seen, found by text once per distinct
    // shared id, then by the id's address.
    // Each account's periods in the order first seen (sorted below): a few
    // per account, so a list searched from its end (responses come mostly
    // in time order) rather than a tree.
    let mut by_account: Vec<(&str, Vec<(i64, InPeriod<'_>)>)> = Vec::new();
    let mut account_place: HashMap<&str, u32> = HashMap::default();
    // Account id's address → its place in `by_account`.
    let mut place: HashMap<usize, u32> = HashMap::default();
    let mut passing: Memo<bool> = Memo::new();
    let mut ids = IdsOf::new(q, cx, &[], Items::Responses { role: None }, false);
    let mut metrics = Metrics::new(cx);
    let mut buckets = crate::query::LastBucket::new(q);
    for r in responses {
        if !q.in_range(r.submitted_at)
            || !(q.only.is_empty()
                || passing.get(ids.response(r), || {
                    passes(q, |d| response_slice(r, d, q, cx))
                })?)
        {
            continue;
        }
        let ("nps", Some(v)) = metrics.of(r) else {
            continue;
        };
        let Some((start, _)) = buckets.bounds(r.submitted_at) else {
            continue;
        };
        let a = *place.entry(r.account_id.addr()).or_insert_with(|| {
            *account_place.entry(&r.account_id).or_insert_with(|| {
                by_account.push((&r.account_id, Vec::new()));
                (by_account.len() - 1) as u32
            })
        });
        let periods = &mut by_account[a as usize].1;
        let i = match periods.iter().rposition(|(s, _)| *s == start) {
            Some(i) => i,
            None => {
                periods.push((
                    start,
                    InPeriod {
                        first: r,
                        first_at: r.submitted_at,
                        counts: Counts::default(),
                    },
                ));
                periods.len() - 1
            }
        };
        let p = &mut periods[i].1;
        p.counts.add(v);
        if r.submitted_at < p.first_at
            || (r.submitted_at == p.first_at && r.feedback_id < p.first.feedback_id)
        {
            p.first = r;
            p.first_at = r.submitted_at;
        }
    }
    // In account order (the bootstrap draws from the pairs in this order),
    // each account's periods in time order.
    by_account.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (_, periods) in &mut by_account {
        periods.sort_unstable_by_key(|(start, _)| *start);
    }
    // Tickets opened from the responses that can start a pair (each
    // account's first of a period), found in one pass over the tickets.
    let mut from_response: HashMap<&Id, Vec<&TicketFact>> = by_account
        .iter()
        .flat_map(|(_, periods)| periods.iter().map(|(_, p)| &p.first.feedback_id))
        .map(|id| (id, Vec::new()))
        .collect();
    for t in tickets {
        if let Some(v) = from_response.get_mut(&t.feedback_id) {
            v.push(t);
        }
    }
    let mut out = Vec::new();
    for (account, periods) in &by_account {
        for (start, earlier) in periods.iter() {
            let Some((_, end)) = q.bounds(*start) else {
                continue;
            };
            let Ok(later) = periods.binary_search_by_key(&end, |(s, _)| *s) else {
                continue;
            };
            let later = &periods[later].1;
            let first = earlier.first;
            let next_at = later.first_at;
            let opened = from_response
                .get(&first.feedback_id)
                .map_or(&[][..], |v| v.as_slice());
            let closed_at = opened.iter().filter_map(|t| t.first_close).min();
            let (before, after) = (earlier.counts, later.counts);
            let key =
                q.by.iter()
                    .map(|d| response_slice(first, *d, q, cx))
                    .collect::<Result<Vec<_>, _>>()?;
            out.push(Pair {
                periods: format!("{}→{}", q.bucket(*start), q.bucket(end)),
                key,
                account_id: account.to_string(),
                acted: closed_at.is_some_and(|c| c < next_at),
                first_response: first.feedback_id.to_string(),
                tickets: opened.iter().map(|t| t.ticket_id.to_string()).collect(),
                closed_at,
                next_response_at: next_at,
                before,
                after,
            });
        }
    }
    Ok(out)
}

/// A small, fast generator for the bootstrap (SplitMix64).
struct SplitMix(u64);

/// SplitMix64's increment.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl SplitMix {
    /// The generator seeded with [`SEED`] after `draws` draws.
    fn at(draws: u64) -> SplitMix {
        SplitMix(SEED.wrapping_add(draws.wrapping_mul(GAMMA)))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A draw from `0..n`: the high half of the 128-bit product of a
    /// 64-bit draw and `n` (no division on the bootstrap's hot path).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

fn change(group: &[&Pair]) -> Option<f64> {
    let (b, a) = group
        .iter()
        .fold((Counts::default(), Counts::default()), |(b, a), p| {
            (b.plus(p.before), a.plus(p.after))
        });
    Some(a.nps()? - b.nps()?)
}

/// Most threads a bootstrap is split over.
const MAX_WORKERS: usize = 4;

/// Below this many draws in all, a bootstrap runs on the calling thread
/// (starting threads would cost more than they save).
const SPLIT_FROM_DRAWS: u64 = 100_000;

/// The 2.5th and 97.5th percentiles of the uplift over [`RESAMPLES`]
/// resamples of accounts (with replacement, within each group), split over
/// the cores when it is large enough.
pub fn bootstrap(acted: &[&Pair], not_acted: &[&Pair]) -> Option<(f64, f64)> {
    let draws = ((acted.len() + not_acted.len()) * RESAMPLES) as u64;
    let workers = if draws < SPLIT_FROM_DRAWS {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |w| w.get().min(MAX_WORKERS))
    };
    bootstrap_on(acted, not_acted, workers)
}

/// [`bootstrap`] with its resamples split over `workers` threads.
fn bootstrap_on(acted: &[&Pair], not_acted: &[&Pair], workers: usize) -> Option<(f64, f64)> {
    if acted.is_empty() || not_acted.is_empty() {
        return None;
    }
    // Each account's counts, flat: promoters less detractors, and answers,
    // before then after (an NPS needs no more, and the sums are exact).
    let flat = |g: &[&Pair]| -> Vec<[i64; 4]> {
        let net = |c: &Counts| c.promoters as i64 - c.detractors as i64;
        g.iter()
            .map(|p| {
                [
                    net(&p.before),
                    p.before.n as i64,
                    net(&p.after),
                    p.after.n as i64,
                ]
            })
            .collect()
    };
    let (a, n) = (flat(acted), flat(not_acted));
    // As 32-bit numbers, summed as 32-bit numbers, when no resample's sum
    // can leave that range (they are one account's answers in one period,
    // and a resample sums as many as the group has): half the memory, so
    // a resample's random reads stay in the core's cache, and four sums in
    // one vector addition. The sums are the same.
    let narrow = |g: &[[i64; 4]]| -> Option<Vec<[i32; 4]>> {
        let most = g.iter().flatten().map(|v| v.unsigned_abs()).max()?;
        if most.checked_mul(g.len() as u64)? > i32::MAX as u64 {
            return None;
        }
        Some(g.iter().map(|x| x.map(|v| v as i32)).collect())
    };
    match (narrow(&a), narrow(&n)) {
        (Some(a), Some(n)) => resamples(&a, &n, workers),
        _ => resamples(&a, &n, workers),
    }
}

/// The sums of one resample of `g` (with replacement), as an NPS change
/// (summed as `T`: the caller makes sure no sum leaves its range).
fn resample<T>(rng: &mut SplitMix, g: &[[T; 4]]) -> Option<f64>
where
    T: Copy + Default + std::ops::AddAssign + Into<i64>,
{
    let mut sum = [T::default(); 4];
    for _ in 0..g.len() {
        let x = &g[rng.below(g.len())];
        for k in 0..4 {
            sum[k] += x[k];
        }
    }
    let sum = sum.map(Into::into);
    let nps = |net: i64, n: i64| (n > 0).then(|| 100.0 * net as f64 / n as f64);
    Some(nps(sum[2], sum[3])? - nps(sum[0], sum[1])?)
}

/// [`bootstrap_on`] over each account's counts, flat: promoters less
/// detractors, and answers, before then after.
fn resamples<T: Copy + Default + std::ops::AddAssign + Into<i64> + Sync>(
    a: &[[T; 4]],
    n: &[[T; 4]],
    workers: usize,
) -> Option<(f64, f64)> {
    // Resample `i` takes draws `i * per ..` of the one seeded sequence, and
    // SplitMix64 can start anywhere in it: the resamples are split over the
    // cores and give exactly what one loop over them would.
    let per = (a.len() + n.len()) as u64;
    let chunk = RESAMPLES.div_ceil(workers.max(1));
    // Each worker writes its resamples' differences into its part of one
    // buffer allocated here (NaN where a group had no answers): the
    // workers allocate nothing, so no thread grows an allocator arena of
    // its own for a report.
    let run = |lo: usize, out: &mut [f64]| {
        let mut rng = SplitMix::at(lo as u64 * per);
        for d in out {
            let x = resample(&mut rng, a);
            let y = resample(&mut rng, n);
            *d = match (x, y) {
                (Some(x), Some(y)) => x - y,
                _ => f64::NAN,
            };
        }
    };
    let mut diffs = vec![0.0; RESAMPLES];
    if workers < 2 {
        run(0, &mut diffs);
    } else {
        std::thread::scope(|s| {
            let run = &run;
            for (w, part) in diffs.chunks_mut(chunk).enumerate() {
                s.spawn(move || run(w * chunk, part));
            }
        });
    }
    diffs.retain(|d| !d.is_nan());
    if diffs.is_empty() {
        return None;
    }
    diffs.sort_by(f64::total_cmp);
    let at = |p: f64| diffs[((p * (diffs.len() - 1) as f64).round()) as usize];
    Some((at(0.025), at(0.975)))
}

fn row(key: Vec<String>, pairs: &[&Pair]) -> Row {
    let (acted, not_acted): (Vec<&Pair>, Vec<&Pair>) = pairs.iter().partition(|p| p.acted);
    let side = |g: &[&Pair]| {
        let (b, a) = g
            .iter()
            .fold((Counts::default(), Counts::default()), |(b, a), p| {
                (b.plus(p.before), a.plus(p.after))
            });
        [Some(g.len() as f64), b.nps(), a.nps(), change(g)]
    };
    let x = change(&acted);
    let y = change(&not_acted);
    let ci = bootstrap(&acted, &not_acted);
    let mut values = side(&acted).to_vec();
    values.extend(side(&not_acted));
    values.push(x.zip(y).map(|(x, y)| x - y));
    values.push(ci.map(|c| c.0));
    values.push(ci.map(|c| c.1));
    Row { key, values }
}

/// By pair of periods (first column), then the query's slices.
pub fn uplift(
    q: &Query,
    responses: &[ResponseFact],
    tickets: &[TicketFact],
    cx: &Context,
) -> Result<Table, ReportError> {
    let all = pairs(q, responses, tickets, cx)?;
    let mut rows: BTreeMap<Vec<String>, Vec<&Pair>> = BTreeMap::new();
    for p in &all {
        let mut k = vec![p.periods.clone()];
        k.extend(p.key.iter().cloned());
        rows.entry(k).or_default().push(p);
    }
    let mut dims = vec!["periods"];
    dims.extend(q.by.iter().map(|d| d.as_str()));
    Ok(Table {
        view: "uplift",
        dims,
        measures: MEASURES.to_vec(),
        rows: rows.into_iter().map(|(k, ps)| row(k, &ps)).collect(),
        total: row(Vec::new(), &all.iter().collect::<Vec<_>>()),
    })
}

/// The accounts of an uplift row (`key`: the pair, then the slices; empty:
/// every row), only one group when `acted` is given.
pub fn explain(
    q: &Query,
    key: &[String],
    acted: Option<bool>,
    responses: &[ResponseFact],
    tickets: &[TicketFact],
    cx: &Context,
) -> Result<Explained, ReportError> {
    let mut lines = Vec::new();
    for p in pairs(q, responses, tickets, cx)? {
        let mut k = vec![p.periods.clone()];
        k.extend(p.key.iter().cloned());
        if (!key.is_empty() && k != key) || acted.is_some_and(|a| a != p.acted) {
            continue;
        }
        lines.push(vec![
            p.periods.clone(),
            p.account_id.clone(),
            if p.acted { "acted" } else { "not-acted" }.to_string(),
            p.first_response.clone(),
            p.tickets.join(" "),
            p.closed_at.map(time).unwrap_or_default(),
            time(p.next_response_at),
            p.before
                .nps()
                .map(|v| format!("{v:.1}"))
                .unwrap_or_default(),
            p.after.nps().map(|v| format!("{v:.1}")).unwrap_or_default(),
        ]);
    }
    Ok(Explained {
        items: "accounts",
        columns: columns(&[
            "periods",
            "account",
            "group",
            "first_response",
            "tickets",
            "first_closed_at",
            "next_response_at",
            "nps_before",
            "nps_after",
        ]),
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(acted: bool, before: (u64, u64, u64), after: (u64, u64, u64)) -> Pair {
        let c = |(p, d, n)| Counts {
            promoters: p,
            detractors: d,
            n,
        };
        Pair {
            periods: "2025→2026".into(),
            key: vec![],
            account_id: "a".into(),
            acted,
            first_response: String::new(),
            tickets: vec![],
            closed_at: None,
            next_response_at: 0,
            before: c(before),
            after: c(after),
        }
    }

    fn response(id: &str, account: &str, at: &str, nps: f64) -> ResponseFact {
        ResponseFact {
            feedback_id: id.into(),
            response_id: id.into(),
            program_id: "p".into(),
            account_id: account.into(),
            submitted_at: us(at),
            answers: vec![("nps".into(), nps)].into_boxed_slice(),
            unmatched: false,
        }
    }

    fn us(t: &str) -> i64 {
        t.parse::<jiff::Timestamp>().unwrap().as_microsecond()
    }

    fn closed_ticket(id: &str, from: &str, closed: &str) -> TicketFact {
        TicketFact {
            ticket_id: id.into(),
            program_id: "p".into(),
            workflow_id: "w".into(),
            account_id: "a".into(),
            opened_at: 0,
            fc_due: 0,
            close_due: 0,
            first_contact: None,
            first_close: Some(us(closed)),
            reopens: 0,
            owner: "o@x".into(),
            feedback_id: from.into(),
            require_opportunity: false,
            closed: None,
            sla: Default::default(),
        }
    }

    /// Acting on feedback is judged on an account's first response of the
    /// earlier period and up to its first of the later one, whatever order
    /// the responses come in; every response of a period is counted.
    #[test]
    fn a_pair_starts_at_each_periods_first_response() {
        let q = Query {
            from: None,
            to: None,
            as_of: i64::MAX,
            by: vec![],
            period: crate::query::Period::Year,
            tz: jiff::tz::TimeZone::UTC,
            only: vec![],
            memo: Default::default(),
        };
        let responses = [
            // a: its first 2025 response is a2 (February), though listed
            // after a1 (March), whose ticket closed in time.
            response("a1", "a", "2025-03-01T00:00:00Z", 2.0),
            response("a2", "a", "2025-02-01T00:00:00Z", 10.0),
            response("a4", "a", "2026-06-01T00:00:00Z", 9.0),
            response("a3", "a", "2026-02-01T00:00:00Z", 3.0),
            // b: its first 2025 response's ticket closed before its first
            // 2026 response (b4, listed last).
            response("b2", "b", "2025-05-01T00:00:00Z", 8.0),
            response("b1", "b", "2025-04-01T00:00:00Z", 0.0),
            response("b3", "b", "2026-09-01T00:00:00Z", 10.0),
            response("b4", "b", "2026-03-01T00:00:00Z", 10.0),
        ];
        let tickets = [
            closed_ticket("t1", "a1", "2025-04-01T00:00:00Z"),
            closed_ticket("t2", "b1", "2026-02-15T00:00:00Z"),
        ];
        let got = pairs(&q, &responses, &tickets, &Context::default()).unwrap();
        assert_eq!(got.len(), 2, "{got:#?}");
        let (a, b) = (&got[0], &got[1]);
        assert_eq!((a.account_id.as_str(), b.account_id.as_str()), ("a", "b"));
        assert_eq!(a.periods, "2025→2026");
        assert_eq!(a.first_response, "a2");
        assert!(a.tickets.is_empty() && !a.acted, "{a:#?}");
        assert_eq!(a.next_response_at, us("2026-02-01T00:00:00Z"));
        let c = |promoters, detractors, n| Counts {
            promoters,
            detractors,
            n,
        };
        assert_eq!((a.before, a.after), (c(1, 1, 2), c(1, 1, 2)));
        assert_eq!(b.first_response, "b1");
        assert_eq!(b.tickets, ["t2"]);
        assert!(b.acted, "{b:#?}");
        assert_eq!(b.next_response_at, us("2026-03-01T00:00:00Z"));
        assert_eq!((b.before, b.after), (c(0, 1, 2), c(2, 0, 2)));
    }

    /// The bootstrap as one loop over one sequence: what the split over
    /// cores must give exactly.
    fn sequential(acted: &[&Pair], not_acted: &[&Pair]) -> Option<(f64, f64)> {
        let mut rng = SplitMix(SEED);
        let mut resample = |g: &[&Pair]| {
            let (mut b, mut a) = (Counts::default(), Counts::default());
            for _ in 0..g.len() {
                let p = g[rng.below(g.len())];
                (b, a) = (b.plus(p.before), a.plus(p.after));
            }
            Some(a.nps()? - b.nps()?)
        };
        let mut diffs = Vec::new();
        for _ in 0..RESAMPLES {
            let (x, y) = (resample(acted), resample(not_acted));
            if let (Some(x), Some(y)) = (x, y) {
                diffs.push(x - y);
            }
        }
        diffs.sort_by(f64::total_cmp);
        let at = |p: f64| diffs[((p * (diffs.len() - 1) as f64).round()) as usize];
        Some((at(0.025), at(0.975)))
    }

    /// Counts whose resampled sums could leave 32 bits are summed as 64-bit
    /// numbers: the interval is the one loop over the sequence gives.
    #[test]
    fn counts_too_large_for_32_bit_sums_give_the_same_interval() {
        let pairs: Vec<Pair> = (0..40u64)
            .map(|i| {
                let n = 1_000_000_000 + i * 7_919;
                pair(i % 2 == 0, (n / 2, n / 3 + i, n), (n / 3, n / 2, n + i))
            })
            .collect();
        let acted: Vec<&Pair> = pairs.iter().filter(|p| p.acted).collect();
        let not_acted: Vec<&Pair> = pairs.iter().filter(|p| !p.acted).collect();
        let expected = sequential(&acted, &not_acted);
        assert!(expected.is_some());
        for workers in [1, 2] {
            assert_eq!(bootstrap_on(&acted, &not_acted, workers), expected);
        }
    }

    #[test]
    fn the_split_bootstrap_equals_one_loop_over_the_sequence() {
        // Large enough to be split over threads, with groups of different
        // sizes and accounts without answers in a period.
        let mut x = 7u64;
        let mut next = |m: u64| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (x >> 33) % m
        };
        let pairs: Vec<Pair> = (0..700)
            .map(|i| {
                let n = next(4);
                let p = next(n + 1);
                let m = next(4);
                let q = next(m + 1);
                pair(i % 3 == 0, (p, n - p, n), (q, (m - q) / 2, m))
            })
            .collect();
        let acted: Vec<&Pair> = pairs.iter().filter(|p| p.acted).collect();
        let not_acted: Vec<&Pair> = pairs.iter().filter(|p| !p.acted).collect();
        let expected = sequential(&acted, &not_acted).unwrap();
        // Split over any number of threads (3 and 7 do not divide the
        // resamples evenly), whatever this machine's cores.
        for workers in [1, 2, 3, 7] {
            assert_eq!(
                bootstrap_on(&acted, &not_acted, workers),
                Some(expected),
                "{workers} workers"
            );
        }
        assert_eq!(bootstrap(&acted, &not_acted), Some(expected));
        let small: Vec<&Pair> = acted.iter().take(5).copied().collect();
        assert_eq!(
            bootstrap(&small, &not_acted[..7]),
            sequential(&small, &not_acted[..7])
        );
    }

    #[test]
    fn the_interval_is_seeded_and_brackets_a_clear_uplift() {
        let acted: Vec<Pair> = (0..40)
            .map(|i| {
                pair(
                    true,
                    (0, 1, 1),
                    if i % 4 == 0 { (0, 1, 1) } else { (1, 0, 1) },
                )
            })
            .collect();
        let not: Vec<Pair> = (0..40)
            .map(|i| {
                pair(
                    false,
                    (0, 1, 1),
                    if i % 4 == 0 { (1, 0, 1) } else { (0, 1, 1) },
                )
            })
            .collect();
        let a: Vec<&Pair> = acted.iter().collect();
        let n: Vec<&Pair> = not.iter().collect();
        // Acted: -100 → +50 (150); not acted: -100 → -50 (50): uplift 100.
        assert_eq!(change(&a), Some(150.0));
        assert_eq!(change(&n), Some(50.0));
        let (lo, hi) = bootstrap(&a, &n).unwrap();
        assert!(lo < 100.0 && 100.0 < hi && lo > 0.0, "{lo} {hi}");
        assert_eq!(
            bootstrap(&a, &n),
            Some((lo, hi)),
            "same seed, same interval"
        );
        assert_eq!(bootstrap(&a, &[]), None);
    }
}
