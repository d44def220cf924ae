//! Plausibility checks: which readings not to take as truth. Plain functions over plain data.
//!
//! A check never drops a reading; it returns [`ReadingFlags`] and ingest stores the reading with
//! them. Checks that need one reading and its site live here; the feeder-wide PV comparison
//! ([`pv_outliers`]) works on a period's energy of many sites.

use chrono::Duration;
use gridmesh_core::{Reading, ReadingFlags, Site, SiteId, Timestamp, WattHours, Watts};

use gridmesh_core::solar;

/// Tolerances of the checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Relative margin on every rating, in percent.
    pub rating_margin_pct: i64,
    /// Absolute margin on every rating, in watts (meters are noisy at low power).
    pub rating_margin_w: i64,
    /// How far ahead of the server's clock a reading may be.
    pub max_future: Duration,
    /// How far back a reading may be (longer than agents buffer is suspicious).
    pub max_past: Duration,
    /// The sun below this elevation (degrees) counts as night; twilight gives a little light.
    pub night_below_deg: f64,
    /// PV above this at night is flagged (also at least 2 % of the rated power).
    pub night_pv_w: i64,
    /// Export may exceed PV plus battery discharge by this much before meter and inverter are
    /// said to disagree (they are read at slightly different instants).
    pub mismatch_margin_w: i64,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            rating_margin_pct: 20,
            rating_margin_w: 200,
            max_future: Duration::minutes(5),
            max_past: Duration::days(14),
            night_below_deg: -3.0,
            night_pv_w: 50,
            mismatch_margin_w: 300,
        }
    }
}

impl Rules {
    fn allowed(&self, rating: Watts) -> i64 {
        rating.get().saturating_mul(100 + self.rating_margin_pct) / 100 + self.rating_margin_w
    }
}

/// The ratings valid at `at`: the first of the site's `earlier` ratings (oldest first, each
/// valid until its time) still valid then, else the `current` ones. A late reading is judged as
/// the home was rated when it was measured.
#[must_use]
pub fn rated_at<'a>(current: &'a Site, earlier: &'a [(Timestamp, Site)], at: Timestamp) -> &'a Site {
    earlier.iter().find(|(until, _)| at < *until).map_or(current, |(_, s)| s)
}

/// Flags for one reading of the site, given the agent's previous reading (by sequence
/// number) and when the reading was received.
#[must_use]
pub fn check(
    profile: &Site,
    previous: Option<&Reading>,
    r: &Reading,
    received_at: Timestamp,
    rules: &Rules,
) -> ReadingFlags {
    let mut flags = ReadingFlags::NONE;
    if over_rated(profile, r, rules) {
        flags |= ReadingFlags::OVER_RATED;
    }
    if let Some(prev) = previous
        && counters_backwards(prev, r)
    {
        flags |= ReadingFlags::COUNTER_BACKWARDS;
    }
    if r.at > received_at + rules.max_future {
        flags |= ReadingFlags::CLOCK_FUTURE;
    }
    if r.at < received_at - rules.max_past {
        flags |= ReadingFlags::CLOCK_PAST;
    }
    if let (Some(place), Some(pv)) = (profile.location, r.pv_power) {
        let threshold = rules.night_pv_w.max(profile.rated_pv.get() / 50);
        if pv.get() > threshold && solar::elevation_deg(r.at, place) < rules.night_below_deg {
            flags |= ReadingFlags::PV_AT_NIGHT;
        }
    }
    if meter_inverter_mismatch(profile, r, rules) {
        flags |= ReadingFlags::METER_INVERTER_MISMATCH;
    }
    flags
}

fn over_rated(p: &Site, r: &Reading, rules: &Rules) -> bool {
    let beyond = |value: Option<Watts>, up: Watts, down: Watts| {
        value.is_some_and(|v| v.get() > rules.allowed(up) || v.get().saturating_neg() > rules.allowed(down))
    };
    let (charge, discharge) =
        p.battery.map_or((Watts::ZERO, Watts::ZERO), |b| (b.max_charge, b.max_discharge));
    beyond(r.grid_power, p.grid.import_limit, p.grid.export_limit)
        || r.pv_power.is_some_and(|v| v.get() > rules.allowed(p.rated_pv))
        || beyond(r.battery_power, charge, discharge)
}

fn counters_backwards(prev: &Reading, r: &Reading) -> bool {
    let pairs: [(Option<WattHours>, Option<WattHours>); 5] = [
        (prev.grid_import, r.grid_import),
        (prev.grid_export, r.grid_export),
        (prev.pv_energy, r.pv_energy),
        (prev.battery_charged, r.battery_charged),
        (prev.battery_discharged, r.battery_discharged),
    ];
    pairs.iter().any(|(a, b)| matches!((a, b), (Some(a), Some(b)) if b < a))
}

/// A site can only export what its PV and battery produce: a meter reporting more export than
/// that disagrees with the inverter. Needs grid and PV power, and battery power where the site
/// has a battery.
fn meter_inverter_mismatch(p: &Site, r: &Reading, rules: &Rules) -> bool {
    let (Some(grid), Some(pv)) = (r.grid_power, r.pv_power) else {
        return false;
    };
    let discharge = match (r.battery_power, p.battery) {
        (Some(b), _) => b.get().saturating_neg().max(0),
        (None, None) => 0,
        (None, Some(_)) => return false,
    };
    let export = grid.get().saturating_neg();
    export > pv.get().max(0).saturating_add(discharge).saturating_add(rules.mismatch_margin_w)
}

/// One site's PV energy in a period, for the feeder-wide comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PvSample {
    /// The site.
    pub site: SiteId,
    /// Its rated PV power.
    pub rated_pv: Watts,
    /// Its PV energy in the period.
    pub pv: WattHours,
}

/// Sites of one feeder and period whose PV yield per rated watt is far above their neighbours'
/// (more than 1.5 × the median plus 0.05 Wh per rated W — a quarter of what a full-sun quarter
/// hour gives). Neighbours see the same sky, so claiming much more than them is suspicious;
/// producing less (shade, faults) is not flagged. Needs at least three sites with PV.
#[must_use]
pub fn pv_outliers(samples: &[PvSample]) -> Vec<SiteId> {
    // Specific yield in milli-Wh per rated W, in integers so the result is exact.
    let mut yields: Vec<(SiteId, i64)> = samples
        .iter()
        .filter(|s| s.rated_pv.get() > 0)
        .map(|s| (s.site, s.pv.get().saturating_mul(1000) / s.rated_pv.get()))
        .collect();
    if yields.len() < 3 {
        return Vec::new();
    }
    let mut sorted: Vec<i64> = yields.iter().map(|(_, y)| *y).collect();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    let limit = median.saturating_mul(3) / 2 + 50;
    yields.retain(|(_, y)| *y > limit);
    let mut out: Vec<SiteId> = yields.into_iter().map(|(s, _)| s).collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridmesh_core::{BatterySpec, GeoPoint, GridConnection};
    use proptest::prelude::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn profile() -> Site {
        Site {
            id: SiteId::from_bytes([1; 16]),
            owner: gridmesh_core::UserId::from_bytes([3; 16]),
            name: "test site".into(),
            feeder: Some(gridmesh_core::GridNodeId::from_bytes([2; 16])),
            rated_pv: Watts(8_000),
            pv_orientation: None,
            battery: Some(BatterySpec {
                capacity: WattHours(10_000),
                max_charge: Watts(5_000),
                max_discharge: Watts(5_000),
            }),
            grid: GridConnection { import_limit: Watts(17_000), export_limit: Watts(7_000) },
            location: Some(GeoPoint { lat: 52.52, lon: 13.40 }),
        }
    }

    fn noon() -> Timestamp {
        at("2026-06-21T11:00:00Z")
    }

    fn reading() -> Reading {
        Reading {
            at: noon(),
            grid_power: Some(Watts(-2_000)),
            pv_power: Some(Watts(5_000)),
            battery_power: Some(Watts(2_500)),
            grid_import: Some(WattHours(1_000)),
            grid_export: Some(WattHours(2_000)),
            pv_energy: Some(WattHours(3_000)),
            ..Reading::default()
        }
    }

    fn flags(r: &Reading, prev: Option<&Reading>) -> ReadingFlags {
        check(&profile(), prev, r, noon(), &Rules::default())
    }

    #[test]
    fn a_normal_reading_has_no_flags() {
        assert_eq!(flags(&reading(), Some(&reading())), ReadingFlags::NONE);
    }

    #[test]
    fn a_reading_is_judged_by_the_ratings_valid_when_it_was_measured() {
        // The PV rating went from 8 kW down to 4 kW at 12:00: 7 kW at 11:00 was plausible then.
        let now = profile();
        let current = Site { rated_pv: Watts(4_000), ..now.clone() };
        let earlier = vec![(at("2026-06-21T12:00:00Z"), now)];
        let before = Reading { pv_power: Some(Watts(7_000)), grid_power: Some(Watts(0)), ..reading() };
        let after = Reading { at: at("2026-06-21T12:30:00Z"), ..before };
        let judge = |r: &Reading| check(rated_at(&current, &earlier, r.at), None, r, r.at, &Rules::default());
        assert!(judge(&before).is_empty());
        assert_eq!(judge(&after), ReadingFlags::OVER_RATED);
        // Exactly at the change the new ratings apply; without history the current ones do.
        assert_eq!(rated_at(&current, &earlier, at("2026-06-21T12:00:00Z")).rated_pv, Watts(4_000));
        assert_eq!(rated_at(&current, &[], before.at).rated_pv, Watts(4_000));
    }

    #[test]
    fn power_beyond_ratings_is_flagged() {
        // 8 kW PV + 20 % + 200 W = 9800 W allowed.
        let ok = Reading { pv_power: Some(Watts(9_800)), grid_power: Some(Watts(0)), ..reading() };
        assert!(flags(&ok, None).is_empty());
        let pv = Reading { pv_power: Some(Watts(9_801)), grid_power: Some(Watts(0)), ..reading() };
        assert_eq!(flags(&pv, None), ReadingFlags::OVER_RATED);
        let import = Reading { grid_power: Some(Watts(30_000)), ..reading() };
        assert_eq!(flags(&import, None), ReadingFlags::OVER_RATED);
        let discharge =
            Reading { battery_power: Some(Watts(-9_000)), grid_power: Some(Watts(0)), ..reading() };
        assert_eq!(flags(&discharge, None), ReadingFlags::OVER_RATED);
        let no_battery = Site { battery: None, ..profile() };
        let phantom = Reading { battery_power: Some(Watts(1_000)), ..reading() };
        assert!(
            check(&no_battery, None, &phantom, noon(), &Rules::default()).contains(ReadingFlags::OVER_RATED)
        );
    }

    #[test]
    fn counters_running_backwards_are_flagged() {
        let prev = reading();
        let back = Reading { grid_export: Some(WattHours(1_999)), ..reading() };
        assert_eq!(flags(&back, Some(&prev)), ReadingFlags::COUNTER_BACKWARDS);
        let missing = Reading { grid_export: None, ..reading() };
        assert!(flags(&missing, Some(&prev)).is_empty());
    }

    #[test]
    fn clocks_far_off_are_flagged() {
        let future = Reading { at: noon() + Duration::minutes(6), ..reading() };
        assert_eq!(flags(&future, None), ReadingFlags::CLOCK_FUTURE);
        let past = Reading { at: noon() - Duration::days(15), ..reading() };
        // Noon 15 days earlier is still daytime: only the clock flag.
        assert_eq!(flags(&past, None), ReadingFlags::CLOCK_PAST);
        let recent = Reading { at: noon() - Duration::days(3), ..reading() };
        assert!(flags(&recent, None).is_empty());
    }

    #[test]
    fn pv_at_night_is_flagged() {
        let night = Reading { at: at("2026-06-21T23:00:00Z"), ..reading() };
        let f = check(&profile(), None, &night, night.at, &Rules::default());
        assert_eq!(f, ReadingFlags::PV_AT_NIGHT);
        // Standby noise at night is fine.
        let standby = Reading { pv_power: Some(Watts(40)), grid_power: Some(Watts(300)), ..night };
        assert!(check(&profile(), None, &standby, night.at, &Rules::default()).is_empty());
        // Without a location the check cannot run.
        let nowhere = Site { location: None, ..profile() };
        assert!(check(&nowhere, None, &night, night.at, &Rules::default()).is_empty());
    }

    #[test]
    fn export_beyond_generation_is_a_meter_inverter_mismatch() {
        // Exporting 6 kW with 5 kW PV and the battery charging: 1 kW from nowhere.
        let r = Reading { grid_power: Some(Watts(-6_000)), battery_power: Some(Watts(0)), ..reading() };
        assert_eq!(flags(&r, None), ReadingFlags::METER_INVERTER_MISMATCH);
        // The same export with the battery discharging 1.5 kW adds up.
        let r = Reading { grid_power: Some(Watts(-6_000)), battery_power: Some(Watts(-1_500)), ..reading() };
        assert!(flags(&r, None).is_empty());
    }

    #[test]
    fn pv_far_above_the_neighbours_is_an_outlier() {
        let s = |n: u8, rated: i64, pv: i64| PvSample {
            site: SiteId::from_bytes([n; 16]),
            rated_pv: Watts(rated),
            pv: WattHours(pv),
        };
        // Neighbours yield about 0.2 Wh per rated W; site 4 claims 0.6.
        let samples =
            [s(1, 5_000, 1_000), s(2, 8_000, 1_700), s(3, 4_000, 780), s(4, 5_000, 3_000), s(5, 6_000, 300)];
        assert_eq!(pv_outliers(&samples), vec![SiteId::from_bytes([4; 16])]);
        assert!(pv_outliers(&samples[..2]).is_empty());
    }

    proptest! {
        #[test]
        fn checks_never_panic(grid: Option<i64>, pv: Option<i64>, bat: Option<i64>, secs in 0_i64..4_000_000_000, lat in -90.0_f64..90.0, lon in -180.0_f64..180.0) {
            let at = chrono::DateTime::from_timestamp(secs, 0).unwrap();
            let r = Reading { at, grid_power: grid.map(Watts), pv_power: pv.map(Watts), battery_power: bat.map(Watts), ..Reading::default() };
            let p = Site { location: Some(GeoPoint { lat, lon }), ..profile() };
            let _ = check(&p, Some(&reading()), &r, at, &Rules::default());
        }
    }
}
