//! What a report asks for: the period, the slices, the time zone and the
//! time it is evaluated as of; and how a time falls into a period bucket.

use jiff::civil::Weekday;
use jiff::tz::TimeZone;

/// A dimension a report can be sliced by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    Program,
    Workflow,
    Team,
    Region,
    Owner,
    Segment,
    Period,
}

impl Dim {
    pub const ALL: [Dim; 7] = [
        Dim::Program,
        Dim::Workflow,
        Dim::Team,
        Dim::Region,
        Dim::Owner,
        Dim::Segment,
        Dim::Period,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dim::Program => "program",
            Dim::Workflow => "workflow",
            Dim::Team => "team",
            Dim::Region => "region",
            Dim::Owner => "owner",
            Dim::Segment => "segment",
            Dim::Period => "period",
        }
    }

    pub fn parse(s: &str) -> Option<Dim> {
        Dim::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// How periods are bucketed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Period {
    pub const ALL: [Period; 5] = [
        Period::Day,
        Period::Week,
        Period::Month,
        Period::Quarter,
        Period::Year,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Quarter => "quarter",
            Period::Year => "year",
        }
    }

    pub fn parse(s: &str) -> Option<Period> {
        Period::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// The bucket of instant `micros` in `tz`: `2026-01-05` (day),
    /// `2026-W02` (ISO week, from Monday), `2026-01` (month), `2026-Q1`,
    /// `2026`.
    pub fn bucket(self, micros: i64, tz: &TimeZone) -> String {
        let Ok(ts) = jiff::Timestamp::from_microsecond(micros) else {
            return "(out of range)".into();
        };
        let d = ts.to_zoned(tz.clone()).date();
        match self {
            Period::Day => d.to_string(),
            Period::Week => {
                let w = d.iso_week_date();
                format!("{:04}-W{:02}", w.year(), w.week())
            }
            Period::Month => format!("{:04}-{:02}", d.year(), d.month()),
            Period::Quarter => format!("{:04}-Q{}", d.year(), (d.month() - 1) / 3 + 1),
            Period::Year => format!("{:04}", d.year()),
        }
    }

    /// The start of the bucket holding `micros` in `tz`, and the start of
    /// the next (µs): the bucket's half-open interval.
    pub fn bounds(self, micros: i64, tz: &TimeZone) -> Option<(i64, i64)> {
        let ts = jiff::Timestamp::from_microsecond(micros).ok()?;
        let d = ts.to_zoned(tz.clone()).date();
        let (start, next) = match self {
            Period::Day => (d, d.tomorrow().ok()?),
            Period::Week => {
                let back = i64::from(d.weekday().to_monday_zero_offset());
                let monday = d.checked_sub(jiff::Span::new().days(back)).ok()?;
                debug_assert_eq!(monday.weekday(), Weekday::Monday);
                (monday, monday.checked_add(jiff::Span::new().days(7)).ok()?)
            }
            Period::Month => {
                let first = d.first_of_month();
                (first, first.checked_add(jiff::Span::new().months(1)).ok()?)
            }
            Period::Quarter => {
                let m = (d.month() - 1) / 3 * 3 + 1;
                let first = jiff::civil::date(d.year(), m, 1);
                (first, first.checked_add(jiff::Span::new().months(3)).ok()?)
            }
            Period::Year => {
                let first = jiff::civil::date(d.year(), 1, 1);
                (first, first.checked_add(jiff::Span::new().years(1)).ok()?)
            }
        };
        let at = |date: jiff::civil::Date| {
            date.to_zoned(tz.clone())
                .ok()
                .map(|z| z.timestamp().as_microsecond())
        };
        Some((at(start)?, at(next)?))
    }
}

/// One report's question.
#[derive(Debug, Clone)]
pub struct Query {
    /// Half-open `[from, to)` (µs); `None`: unbounded.
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Evaluated as of this time (µs): only events recorded by then count.
    pub as_of: i64,
    /// Slices, in the order asked.
    pub by: Vec<Dim>,
    /// Bucketing of the `period` slice (default: month).
    pub period: Period,
    pub tz: TimeZone,
    /// Only rows whose slice `Dim` has this value.
    pub only: Vec<(Dim, String)>,
    /// Buckets already computed (see [`Query::bucket`]).
    pub memo: Memo,
}

/// Buckets already computed: each is an interval `[start, end)` in which
/// every instant has the same bucket, so its label and bounds are computed
/// once per bucket instead of once per item (time-zone arithmetic is the
/// costly part of slicing by period).
#[derive(Debug, Clone, Default)]
pub struct Memo(std::sync::Arc<std::sync::Mutex<Vec<Interval>>>);

/// A bucket's `[start, end)` and label.
type Interval = (i64, i64, std::sync::Arc<str>);

impl Query {
    /// Whether instant `t` is in `[from, to)`.
    pub fn in_range(&self, t: i64) -> bool {
        self.from.is_none_or(|f| t >= f) && self.to.is_none_or(|to| t < to)
    }

    /// The bucket holding `micros`: its bounds and label.
    fn memo(&self, micros: i64) -> Option<((i64, i64), std::sync::Arc<str>)> {
        let mut memo = self.memo.0.lock().expect("bucket memo");
        // Sorted by start; the last one starting at or before `micros`.
        let i = memo.partition_point(|(start, _, _)| *start <= micros);
        if i > 0 {
            let (start, end, label) = &memo[i - 1];
            if micros < *end {
                return Some(((*start, *end), label.clone()));
            }
        }
        let (start, end) = self.period.bounds(micros, &self.tz)?;
        let label: std::sync::Arc<str> = std::sync::Arc::from(self.period.bucket(micros, &self.tz));
        memo.insert(i, (start, end, label.clone()));
        Some(((start, end), label))
    }

    /// [`Query::bucket`], shared.
    pub fn bucket_label(&self, micros: i64) -> std::sync::Arc<str> {
        match self.memo(micros) {
            Some((_, label)) => label,
            None => std::sync::Arc::from(self.period.bucket(micros, &self.tz)),
        }
    }

    /// The label of the period bucket holding `micros` ([`Period::bucket`]
    /// in the query's time zone).
    pub fn bucket(&self, micros: i64) -> String {
        match self.memo(micros) {
            Some((_, label)) => label.to_string(),
            None => self.period.bucket(micros, &self.tz),
        }
    }

    /// The bounds of the period bucket holding `micros` ([`Period::bounds`]).
    pub fn bounds(&self, micros: i64) -> Option<(i64, i64)> {
        self.memo(micros).map(|(b, _)| b)
    }
}

/// [`Query::bounds`] for a loop over many items, which come mostly in time
/// order: the last bucket found is tried first, without taking the
/// query's shared memo.
pub(crate) struct LastBucket<'q> {
    q: &'q Query,
    last: Option<(i64, i64)>,
}

impl<'q> LastBucket<'q> {
    pub(crate) fn new(q: &'q Query) -> Self {
        LastBucket { q, last: None }
    }

    /// What [`Query::bounds`] gives for `micros`.
    pub(crate) fn bounds(&mut self, micros: i64) -> Option<(i64, i64)> {
        if let Some((start, end)) = self.last
            && start <= micros
            && micros < end
        {
            return self.last;
        }
        let b = self.q.bounds(micros)?;
        self.last = Some(b);
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_microsecond()
    }

    #[test]
    fn buckets_follow_the_time_zone() {
        let ny = TimeZone::get("America/New_York").unwrap();
        // 03:30 UTC on 1 April is still 31 March (Q1) in New York.
        let t = us("2026-04-01T03:30:00Z");
        assert_eq!(Period::Quarter.bucket(t, &TimeZone::UTC), "2026-Q2");
        assert_eq!(Period::Quarter.bucket(t, &ny), "2026-Q1");
        assert_eq!(Period::Month.bucket(t, &ny), "2026-03");
        assert_eq!(Period::Day.bucket(t, &ny), "2026-03-31");
        assert_eq!(Period::Year.bucket(us("2026-01-01T04:00:00Z"), &ny), "2025");
        // ISO weeks: 1 January 2027 is a Friday of 2026-W53.
        assert_eq!(
            Period::Week.bucket(us("2027-01-01T12:00:00Z"), &TimeZone::UTC),
            "2026-W53"
        );
        let (start, next) = Period::Quarter.bounds(t, &ny).unwrap();
        assert_eq!(start, us("2026-01-01T05:00:00Z"));
        // Daylight time has begun by 1 April.
        assert_eq!(next, us("2026-04-01T04:00:00Z"));
        let (start, next) = Period::Week
            .bounds(us("2026-01-07T12:00:00Z"), &TimeZone::UTC)
            .unwrap();
        assert_eq!(
            (start, next),
            (us("2026-01-05T00:00:00Z"), us("2026-01-12T00:00:00Z"))
        );
    }

    #[test]
    fn memoized_buckets_equal_computed_ones_across_a_boundary() {
        for tz in ["UTC", "Europe/Berlin", "Asia/Kolkata", "America/St_Johns"] {
            let q = Query {
                from: None,
                to: None,
                as_of: 0,
                by: vec![],
                period: Period::Day,
                tz: TimeZone::get(tz).unwrap(),
                only: vec![],
                memo: Memo::default(),
            };
            let start = us("2026-03-28T00:00:00Z");
            // Every 7 minutes over four days (a DST change in Berlin and
            // St. John's; half-hour offsets in Kolkata and St. John's).
            for i in 0..(4 * 24 * 60 / 7) {
                let t = start + i * 7 * 60_000_000 + 1;
                assert_eq!(q.bucket(t), q.period.bucket(t, &q.tz), "{tz} {t}");
                assert_eq!(q.bounds(t), q.period.bounds(t, &q.tz), "{tz} {t}");
            }
        }
    }

    #[test]
    fn dimensions_parse_by_name() {
        assert_eq!(Dim::parse(" Region"), Some(Dim::Region));
        assert_eq!(Dim::parse("colour"), None);
        assert_eq!(Period::parse("QUARTER"), Some(Period::Quarter));
    }
}
