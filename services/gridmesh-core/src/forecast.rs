//! Baseline forecasts of a site's PV production and load for one 15-minute period, from its
//! own recent history. Simple on purpose, and behind [`Forecaster`] so that a better model can
//! replace them without touching the market or the optimizer.
//!
//! * PV: a clear-sky shape (the sine of the sun's elevation at the middle of the period, times
//!   the rated PV power) scaled by how the site produced against that shape over its last
//!   [`PV_LOOKBACK`] daylight periods (cloud cover persists). Without a location, the last
//!   period's production.
//! * Load: the average load of the same quarter-hour on the same weekday (UTC) when the history
//!   holds at least [`SAME_WEEKDAY_MIN`] such periods (a weekly profile: weekends differ);
//!   otherwise the same quarter-hour of any day (a daily profile); otherwise the average of the
//!   last four periods.

use crate::{Period, Site, WattHours, solar};

/// Daylight periods used to scale the clear-sky shape.
pub const PV_LOOKBACK: usize = 8;

/// Same-weekday periods needed before the weekly profile is used.
pub const SAME_WEEKDAY_MIN: usize = 2;

/// Periods in a week.
const PERIODS_PER_WEEK: i64 = crate::period::PERIODS_PER_UTC_DAY * 7;

/// One past period of a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PastPeriod {
    /// The period.
    pub period: Period,
    /// PV production, if measured.
    pub pv: Option<WattHours>,
    /// The site's own consumption (import − export + PV + battery out − battery in), if known.
    pub load: Option<WattHours>,
}

/// Forecast energy in one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteForecast {
    /// PV production.
    pub pv: WattHours,
    /// Own consumption.
    pub load: WattHours,
}

/// Something that forecasts a site's period.
pub trait Forecaster {
    /// The forecast for `period`, given the site and its history (oldest first).
    fn forecast(&self, site: &Site, history: &[PastPeriod], period: Period) -> SiteForecast;
}

/// The documented baseline.
#[derive(Debug, Clone, Copy, Default)]
pub struct Baseline;

/// Clear-sky PV energy of a site in a period, Wh (no losses, no clouds).
#[must_use]
pub fn clear_sky_pv(site: &Site, period: Period) -> Option<f64> {
    let place = site.location?;
    let mid = period.start() + chrono::Duration::seconds(450);
    let sin = solar::elevation_deg(mid, place).to_radians().sin().max(0.0);
    Some(site.rated_pv.get() as f64 * sin * 0.25)
}

impl Forecaster for Baseline {
    fn forecast(&self, site: &Site, history: &[PastPeriod], period: Period) -> SiteForecast {
        let pv = match clear_sky_pv(site, period) {
            Some(clear) => {
                let (mut made, mut possible) = (0.0, 0.0);
                let recent = history.iter().rev().filter_map(|h| {
                    let c = clear_sky_pv(site, h.period)?;
                    (c > 1.0).then_some((h.pv?, c))
                });
                for (pv, c) in recent.take(PV_LOOKBACK) {
                    made += pv.get() as f64;
                    possible += c;
                }
                // With no daylight history, assume a typical day: 60 % of clear sky.
                let ratio = if possible > 0.0 { (made / possible).clamp(0.0, 1.2) } else { 0.6 };
                WattHours((clear * ratio).round() as i64)
            }
            None => history.iter().rev().find_map(|h| h.pv).unwrap_or_default(),
        };
        let slot = period.index().rem_euclid(crate::period::PERIODS_PER_UTC_DAY);
        let mean = |it: &mut dyn Iterator<Item = i64>| {
            let (sum, n) = it.fold((0_i64, 0_i64), |(s, n), v| (s + v, n + 1));
            (n > 0).then(|| sum / n)
        };
        let week_slot = period.index().rem_euclid(PERIODS_PER_WEEK);
        let same_weekday: Vec<i64> = history
            .iter()
            .filter(|h| h.period.index().rem_euclid(PERIODS_PER_WEEK) == week_slot)
            .filter_map(|h| h.load.map(WattHours::get))
            .collect();
        let weekly =
            (same_weekday.len() >= SAME_WEEKDAY_MIN).then(|| mean(&mut same_weekday.into_iter())).flatten();
        let same_slot = mean(
            &mut history
                .iter()
                .filter(|h| h.period.index().rem_euclid(crate::period::PERIODS_PER_UTC_DAY) == slot)
                .filter_map(|h| h.load.map(WattHours::get)),
        );
        let load = weekly
            .or(same_slot)
            .or_else(|| mean(&mut history.iter().rev().filter_map(|h| h.load.map(WattHours::get)).take(4)))
            .unwrap_or(0)
            .max(0);
        SiteForecast { pv: pv.max(WattHours(0)), load: WattHours(load) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GeoPoint, GridConnection, GridNodeId, SiteId, UserId, Watts};

    fn site(location: Option<GeoPoint>) -> Site {
        Site {
            id: SiteId::from_bytes([1; 16]),
            owner: UserId::from_bytes([2; 16]),
            feeder: Some(GridNodeId::from_bytes([3; 16])),
            name: "test".into(),
            location,
            rated_pv: Watts(8_000),
            pv_orientation: None,
            battery: None,
            grid: GridConnection { import_limit: Watts(10_000), export_limit: Watts(8_000) },
        }
    }

    fn period(s: &str) -> Period {
        Period::starting_at(s.parse().unwrap()).unwrap()
    }

    #[test]
    fn pv_follows_the_sun_scaled_by_recent_production() {
        let berlin = site(Some(GeoPoint { lat: 52.5, lon: 13.4 }));
        let noon = period("2026-06-21T11:00:00Z");
        let night = period("2026-06-21T23:00:00Z");
        let f = Baseline.forecast(&berlin, &[], noon);
        assert!(f.pv.get() > 500 && f.pv.get() < 2_000, "{f:?}");
        assert_eq!(Baseline.forecast(&berlin, &[], night).pv, WattHours(0));
        // A cloudy morning (a quarter of clear sky) lowers the noon forecast.
        let cloudy: Vec<PastPeriod> = (0..8)
            .map(|k| {
                let p = noon.offset(-8 + k);
                let clear = clear_sky_pv(&berlin, p).unwrap();
                PastPeriod {
                    period: p,
                    pv: Some(WattHours((clear * 0.25) as i64)),
                    load: Some(WattHours(100)),
                }
            })
            .collect();
        let dim = Baseline.forecast(&berlin, &cloudy, noon);
        assert!((dim.pv.get() as f64 - clear_sky_pv(&berlin, noon).unwrap() * 0.25).abs() < 10.0, "{dim:?}");
    }

    #[test]
    fn load_is_the_average_of_the_same_quarter_hour() {
        let s = site(None);
        let target = period("2026-06-21T18:00:00Z");
        let history = vec![
            PastPeriod { period: target.offset(-96 * 2), pv: None, load: Some(WattHours(300)) },
            PastPeriod { period: target.offset(-96), pv: None, load: Some(WattHours(500)) },
            PastPeriod { period: target.offset(-1), pv: Some(WattHours(40)), load: Some(WattHours(9_000)) },
        ];
        let f = Baseline.forecast(&s, &history, target);
        assert_eq!(f.load, WattHours(400));
        assert_eq!(f.pv, WattHours(40), "without a location, the last production");
        let f = Baseline.forecast(&s, &history[2..], target);
        assert_eq!(f.load, WattHours(9_000), "no same-slot history: recent average");
    }

    #[test]
    fn with_two_weeks_of_history_the_same_weekday_counts() {
        let s = site(None);
        // A Sunday evening: Sundays were busier than the weekdays in between.
        let target = period("2026-06-21T18:00:00Z");
        let mut history: Vec<PastPeriod> = (1..=14)
            .map(|d| PastPeriod { period: target.offset(-96 * d), pv: None, load: Some(WattHours(200)) })
            .collect();
        history[6].load = Some(WattHours(800)); // a week ago
        history[13].load = Some(WattHours(1_000)); // a week before that
        history.sort_by_key(|h| h.period);
        assert_eq!(Baseline.forecast(&s, &history, target).load, WattHours(900));
        // With one week only, one Sunday is not enough: the daily profile.
        let one_week: Vec<PastPeriod> =
            history.iter().copied().filter(|h| h.period >= target.offset(-96 * 7)).collect();
        assert_eq!(Baseline.forecast(&s, &one_week, target).load, WattHours((800 + 200 * 6) / 7));
    }
}
