//! A UTC instant with microsecond precision, portable across SQL backends.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    /// This instant plus `secs` seconds (saturating).
    pub fn plus_secs(self, secs: u64) -> Self {
        let add = i64::try_from(secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000);
        Timestamp(self.0.saturating_add(add))
    }

    pub fn as_micros(self) -> i64 {
        self.0
    }

    /// Seconds and nanoseconds, as `google.protobuf.Timestamp` wants them.
    pub fn to_parts(self) -> (i64, i32) {
        let secs = self.0.div_euclid(1_000_000);
        let nanos = (self.0.rem_euclid(1_000_000) * 1000) as i32;
        (secs, nanos)
    }

    pub fn from_parts(secs: i64, nanos: i32) -> Self {
        Timestamp(
            secs.saturating_mul(1_000_000)
                .saturating_add(i64::from(nanos) / 1000),
        )
    }

    pub fn to_system_time(self) -> SystemTime {
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_micros(self.0 as u64)
        } else {
            UNIX_EPOCH - Duration::from_micros(self.0.unsigned_abs())
        }
    }

    pub fn from_system_time(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(d.as_micros() as i64),
            Err(e) => Timestamp(-(e.duration().as_micros() as i64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_including_negative() {
        for m in [
            0,
            1,
            999_999,
            1_000_000,
            -1,
            -1_000_001,
            1_763_800_000_123_456,
        ] {
            let (s, n) = Timestamp(m).to_parts();
            assert!((0..1_000_000_000).contains(&n));
            assert_eq!(Timestamp::from_parts(s, n), Timestamp(m));
            assert_eq!(
                Timestamp::from_system_time(Timestamp(m).to_system_time()),
                Timestamp(m)
            );
        }
    }
}
