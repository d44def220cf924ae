//! Per site and 15-minute period: the first and last reading's energy counters.
//!
//! The energy of a period is the difference of the last counters of consecutive periods, so it
//! is exact in integer Wh. A summary only ever widens (an earlier first point, a later last
//! point), so merging summaries is commutative and associative: batches can arrive in any
//! order, late data corrects the period it falls in, and the database upsert applies the same
//! rule as [`PeriodSummary::merge`].

use crate::{Period, Reading, ReadingFlags, SiteId, Timestamp, WattHours};

/// The five cumulative counters of a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Grid import counter.
    pub grid_import: Option<WattHours>,
    /// Grid export counter.
    pub grid_export: Option<WattHours>,
    /// PV production counter.
    pub pv_energy: Option<WattHours>,
    /// Battery charge counter.
    pub battery_charged: Option<WattHours>,
    /// Battery discharge counter.
    pub battery_discharged: Option<WattHours>,
}

impl From<&Reading> for Counters {
    fn from(r: &Reading) -> Self {
        Self {
            grid_import: r.grid_import,
            grid_export: r.grid_export,
            pv_energy: r.pv_energy,
            battery_charged: r.battery_charged,
            battery_discharged: r.battery_discharged,
        }
    }
}

/// A point of a period: when, which sequence number, and the counters then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// Measurement time.
    pub at: Timestamp,
    /// Sequence number (breaks ties between readings of the same instant).
    pub seq: u64,
    /// Counters.
    pub counters: Counters,
}

impl Point {
    fn key(&self) -> (Timestamp, u64) {
        (self.at, self.seq)
    }
}

/// What one site's readings say about one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodSummary {
    /// The site.
    pub site: SiteId,
    /// The period.
    pub period: Period,
    /// Readings seen.
    pub readings: u32,
    /// Readings with any flag.
    pub flagged: u32,
    /// Union of the readings' flags.
    pub flags: ReadingFlags,
    /// The earliest reading.
    pub first: Point,
    /// The latest reading.
    pub last: Point,
}

impl PeriodSummary {
    /// The summary of a single reading.
    #[must_use]
    pub fn of(site: SiteId, seq: u64, r: &Reading, flags: ReadingFlags) -> Self {
        let point = Point { at: r.at, seq, counters: Counters::from(r) };
        Self {
            site,
            period: Period::containing(r.at),
            readings: 1,
            flagged: u32::from(!flags.is_empty()),
            flags,
            first: point,
            last: point,
        }
    }

    /// Folds `other` (same site and period) into `self`.
    pub fn merge(&mut self, other: &PeriodSummary) {
        debug_assert_eq!((self.site, self.period), (other.site, other.period));
        self.readings = self.readings.saturating_add(other.readings);
        self.flagged = self.flagged.saturating_add(other.flagged);
        self.flags |= other.flags;
        if other.first.key() < self.first.key() {
            self.first = other.first;
        }
        if other.last.key() > self.last.key() {
            self.last = other.last;
        }
    }
}

/// Summaries of many readings, one per (site, period), ordered by site then period.
#[must_use]
pub fn summarize<'a>(
    readings: impl IntoIterator<Item = (SiteId, u64, &'a Reading, ReadingFlags)>,
) -> Vec<PeriodSummary> {
    let mut map: std::collections::BTreeMap<(SiteId, Period), PeriodSummary> = Default::default();
    for (site, seq, r, flags) in readings {
        let s = PeriodSummary::of(site, seq, r, flags);
        map.entry((site, s.period)).and_modify(|acc| acc.merge(&s)).or_insert(s);
    }
    map.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use proptest::prelude::*;

    fn reading(at: Timestamp, import: i64) -> Reading {
        Reading { at, grid_import: Some(WattHours(import)), ..Reading::default() }
    }

    #[test]
    fn first_and_last_points_span_the_period() {
        let site = SiteId::from_bytes([1; 16]);
        let t0: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        let rs: Vec<Reading> = (0..30).map(|i| reading(t0 + Duration::minutes(i), 100 + i)).collect();
        let flags = |i: usize| {
            if i == 3 { ReadingFlags::OVER_RATED } else { ReadingFlags::NONE }
        };
        let sums = summarize(rs.iter().enumerate().map(|(i, r)| (site, i as u64, r, flags(i))));
        assert_eq!(sums.len(), 2);
        assert_eq!(sums[0].readings, 15);
        assert_eq!(sums[0].flagged, 1);
        assert_eq!(sums[0].flags, ReadingFlags::OVER_RATED);
        assert_eq!(sums[0].first.counters.grid_import, Some(WattHours(100)));
        assert_eq!(sums[0].last.counters.grid_import, Some(WattHours(114)));
        assert_eq!(sums[1].first.at, t0 + Duration::minutes(15));
        assert!(sums[1].flags.is_empty());
    }

    proptest! {
        #[test]
        fn merging_does_not_depend_on_arrival_order(
            offsets in proptest::collection::vec(0_i64..900, 1..40),
            split in any::<prop::sample::Index>(),
            seed in any::<u64>(),
        ) {
            let site = SiteId::from_bytes([1; 16]);
            let t0: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
            let rs: Vec<(u64, Reading)> = offsets.iter().enumerate()
                .map(|(i, s)| (i as u64, reading(t0 + Duration::seconds(*s), *s))).collect();
            let all = summarize(rs.iter().map(|(q, r)| (site, *q, r, ReadingFlags::NONE)));
            // Any split into two batches, merged in either order, gives the same summary.
            let mut shuffled = rs.clone();
            let k = (seed as usize) % shuffled.len();
            shuffled.rotate_left(k);
            let cut = split.index(shuffled.len());
            let a = summarize(shuffled[..cut].iter().map(|(q, r)| (site, *q, r, ReadingFlags::NONE)));
            let b = summarize(shuffled[cut..].iter().map(|(q, r)| (site, *q, r, ReadingFlags::NONE)));
            // b merged into a and a merged into b: both equal the summary of all readings.
            let fold = |xs: &[PeriodSummary], ys: &[PeriodSummary]| {
                let mut acc: Option<PeriodSummary> = None;
                for s in xs.iter().chain(ys) {
                    match &mut acc {
                        Some(m) => m.merge(s),
                        None => acc = Some(s.clone()),
                    }
                }
                acc.unwrap()
            };
            prop_assert_eq!(&fold(&a, &b), &all[0]);
            prop_assert_eq!(&fold(&b, &a), &all[0]);
        }
    }
}
