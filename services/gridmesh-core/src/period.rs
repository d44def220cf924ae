//! 15-minute market and settlement periods.
//!
//! A [`Period`] is the `n`-th quarter hour since the Unix epoch, in UTC. Because UTC has no
//! daylight-saving shifts, period arithmetic is plain integer arithmetic; local time enters only
//! through [`Period::local_day`], where a local day can hold 92, 96 or 100 periods.

use std::fmt;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::Timestamp;

/// Length of one period in seconds.
pub const PERIOD_SECONDS: i64 = 900;

/// Periods in one UTC day.
pub const PERIODS_PER_UTC_DAY: i64 = 96;

/// Why a time or a range could not be turned into periods.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PeriodError {
    /// The time is not on a quarter-hour boundary (`hh:00`, `hh:15`, `hh:30`, `hh:45`, zero seconds).
    #[error(
        "{0} is not aligned to a 15-minute boundary (expected hh:00, hh:15, hh:30 or hh:45 with zero seconds)"
    )]
    NotAligned(Timestamp),
    /// The range ends before it starts.
    #[error("interval end {end} is before its start {start}")]
    EndBeforeStart {
        /// Start of the rejected interval.
        start: Timestamp,
        /// End of the rejected interval.
        end: Timestamp,
    },
    /// The period index is outside the range of representable times.
    #[error("period index {0} is outside the representable time range")]
    OutOfRange(i64),
    /// The local day does not exist in that time zone's calendar range.
    #[error("local day {0} cannot be resolved in time zone {1}")]
    BadLocalDay(NaiveDate, String),
}

/// One 15-minute interval `[start, start + 15 min)` aligned to the hour, in UTC.
///
/// Ordered by time. Serialised as its start time in RFC 3339.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period(i64);

impl Period {
    /// The period with this index (quarter hours since 1970-01-01T00:00Z).
    ///
    /// # Errors
    /// When the index is so large that its start time is not representable.
    pub fn from_index(index: i64) -> Result<Self, PeriodError> {
        index
            .checked_mul(PERIOD_SECONDS)
            .and_then(|s| s.checked_add(PERIOD_SECONDS))
            .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
            .map(|_| Self(index))
            .ok_or(PeriodError::OutOfRange(index))
    }

    /// The index of this period: quarter hours since the Unix epoch.
    #[must_use]
    pub const fn index(self) -> i64 {
        self.0
    }

    /// The period that contains `t` (periods are half-open, so `hh:15:00` starts a new one).
    #[must_use]
    pub fn containing(t: Timestamp) -> Self {
        Self(t.timestamp().div_euclid(PERIOD_SECONDS))
    }

    /// The period that starts exactly at `t`.
    ///
    /// # Errors
    /// [`PeriodError::NotAligned`] when `t` is not on a quarter-hour boundary.
    pub fn starting_at(t: Timestamp) -> Result<Self, PeriodError> {
        if t.timestamp().rem_euclid(PERIOD_SECONDS) != 0 || t.timestamp_subsec_nanos() != 0 {
            return Err(PeriodError::NotAligned(t));
        }
        Ok(Self::containing(t))
    }

    /// Start of the period (inclusive).
    #[must_use]
    pub fn start(self) -> Timestamp {
        DateTime::<Utc>::from_timestamp(self.0 * PERIOD_SECONDS, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// End of the period (exclusive), which is the start of the next one.
    #[must_use]
    pub fn end(self) -> Timestamp {
        self.start().checked_add_signed(Duration::seconds(PERIOD_SECONDS)).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// True when `t` falls inside this period.
    #[must_use]
    pub fn contains(self, t: Timestamp) -> bool {
        Self::containing(t) == self
    }

    /// The following period.
    #[must_use]
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }

    /// The preceding period.
    #[must_use]
    pub const fn prev(self) -> Self {
        Self(self.0.saturating_sub(1))
    }

    /// The period `n` steps later (earlier for negative `n`).
    #[must_use]
    pub const fn offset(self, n: i64) -> Self {
        Self(self.0.saturating_add(n))
    }

    /// Every period that overlaps the half-open interval `[from, to)`.
    ///
    /// # Errors
    /// [`PeriodError::EndBeforeStart`] when `to < from`.
    pub fn covering(from: Timestamp, to: Timestamp) -> Result<PeriodRange, PeriodError> {
        if to < from {
            return Err(PeriodError::EndBeforeStart { start: from, end: to });
        }
        let first = Self::containing(from);
        let end = if to == from {
            first
        } else {
            // `to` is exclusive: a range ending on a boundary does not touch the next period.
            Self::containing(to.checked_sub_signed(Duration::nanoseconds(1)).unwrap_or(to)).next()
        };
        Ok(PeriodRange { start: first, end })
    }

    /// The periods of one local calendar day in `tz`, from local midnight to the next local
    /// midnight. A day on which clocks go forward has fewer periods (92 for a one-hour shift),
    /// one on which they go back has more (100).
    ///
    /// # Errors
    /// [`PeriodError::BadLocalDay`] for a day outside the calendar the time zone database covers.
    pub fn local_day<Tz: TimeZone + fmt::Debug>(
        date: NaiveDate,
        tz: &Tz,
    ) -> Result<PeriodRange, PeriodError> {
        let bad = || PeriodError::BadLocalDay(date, format!("{tz:?}"));
        let start = local_midnight(date, tz).ok_or_else(bad)?;
        let next_day = date.succ_opt().ok_or_else(bad)?;
        let end = local_midnight(next_day, tz).ok_or_else(bad)?;
        Self::covering(start, end)
    }
}

/// The first instant of `date` in `tz`. Where midnight itself is skipped by a clock change
/// (some zones shift at 00:00), the day starts at the first local time that exists.
fn local_midnight<Tz: TimeZone>(date: NaiveDate, tz: &Tz) -> Option<Timestamp> {
    let mut t = date.and_hms_opt(0, 0, 0)?;
    for _ in 0..=8 {
        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
            return Some(dt.with_timezone(&Utc));
        }
        t += Duration::minutes(15);
    }
    None
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.start().format("%Y-%m-%dT%H:%M:%SZ"))
    }
}

impl fmt::Debug for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Period({self})")
    }
}

impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.start().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = Timestamp::deserialize(d)?;
        Self::starting_at(t).map_err(serde::de::Error::custom)
    }
}

/// A half-open run of consecutive periods `[start, end)`; iterate it to get each period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeriodRange {
    /// First period in the range.
    pub start: Period,
    /// First period after the range.
    pub end: Period,
}

impl PeriodRange {
    /// Number of periods in the range.
    #[must_use]
    pub fn len(&self) -> usize {
        usize::try_from(self.end.0 - self.start.0).unwrap_or(0)
    }

    /// True when the range holds no period.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.end.0 <= self.start.0
    }

    /// True when `p` is in the range.
    #[must_use]
    pub fn contains(&self, p: Period) -> bool {
        self.start <= p && p < self.end
    }
}

impl Iterator for PeriodRange {
    type Item = Period;

    fn next(&mut self) -> Option<Period> {
        if self.start < self.end {
            let p = self.start;
            self.start = self.start.next();
            Some(p)
        } else {
            None
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

impl ExactSizeIterator for PeriodRange {}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, Europe::Berlin};
    use proptest::prelude::*;

    fn utc(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn periods_are_aligned_to_the_quarter_hour() {
        let p = Period::containing(utc("2026-11-24T06:52:13Z"));
        assert_eq!(p.start(), utc("2026-11-24T06:45:00Z"));
        assert_eq!(p.end(), utc("2026-11-24T07:00:00Z"));
        assert!(p.contains(utc("2026-11-24T06:59:59.999Z")));
        assert!(!p.contains(utc("2026-11-24T07:00:00Z")));
        assert_eq!(p.to_string(), "2026-11-24T06:45:00Z");
    }

    #[test]
    fn starting_at_refuses_unaligned_times() {
        assert!(Period::starting_at(utc("2026-11-24T06:45:00Z")).is_ok());
        let err = Period::starting_at(utc("2026-11-24T06:46:00Z")).unwrap_err();
        assert!(err.to_string().contains("not aligned"), "{err}");
        assert!(Period::starting_at(utc("2026-11-24T06:45:00.5Z")).is_err());
    }

    #[test]
    fn times_before_the_epoch_round_down() {
        let p = Period::containing(utc("1969-12-31T23:59:59Z"));
        assert_eq!(p.index(), -1);
        assert_eq!(p.start(), utc("1969-12-31T23:45:00Z"));
    }

    #[test]
    fn covering_treats_the_end_as_exclusive() {
        let r = Period::covering(utc("2026-01-01T17:00:00Z"), utc("2026-01-01T19:00:00Z")).unwrap();
        assert_eq!(r.len(), 8);
        let r = Period::covering(utc("2026-01-01T17:05:00Z"), utc("2026-01-01T17:20:00Z")).unwrap();
        let v: Vec<_> = r.collect();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].start(), utc("2026-01-01T17:00:00Z"));
        assert!(Period::covering(utc("2026-01-01T17:00:00Z"), utc("2026-01-01T16:00:00Z")).is_err());
        assert!(
            Period::covering(utc("2026-01-01T17:00:00Z"), utc("2026-01-01T17:00:00Z")).unwrap().is_empty()
        );
    }

    #[test]
    fn local_days_follow_daylight_saving() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        // Spring forward in Berlin: 23 hours.
        assert_eq!(Period::local_day(day(2026, 3, 29), &Berlin).unwrap().len(), 92);
        // Fall back: 25 hours.
        assert_eq!(Period::local_day(day(2026, 10, 25), &Berlin).unwrap().len(), 100);
        let normal = Period::local_day(day(2026, 11, 24), &Berlin).unwrap();
        assert_eq!(normal.len(), 96);
        assert_eq!(normal.start.start(), utc("2026-11-23T23:00:00Z"));
        assert_eq!(Period::local_day(day(2026, 3, 8), &New_York).unwrap().len(), 92);
        assert_eq!(Period::local_day(day(2026, 1, 1), &Utc).unwrap().len(), 96);
    }

    #[test]
    fn periods_serialize_as_their_start() {
        let p = Period::containing(utc("2026-11-24T06:52:13Z"));
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, "\"2026-11-24T06:45:00Z\"");
        assert_eq!(serde_json::from_str::<Period>(&json).unwrap(), p);
        assert!(serde_json::from_str::<Period>("\"2026-11-24T06:50:00Z\"").is_err());
    }

    #[test]
    fn absurd_indices_are_refused() {
        assert!(Period::from_index(i64::MAX).is_err());
        assert_eq!(Period::from_index(5).unwrap().index(), 5);
    }

    proptest! {
        #[test]
        fn every_instant_lies_in_exactly_its_period(secs in -2_000_000_000_i64..4_000_000_000, nanos in 0_u32..1_000_000_000) {
            let t = DateTime::<Utc>::from_timestamp(secs, nanos).unwrap();
            let p = Period::containing(t);
            prop_assert!(p.start() <= t && t < p.end());
            prop_assert!(!p.next().contains(t) && !p.prev().contains(t));
            prop_assert_eq!(Period::starting_at(p.start()).unwrap(), p);
        }
    }
}
