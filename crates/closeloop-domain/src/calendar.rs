//! Time bases of SLA clocks: calendar time (every second counts) or the
//! business time of a [`BusinessCalendar`] (working days and hours in a
//! time zone, minus holidays).
//!
//! The arithmetic is exact: a working day's hours are converted to instants
//! in the calendar's time zone day by day (with the tz database bundled by
//! `jiff`), so a day whose clocks change is as long as it really is, and a
//! working hour that does not exist (skipped by a DST change) is not
//! counted. Everything is in microseconds, like [`Timestamp`].

use std::collections::BTreeSet;
use std::sync::Arc;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;

use crate::time::Timestamp;

/// Longest span business arithmetic walks (about 30 years of days): a
/// budget that cannot be spent within it (a calendar with almost no working
/// time) ends there instead of looping.
const MAX_DAYS: u32 = 11_000;

/// A working-time calendar.
#[derive(Debug, Clone)]
pub struct BusinessCalendar {
    pub name: String,
    /// IANA name, e.g. `Europe/Berlin`.
    pub time_zone: String,
    zone: TimeZone,
    /// Working weekdays, Monday first.
    pub working_days: [bool; 7],
    /// Working hours, minutes after local midnight: `start < end <= 1440`.
    pub start_minute: u16,
    pub end_minute: u16,
    /// Days off (local dates).
    pub holidays: BTreeSet<Date>,
}

/// Why a calendar definition is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("{0:?} is not a time zone of the tz database (e.g. Europe/Berlin)")]
    TimeZone(String),
    #[error("working hours must start before they end, within one day (got {0})")]
    Hours(String),
    #[error("a calendar needs at least one working day")]
    NoWorkingDays,
}

impl BusinessCalendar {
    pub fn new(
        name: &str,
        time_zone: &str,
        working_days: [bool; 7],
        start_minute: u16,
        end_minute: u16,
        holidays: BTreeSet<Date>,
    ) -> Result<BusinessCalendar, CalendarError> {
        let zone =
            TimeZone::get(time_zone).map_err(|_| CalendarError::TimeZone(time_zone.to_string()))?;
        if start_minute >= end_minute || end_minute > 1440 {
            return Err(CalendarError::Hours(format!(
                "{:02}:{:02}-{:02}:{:02}",
                start_minute / 60,
                start_minute % 60,
                end_minute / 60,
                end_minute % 60
            )));
        }
        if !working_days.iter().any(|d| *d) {
            return Err(CalendarError::NoWorkingDays);
        }
        Ok(BusinessCalendar {
            name: name.to_string(),
            time_zone: time_zone.to_string(),
            zone,
            working_days,
            start_minute,
            end_minute,
            holidays,
        })
    }

    /// Parses a weekday name (`mon`, `Monday`, ...) to its index, Monday 0.
    pub fn weekday_index(name: &str) -> Option<usize> {
        let n = name.trim().to_ascii_lowercase();
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .position(|d| n.starts_with(d) && n.len() >= 3)
    }

    fn local_date(&self, t: Timestamp) -> Date {
        jiff::Timestamp::from_microsecond(t.as_micros())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .to_zoned(self.zone.clone())
            .date()
    }

    fn instant(&self, day: Date, minute: u16) -> Option<Timestamp> {
        let (day, minute) = if minute == 1440 {
            (day.tomorrow().ok()?, 0)
        } else {
            (day, minute)
        };
        let dt = day.at((minute / 60) as i8, (minute % 60) as i8, 0, 0);
        // A working hour skipped by a DST change starts when the clocks
        // jump to (compatible disambiguation); a repeated one, the first time.
        let z = self.zone.to_ambiguous_zoned(dt).compatible().ok()?;
        Some(Timestamp::from_micros(z.timestamp().as_microsecond()))
    }

    /// The working window of local day `day`, as instants; `None` on a day
    /// off.
    fn window(&self, day: Date) -> Option<(Timestamp, Timestamp)> {
        let wd = match day.weekday() {
            Weekday::Monday => 0,
            Weekday::Tuesday => 1,
            Weekday::Wednesday => 2,
            Weekday::Thursday => 3,
            Weekday::Friday => 4,
            Weekday::Saturday => 5,
            Weekday::Sunday => 6,
        };
        if !self.working_days[wd] || self.holidays.contains(&day) {
            return None;
        }
        let a = self.instant(day, self.start_minute)?;
        let b = self.instant(day, self.end_minute)?;
        (a < b).then_some((a, b))
    }

    /// The instant `micros` of working time after `start`.
    pub fn add(&self, start: Timestamp, micros: i64) -> Timestamp {
        if micros <= 0 {
            return start;
        }
        let mut left = micros;
        let mut day = self.local_date(start);
        for _ in 0..MAX_DAYS {
            if let Some((a, b)) = self.window(day) {
                let from = a.max(start);
                if from < b {
                    let avail = b.as_micros() - from.as_micros();
                    if left <= avail {
                        return Timestamp::from_micros(from.as_micros() + left);
                    }
                    left -= avail;
                }
            }
            match day.tomorrow() {
                Ok(d) => day = d,
                Err(_) => break,
            }
        }
        Timestamp::from_micros(i64::MAX)
    }

    /// Working time between `a` and `b` (0 when `b <= a`), in microseconds.
    pub fn elapsed(&self, a: Timestamp, b: Timestamp) -> i64 {
        if b <= a {
            return 0;
        }
        let mut sum = 0i64;
        let mut day = self.local_date(a);
        let last = self.local_date(b);
        for _ in 0..MAX_DAYS {
            if let Some((wa, wb)) = self.window(day) {
                let from = wa.max(a);
                let to = wb.min(b);
                if from < to {
                    sum += to.as_micros() - from.as_micros();
                }
            }
            if day >= last {
                break;
            }
            match day.tomorrow() {
                Ok(d) => day = d,
                Err(_) => break,
            }
        }
        sum
    }
}

/// How a clock counts time.
#[derive(Debug, Clone, Default)]
pub enum TimeBase {
    /// Every second counts (the default).
    #[default]
    Calendar,
    Business(Arc<BusinessCalendar>),
}

impl TimeBase {
    /// The calendar's name; empty for calendar time.
    pub fn name(&self) -> &str {
        match self {
            TimeBase::Calendar => "",
            TimeBase::Business(c) => &c.name,
        }
    }

    /// The instant `micros` of counted time after `start`.
    pub fn add(&self, start: Timestamp, micros: i64) -> Timestamp {
        match self {
            TimeBase::Calendar => Timestamp::from_micros(start.as_micros().saturating_add(micros)),
            TimeBase::Business(c) => c.add(start, micros),
        }
    }

    /// Counted time between `a` and `b`.
    pub fn elapsed(&self, a: Timestamp, b: Timestamp) -> i64 {
        match self {
            TimeBase::Calendar => (b.as_micros() - a.as_micros()).max(0),
            TimeBase::Business(c) => c.elapsed(a, b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: i64 = 3_600_000_000;

    fn ts(s: &str) -> Timestamp {
        let t: jiff::Timestamp = s.parse().unwrap();
        Timestamp::from_micros(t.as_microsecond())
    }

    fn show(t: Timestamp) -> String {
        jiff::Timestamp::from_microsecond(t.as_micros())
            .unwrap()
            .to_string()
    }

    fn cal(tz: &str, holidays: &[&str]) -> BusinessCalendar {
        BusinessCalendar::new(
            "office",
            tz,
            [true, true, true, true, true, false, false],
            9 * 60,
            17 * 60,
            holidays.iter().map(|d| d.parse().unwrap()).collect(),
        )
        .unwrap()
    }

    #[test]
    fn friday_afternoon_plus_sixteen_hours_crosses_the_weekend() {
        // Berlin, winter (UTC+1). Friday 2026-01-09 15:00 local = 14:00Z.
        let c = cal("Europe/Berlin", &[]);
        let start = ts("2026-01-09T14:00:00Z");
        // 2 h left on Friday, 8 on Monday, 6 on Tuesday.
        assert_eq!(show(c.add(start, 16 * H)), "2026-01-13T14:00:00Z");
        assert_eq!(c.elapsed(start, ts("2026-01-13T14:00:00Z")), 16 * H);
    }

    #[test]
    fn a_holiday_is_skipped() {
        let c = cal("Europe/Berlin", &["2026-01-12"]);
        let start = ts("2026-01-09T14:00:00Z");
        assert_eq!(show(c.add(start, 16 * H)), "2026-01-14T14:00:00Z");
    }

    #[test]
    fn dst_changes_in_two_time_zones() {
        // Berlin springs forward on Sunday 2026-03-29: Friday 16:00 CET
        // (15:00Z) + 2 h of work = Monday 10:00 CEST = 08:00Z.
        let c = cal("Europe/Berlin", &[]);
        assert_eq!(
            show(c.add(ts("2026-03-27T15:00:00Z"), 2 * H)),
            "2026-03-30T08:00:00Z"
        );
        // New York falls back on Sunday 2026-11-01: Friday 16:00 EDT
        // (20:00Z) + 2 h = Monday 10:00 EST = 15:00Z.
        let ny = cal("America/New_York", &["2026-11-26"]);
        assert_eq!(
            show(ny.add(ts("2026-10-30T20:00:00Z"), 2 * H)),
            "2026-11-02T15:00:00Z"
        );
        // And Thanksgiving is a holiday: Wednesday 16:00 EST + 2 h = Friday 10:00.
        assert_eq!(
            show(ny.add(ts("2026-11-25T21:00:00Z"), 2 * H)),
            "2026-11-27T15:00:00Z"
        );
    }

    #[test]
    fn a_day_whose_working_hours_contain_the_change_is_as_long_as_it_is() {
        // A 24/7 calendar in Berlin: the spring-forward day has 23 hours.
        let c = BusinessCalendar::new(
            "always",
            "Europe/Berlin",
            [true; 7],
            0,
            1440,
            BTreeSet::new(),
        )
        .unwrap();
        let a = ts("2026-03-28T23:00:00Z"); // local midnight, 29 March
        assert_eq!(c.elapsed(a, ts("2026-03-29T22:00:00Z")), 23 * H);
        assert_eq!(show(c.add(a, 24 * H)), "2026-03-29T23:00:00Z");
    }

    #[test]
    fn bad_calendars_are_refused() {
        let days = [true; 7];
        assert!(matches!(
            BusinessCalendar::new("x", "Mars/Olympus", days, 0, 60, BTreeSet::new()),
            Err(CalendarError::TimeZone(_))
        ));
        assert!(matches!(
            BusinessCalendar::new("x", "UTC", days, 600, 540, BTreeSet::new()),
            Err(CalendarError::Hours(_))
        ));
        assert_eq!(
            BusinessCalendar::new("x", "UTC", [false; 7], 0, 60, BTreeSet::new()).unwrap_err(),
            CalendarError::NoWorkingDays
        );
    }

    proptest! {
        /// `add` and `elapsed` agree: the working time between a start and
        /// `add(start, d)` is `d`, and `add` is monotonic in `d`.
        #[test]
        fn add_and_elapsed_agree(
            start_min in 0i64..(4 * 366 * 24 * 60),
            d1 in 0i64..(400 * 60),
            d2 in 0i64..(400 * 60),
            tz in prop::sample::select(vec!["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata"]),
        ) {
            let c = cal(tz, &["2026-12-25", "2027-01-01", "2026-04-03"]);
            let start = Timestamp::from_micros(ts("2025-06-01T00:00:00Z").as_micros() + start_min * 60_000_000);
            let (lo, hi) = (d1.min(d2) * 60_000_000, d1.max(d2) * 60_000_000);
            let a = c.add(start, lo);
            let b = c.add(start, hi);
            prop_assert!(a <= b);
            prop_assert_eq!(c.elapsed(start, b), hi);
            prop_assert_eq!(c.elapsed(a, b), hi - lo);
        }
    }
}
