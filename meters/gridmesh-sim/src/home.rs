//! A home's physics, IO-free: PV following the sun with passing clouds, a household load with
//! morning and evening peaks, a battery that soaks up surplus and covers deficits within its
//! limits, and a meter that sees what is left. Counters integrate exactly in milliwatt-hours.

use gridmesh_core::{BatterySpec, GeoPoint, Reading, StateOfCharge, Timestamp, WattHours, Watts};

/// A simulated home.
#[derive(Debug, Clone)]
pub struct Home {
    /// Rated PV power.
    pub rated_pv: Watts,
    /// Battery, if any.
    pub battery: Option<BatterySpec>,
    /// Where the home is.
    pub location: GeoPoint,
    /// Varies clouds and load between homes.
    pub seed: u64,
    soc_mwh: i64,
    last: Option<Timestamp>,
    import_mwh: i64,
    export_mwh: i64,
    pv_mwh: i64,
    charged_mwh: i64,
    discharged_mwh: i64,
    /// A commanded battery power (positive charging) until a deadline: a device control with
    /// its revert timer. Afterwards the battery is back on its own (self-consumption) logic.
    battery_command: Option<(i64, Timestamp)>,
    /// A PV limit in W until a deadline (curtailment), `None` for none.
    pv_limit: Option<(i64, Timestamp)>,
}

/// A smooth pseudo-random value in [0, 1) for a key and a time bucket.
fn noise(seed: u64, bucket: i64) -> f64 {
    let mut x = seed ^ (bucket as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1_u64 << 53) as f64
}

impl Home {
    /// A home with a half-charged battery and counters that start at a plausible history.
    #[must_use]
    pub fn new(rated_pv: Watts, battery: Option<BatterySpec>, location: GeoPoint, seed: u64) -> Self {
        Self {
            rated_pv,
            battery,
            location,
            seed,
            soc_mwh: battery.map_or(0, |b| b.capacity.get() * 500),
            last: None,
            import_mwh: 2_000_000_000 + (seed % 1_000) as i64 * 1_000_000,
            export_mwh: 1_000_000_000,
            pv_mwh: 3_000_000_000,
            charged_mwh: 500_000_000,
            discharged_mwh: 450_000_000,
            battery_command: None,
            pv_limit: None,
        }
    }

    fn pv_w(&self, at: Timestamp) -> i64 {
        let elevation = gridmesh_core::solar::elevation_deg(at, self.location);
        if elevation <= 0.0 {
            return 0;
        }
        let minute = at.timestamp().div_euclid(60);
        let clouds = 0.55
            + 0.45
                * (noise(self.seed ^ 0xC10D, minute / 5) * 0.5
                    + noise(self.seed ^ 0xC10D, minute / 5 + 1) * 0.5);
        (self.rated_pv.get() as f64 * 0.85 * elevation.to_radians().sin() * clouds) as i64
    }

    fn load_w(&self, at: Timestamp) -> i64 {
        use chrono::Timelike;
        let hour = f64::from(at.hour()) + f64::from(at.minute()) / 60.0;
        let peak = |centre: f64, width: f64| (-((hour - centre) / width).powi(2)).exp();
        let base = 250.0 + 900.0 * peak(7.5, 1.2) + 1_400.0 * peak(19.0, 2.0);
        (base * (0.8 + 0.4 * noise(self.seed ^ 0x10AD, at.timestamp() / 30))) as i64
    }

    /// Continues from a reading the home reported before (a restarted simulator): counters
    /// never run backwards and the battery keeps its charge.
    pub fn resume_from(&mut self, last: &Reading) {
        let at_least = |mine: &mut i64, wh: Option<WattHours>| {
            if let Some(wh) = wh {
                *mine = (*mine).max(wh.get() * 1000);
            }
        };
        at_least(&mut self.import_mwh, last.grid_import);
        at_least(&mut self.export_mwh, last.grid_export);
        at_least(&mut self.pv_mwh, last.pv_energy);
        at_least(&mut self.charged_mwh, last.battery_charged);
        at_least(&mut self.discharged_mwh, last.battery_discharged);
        if let (Some(b), Some(soc)) = (self.battery, last.battery_soc) {
            self.soc_mwh = b.capacity.get() * 1000 * i64::from(soc.basis_points()) / 10_000;
        }
    }

    /// Commands the battery to `watts` (positive charging) until `until`; `None` hands it back
    /// to its own logic at once. The power is held within the battery's limits.
    pub fn command_battery(&mut self, command: Option<(Watts, Timestamp)>) {
        self.battery_command = command.map(|(w, t)| (w.get(), t));
    }

    /// Limits PV output to `watts` until `until`; `None` lifts the limit.
    pub fn limit_pv(&mut self, limit: Option<(Watts, Timestamp)>) {
        self.pv_limit = limit.map(|(w, t)| (w.get(), t));
    }

    /// The commanded battery power still in force at `at`, if any.
    #[must_use]
    pub fn battery_command(&self, at: Timestamp) -> Option<Watts> {
        self.battery_command.filter(|(_, until)| at < *until).map(|(w, _)| Watts(w))
    }

    /// Advances the home to `at` and reads its meter, inverter and battery.
    pub fn read(&mut self, at: Timestamp) -> Reading {
        let dt_ms = self.last.map_or(0, |l| (at - l).num_milliseconds().clamp(0, 3_600_000));
        self.last = Some(at);
        let limit = self.pv_limit.filter(|(_, until)| at < *until).map(|(w, _)| w);
        let pv = limit.map_or(self.pv_w(at), |l| self.pv_w(at).min(l.max(0)));
        let load = self.load_w(at);
        let mut battery_w = 0;
        let command = self.battery_command(at).map(Watts::get);
        if let Some(b) = self.battery {
            let cap = b.capacity.get() * 1000;
            let surplus = pv - load;
            battery_w = if let Some(c) = command {
                // A command obeys the power limits and never over-fills or over-empties.
                if c > 0 && self.soc_mwh < cap {
                    c.min(b.max_charge.get())
                } else if c < 0 && self.soc_mwh > 0 {
                    c.max(-b.max_discharge.get())
                } else {
                    0
                }
            } else if surplus > 0 && self.soc_mwh < cap * 95 / 100 {
                surplus.min(b.max_charge.get())
            } else if surplus < 0 && self.soc_mwh > cap / 10 {
                surplus.max(-b.max_discharge.get())
            } else {
                0
            };
            // 95 % one-way efficiency on charging.
            let delta = if battery_w > 0 { battery_w * 95 / 100 } else { battery_w };
            self.soc_mwh = (self.soc_mwh + delta * dt_ms / 3_600).clamp(0, cap);
        }
        let grid = load - pv + battery_w;
        let e = |w: i64| w * dt_ms / 3_600;
        if grid > 0 {
            self.import_mwh += e(grid);
        } else {
            self.export_mwh += e(-grid);
        }
        self.pv_mwh += e(pv);
        if battery_w > 0 {
            self.charged_mwh += e(battery_w);
        } else {
            self.discharged_mwh += e(-battery_w);
        }
        let soc = self.battery.map(|b| {
            let bp = self.soc_mwh * 10_000 / (b.capacity.get() * 1000).max(1);
            StateOfCharge::from_basis_points(bp.clamp(0, 10_000) as u16).unwrap_or(StateOfCharge::EMPTY)
        });
        Reading {
            at,
            grid_power: Some(Watts(grid)),
            pv_power: Some(Watts(pv)),
            battery_power: self.battery.map(|_| Watts(battery_w)),
            battery_soc: soc,
            grid_import: Some(WattHours(self.import_mwh / 1000)),
            grid_export: Some(WattHours(self.export_mwh / 1000)),
            pv_energy: Some(WattHours(self.pv_mwh / 1000)),
            battery_charged: self.battery.map(|_| WattHours(self.charged_mwh / 1000)),
            battery_discharged: self.battery.map(|_| WattHours(self.discharged_mwh / 1000)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_at_home_balances_and_counters_only_grow() {
        let battery = BatterySpec {
            capacity: WattHours(10_000),
            max_charge: Watts(4_000),
            max_discharge: Watts(4_000),
        };
        let mut home = Home::new(Watts(8_000), Some(battery), GeoPoint { lat: 52.5, lon: 13.4 }, 7);
        let start: Timestamp = "2026-06-21T00:00:00Z".parse().unwrap();
        let mut prev: Option<Reading> = None;
        let mut max_pv = 0;
        for minute in 0..24 * 60 {
            let r = home.read(start + chrono::Duration::minutes(minute));
            max_pv = max_pv.max(r.pv_power.unwrap().get());
            assert!(r.pv_power.unwrap().get() <= 8_000);
            assert!(r.battery_power.unwrap().get().abs() <= 4_000);
            if let Some(p) = prev {
                assert!(
                    r.grid_import >= p.grid_import
                        && r.grid_export >= p.grid_export
                        && r.pv_energy >= p.pv_energy
                );
            }
            prev = Some(r);
        }
        assert!(max_pv > 3_000, "summer noon should produce, got {max_pv}");
        let night = home.read("2026-06-22T00:30:00Z".parse().unwrap());
        assert_eq!(night.pv_power, Some(Watts(0)));
    }
}
