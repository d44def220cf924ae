//! Plausibility checks: which readings not to take as truth. Plain functions over plain data.
//!
//! A check never drops a reading; it returns [`ReadingFlags`] and ingest stores the reading with
//! them. Checks that need one reading and its site live here; the counter-jump check across
//! batches keeps a little per-site memory ([`CounterTrail`]); the feeder-wide PV comparison
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
    /// An energy counter may grow between two readings by what its rating's power ceiling (the
    /// rating plus the margins above, as for power) delivers in the time between them, plus
    /// this many Wh for the counters' rounding: to whole watt-hours, and a 32-bit float
    /// counter's steps (as SunSpec's float models carry them: 16 Wh steps from 134 MWh up to
    /// 268 MWh). More is a counter jump.
    pub counter_slack_wh: i64,
    /// How old a [`CounterTrail`]'s anchor gets before it moves up. Every reading is also
    /// compared with the anchor, so the slack is granted once per this span rather than once
    /// per reading, and readings close together cannot add their slack up.
    pub counter_anchor_span: Duration,
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
            counter_slack_wh: 20,
            counter_anchor_span: Duration::minutes(5),
        }
    }
}

impl Rules {
    fn allowed(&self, rating: Watts) -> i64 {
        (rating.get().saturating_mul(self.rating_margin_pct.saturating_add(100)) / 100)
            .saturating_add(self.rating_margin_w)
    }

    /// Most energy, in Wh, a counter may gain in `elapsed_ms` behind a device rated `rating`
    /// (`None`: the site has no such device, so no power at all): the power ceiling of
    /// [`Rules::allowed`] held the whole time, plus the slack. A reading measured before the
    /// one it is compared with (negative time) gets the slack only. `None` when the arithmetic
    /// leaves the integers, which the caller takes as a jump.
    fn counter_allowance(&self, rating: Option<Watts>, elapsed_ms: i64) -> Option<i128> {
        let ceiling_w = rating.map_or(0, |r| self.allowed(r).max(0));
        let watt_ms = i128::from(ceiling_w).checked_mul(i128::from(elapsed_ms.max(0)))?;
        (watt_ms / 3_600_000).checked_add(i128::from(self.counter_slack_wh))
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
/// number; for counters running backwards or jumping) and when the reading was received.
///
/// The jump check here only sees the previous reading; ingest also compares each reading with
/// the site's recent readings by measurement time ([`CounterTrail`]), which previous readings
/// with odd times or missing counters cannot get around.
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
    if let Some(prev) = previous {
        if counters_backwards(prev, r) {
            flags |= ReadingFlags::COUNTER_BACKWARDS;
        }
        if counter_jump(profile, prev, r, rules) {
            flags |= ReadingFlags::COUNTER_JUMP;
        }
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

/// A reading's energy counters, in a fixed order: grid import, grid export, PV, battery
/// charged, battery discharged.
fn counters(r: &Reading) -> [Option<WattHours>; 5] {
    [r.grid_import, r.grid_export, r.pv_energy, r.battery_charged, r.battery_discharged]
}

/// The power behind each of [`counters`], in the same order: the connection's import and export
/// limits, the rated PV, the battery's charge and discharge power; `None` for the battery's
/// counters when the site has no battery.
fn counter_ratings(p: &Site) -> [Option<Watts>; 5] {
    let (charge, discharge) = p.battery.map_or((None, None), |b| (Some(b.max_charge), Some(b.max_discharge)));
    [Some(p.grid.import_limit), Some(p.grid.export_limit), Some(p.rated_pv), charge, discharge]
}

/// A counter's value and when it was measured.
type Mark = (Timestamp, WattHours);

/// True when a counter went from `from` to `to` faster than a device rated `rating` can.
fn grew_too_much(rules: &Rules, rating: Option<Watts>, from: Mark, to: Mark) -> bool {
    // Milliseconds between any two representable times fit an i64 (chrono's range is far
    // smaller than i64::MAX ms); two i64 values differ by less than 2^64, exactly in i128.
    let elapsed_ms = to.0.signed_duration_since(from.0).num_milliseconds();
    let increase = i128::from(to.1.get()) - i128::from(from.1.get());
    rules.counter_allowance(rating, elapsed_ms).is_none_or(|most| increase > most)
}

/// True when an energy counter of `r` grew more since `earlier` than the site's ratings deliver
/// in the time between their measurements: grid import against the import limit, grid export
/// against the export limit, PV against the rated PV, the battery's counters against its charge
/// and discharge power (a site without a battery: any growth beyond the slack), each with the
/// margins of [`Rules`]. A gap of hours allows hours of energy; `r` measured before `earlier`
/// allows the slack only. Counters missing from either reading are not compared.
#[must_use]
pub fn counter_jump(profile: &Site, earlier: &Reading, r: &Reading, rules: &Rules) -> bool {
    counters(earlier).into_iter().zip(counters(r)).zip(counter_ratings(profile)).any(
        |((from, to), rating)| match (from, to) {
            (Some(from), Some(to)) => grew_too_much(rules, rating, (earlier.at, from), (r.at, to)),
            _ => false,
        },
    )
}

/// What a site's energy counters said lately, by measurement time, whichever agent sent them:
/// per counter its newest value, and an anchor that stays put until it is
/// [`Rules::counter_anchor_span`] old and then moves up to the newest value.
///
/// Ingest keeps one per site across batches (starting from the site's latest stored reading)
/// and compares every reading with both ([`CounterTrail::jumped`]). The newest value catches a
/// jump between consecutive readings, even when the agent's previous reading was backdated or
/// lacked the counter; the anchor catches many readings close together that each stay within
/// the slack (a reading every millisecond, each a few Wh up), since their sum has to fit the
/// time since the anchor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterTrail {
    latest: [Option<Mark>; 5],
    anchor: [Option<Mark>; 5],
}

impl CounterTrail {
    /// A trail starting at `r` (the site's latest stored reading); [`CounterTrail::default`]
    /// for a site without readings.
    #[must_use]
    pub fn starting_at(r: &Reading) -> Self {
        let marks = counters(r).map(|v| v.map(|v| (r.at, v)));
        Self { latest: marks, anchor: marks }
    }

    /// True when a counter of `r` grew more since the newest value of it, or since its anchor,
    /// than the site's ratings deliver in the time between (the rule of [`counter_jump`]).
    #[must_use]
    pub fn jumped(&self, profile: &Site, r: &Reading, rules: &Rules) -> bool {
        let marks = self.latest.into_iter().zip(self.anchor);
        counters(r).into_iter().zip(counter_ratings(profile)).zip(marks).any(
            |((value, rating), (latest, anchor))| {
                value.is_some_and(|v| {
                    [latest, anchor].into_iter().flatten().any(|m| grew_too_much(rules, rating, m, (r.at, v)))
                })
            },
        )
    }

    /// Takes `r` in once it is checked: each of its counters measured after that counter's
    /// newest value becomes the newest, and the anchor moves up to it when the anchor is
    /// [`Rules::counter_anchor_span`] old. Older values (late data, a clock set back) change
    /// nothing. A reading from a clock running ahead must not be taken in (as it is not the
    /// site's latest reading in the database either), or it would hold the place of the newest
    /// value until real time caught up.
    pub fn advance(&mut self, r: &Reading, rules: &Rules) {
        let slots = self.latest.iter_mut().zip(self.anchor.iter_mut());
        for (value, (latest, anchor)) in counters(r).into_iter().zip(slots) {
            let Some(value) = value else { continue };
            if latest.is_some_and(|(at, _)| r.at <= at) {
                continue;
            }
            *latest = Some((r.at, value));
            if anchor.is_none_or(|(at, _)| r.at.signed_duration_since(at) >= rules.counter_anchor_span) {
                *anchor = Some((r.at, value));
            }
        }
    }
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

    /// The test reading with its grid export counter at `export`, `secs` after noon.
    fn exporting(secs: i64, export: i64) -> Reading {
        Reading { at: noon() + Duration::seconds(secs), grid_export: Some(WattHours(export)), ..reading() }
    }

    /// Flags of `r` received when it was measured.
    fn flags_on_time(r: &Reading, prev: &Reading) -> ReadingFlags {
        check(&profile(), Some(prev), r, r.at, &Rules::default())
    }

    #[test]
    fn a_counter_jump_beyond_the_ratings_is_flagged() {
        let prev = reading();
        // 10^9 Wh more export in 10 s, with the power values looking normal.
        assert_eq!(flags(&exporting(10, 2_000 + 1_000_000_000), Some(&prev)), ReadingFlags::COUNTER_JUMP);
        // The export limit is 7 kW: + 20 % + 200 W = 8.6 kW, 23 Wh in 10 s, + 20 Wh of slack.
        assert!(flags(&exporting(10, 2_043), Some(&prev)).is_empty());
        assert_eq!(flags(&exporting(10, 2_044), Some(&prev)), ReadingFlags::COUNTER_JUMP);
        // Import, PV and battery counters each against their own rating.
        let import = Reading { grid_import: Some(WattHours(1_000 + 200)), ..exporting(10, 2_000) };
        assert_eq!(flags(&import, Some(&prev)), ReadingFlags::COUNTER_JUMP);
        let pv = Reading { pv_energy: Some(WattHours(3_000 + 100)), ..exporting(10, 2_000) };
        assert_eq!(flags(&pv, Some(&prev)), ReadingFlags::COUNTER_JUMP);
        let charged = |wh: i64| Reading { battery_charged: Some(WattHours(wh)), ..reading() };
        let later = Reading { at: noon() + Duration::seconds(10), ..charged(1_000 + 100) };
        assert_eq!(flags(&later, Some(&charged(1_000))), ReadingFlags::COUNTER_JUMP);
        // A site without a battery: its battery counters may move by the slack only.
        let no_battery = Site { battery: None, ..profile() };
        let rules = Rules::default();
        let moved = |wh: i64| Reading { at: noon() + Duration::hours(1), ..charged(1_000 + wh) };
        assert!(!counter_jump(&no_battery, &charged(1_000), &moved(20), &rules));
        assert!(counter_jump(&no_battery, &charged(1_000), &moved(21), &rules));
        // A counter missing on either side is not compared.
        let missing = Reading { grid_export: None, ..exporting(10, 0) };
        assert!(flags(&exporting(20, 1_000_000_000), Some(&missing)).is_empty());
    }

    #[test]
    fn honest_counters_at_full_rating_are_not_jumps() {
        // Every counter at its full rating for 10 s, then across a 2 h gap (an agent offline).
        let prev = Reading { battery_charged: Some(WattHours(0)), ..reading() };
        for secs in [10, 7_200] {
            let at_full = |counter: i64, watts: i64| counter + watts * secs / 3_600 + 1;
            let r = Reading {
                at: noon() + Duration::seconds(secs),
                grid_import: Some(WattHours(at_full(1_000, 17_000))),
                grid_export: Some(WattHours(at_full(2_000, 7_000))),
                pv_energy: Some(WattHours(at_full(3_000, 8_000))),
                battery_charged: Some(WattHours(at_full(0, 5_000))),
                ..reading()
            };
            assert!(flags_on_time(&r, &prev).is_empty(), "after {secs} s: {:?}", flags_on_time(&r, &prev));
        }
        // Across the gap, proportionally more than the ceiling is still a jump: 8.6 kW for 2 h.
        assert!(flags_on_time(&exporting(7_200, 2_000 + 17_220), &reading()).is_empty());
        assert_eq!(flags_on_time(&exporting(7_200, 2_000 + 17_221), &reading()), ReadingFlags::COUNTER_JUMP);
        // Measured before the reading it follows (a clock set back): the slack only.
        assert!(flags_on_time(&exporting(-1, 2_020), &reading()).is_empty());
        assert_eq!(flags_on_time(&exporting(-1, 2_021), &reading()), ReadingFlags::COUNTER_JUMP);
    }

    #[test]
    fn counters_near_the_integer_limit_do_not_panic() {
        let all = |secs: i64, wh: i64| Reading {
            at: noon() + Duration::seconds(secs),
            grid_import: Some(WattHours(wh)),
            grid_export: Some(WattHours(wh)),
            pv_energy: Some(WattHours(wh)),
            battery_charged: Some(WattHours(wh)),
            battery_discharged: Some(WattHours(wh)),
            ..reading()
        };
        assert_eq!(flags(&all(10, i64::MAX), Some(&all(0, 0))), ReadingFlags::COUNTER_JUMP);
        assert!(flags(&all(10, i64::MAX), Some(&all(0, i64::MAX - 5))).is_empty());
        assert_eq!(flags(&all(10, 0), Some(&all(0, i64::MAX))), ReadingFlags::COUNTER_BACKWARDS);
        // Not valid readings (negative counters, the ends of time), but no panic either.
        let rules = Rules::default();
        let first = Reading { at: chrono::DateTime::<chrono::Utc>::MIN_UTC, ..all(0, i64::MIN) };
        let last = Reading { at: chrono::DateTime::<chrono::Utc>::MAX_UTC, ..all(0, i64::MAX) };
        assert!(counter_jump(&profile(), &first, &last, &rules));
        assert!(!counter_jump(&profile(), &last, &first, &rules));
        let mut trail = CounterTrail::starting_at(&first);
        assert!(trail.jumped(&profile(), &last, &rules));
        trail.advance(&last, &rules);
        assert!(!trail.jumped(&profile(), &first, &rules));
    }

    #[test]
    fn the_trail_keeps_readings_close_together_from_adding_up_their_slack() {
        let (p, rules) = (profile(), Rules::default());
        let mut trail = CounterTrail::starting_at(&exporting(0, 2_000));
        let step = |ms: i64, export: i64| Reading {
            at: noon() + Duration::milliseconds(ms),
            grid_export: Some(WattHours(export)),
            ..reading()
        };
        // Each reading a millisecond and 20 Wh after the one before: within the slack one by one...
        let (first, second) = (step(1, 2_020), step(2, 2_040));
        assert!(!trail.jumped(&p, &first, &rules));
        assert!(!counter_jump(&p, &first, &second, &rules));
        trail.advance(&first, &rules);
        // ...but not against the anchor.
        assert!(trail.jumped(&p, &second, &rules));
    }

    #[test]
    fn the_trail_compares_by_measurement_time_and_per_counter() {
        let (p, rules) = (profile(), Rules::default());
        // A backdated reading, then thirteen days of full export claimed a minute after the
        // latest one: fine against the backdated reading, a jump against the latest.
        let mut trail = CounterTrail::starting_at(&exporting(0, 2_000));
        let backdated = Reading { at: noon() - Duration::days(13), ..exporting(0, 2_000) };
        assert!(!trail.jumped(&p, &backdated, &rules));
        trail.advance(&backdated, &rules);
        let claim = exporting(60, 2_000 + 7_000 * 24 * 13);
        assert!(!counter_jump(&p, &backdated, &claim, &rules));
        assert!(trail.jumped(&p, &claim, &rules));
        // A reading without the counter in between does not reset it.
        let mut trail = CounterTrail::starting_at(&exporting(0, 2_000));
        let without = Reading { grid_export: None, ..exporting(10, 0) };
        trail.advance(&without, &rules);
        let jump = exporting(20, 1_000_000_000);
        assert!(!counter_jump(&p, &without, &jump, &rules));
        assert!(trail.jumped(&p, &jump, &rules));
        // An empty trail (a site's first reading) has nothing to compare with.
        assert!(!CounterTrail::default().jumped(&p, &jump, &rules));
    }

    #[test]
    fn an_hour_of_full_export_passes_the_trail() {
        let (p, rules) = (profile(), Rules::default());
        let mut trail = CounterTrail::starting_at(&exporting(0, 0));
        for k in 1..=360_i64 {
            // 7 kW (the export limit) for k × 10 s, counted in whole Wh.
            let r = exporting(10 * k, 7_000 * 10 * k / 3_600);
            assert!(!trail.jumped(&p, &r, &rules), "reading {k}");
            trail.advance(&r, &rules);
        }
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

        #[test]
        fn counter_checks_never_panic(
            a: Option<i64>,
            b: Option<i64>,
            ms_a in -8_000_000_000_000_000_i64..8_000_000_000_000_000,
            ms_b in -8_000_000_000_000_000_i64..8_000_000_000_000_000,
            rating: i64,
        ) {
            let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap();
            let r = |ms: i64, wh: Option<i64>| Reading {
                at: at(ms),
                grid_export: wh.map(WattHours),
                battery_charged: wh.map(WattHours),
                ..Reading::default()
            };
            let grid = GridConnection { import_limit: Watts(rating), export_limit: Watts(rating) };
            let p = Site { rated_pv: Watts(rating), grid, ..profile() };
            let (x, y) = (r(ms_a, a), r(ms_b, b));
            let _ = check(&p, Some(&x), &y, y.at, &Rules::default());
            let mut trail = CounterTrail::starting_at(&x);
            let _ = trail.jumped(&p, &y, &Rules::default());
            trail.advance(&y, &Rules::default());
        }
    }
}
