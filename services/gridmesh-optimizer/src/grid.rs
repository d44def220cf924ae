//! From the grid's domain types to an optimizer [`Instance`], and from a [`Plan`] back to the
//! setpoints of one step: what the dispatch job does around the solver, as plain functions
//! over plain data (the job loads the rows and publishes the setpoints).
//!
//! Ids in the instance are the sites' and nodes' UUIDs as text. Power in the domain types is in
//! integer watts; the instance is in kW.

use std::collections::BTreeMap;

use chrono::DateTime;
use gridmesh_core::forecast::{Baseline, Forecaster, PastPeriod};
use gridmesh_core::{
    CommandId, GridNodeId, LimitWindow, Period, Reading, Setpoint, Site, SiteId, Timestamp, Topology, Watts,
};

use crate::{Battery, Instance, Plan, RequestKind, Tariff};

/// Default length of a dispatch step, seconds (the command line's default too).
pub const DEFAULT_STEP_SECONDS: u32 = 900;
/// Default steps in the horizon: a day of quarter hours.
pub const DEFAULT_STEPS: u32 = 96;
/// Default battery wear, minor units per kWh of throughput.
pub const DEFAULT_DEGRADATION: i64 = 2;
/// Default import tariff, minor units per kWh (the settlement's default import price).
pub const DEFAULT_IMPORT_PRICE: i64 = 30;
/// Default feed-in tariff, minor units per kWh (the settlement's default feed-in price).
pub const DEFAULT_FEED_IN_PRICE: i64 = 8;

/// How plans are made: the horizon, prices and battery limits the dispatch job plans with.
#[derive(Debug, Clone)]
pub struct PlanSettings {
    /// Length of a step.
    pub step: chrono::Duration,
    /// Steps in the horizon.
    pub steps: usize,
    /// Import price, minor units per kWh.
    pub import_price: f64,
    /// Feed-in price, minor units per kWh.
    pub feed_in_price: f64,
    /// Price of deviating from a market commitment, minor units per kWh.
    pub imbalance_price: f64,
    /// Battery wear, minor units per kWh of throughput.
    pub degradation_per_kwh: f64,
    /// Lowest state of charge the plan uses, percent of capacity.
    pub soc_min_pct: f64,
    /// Highest state of charge the plan uses, percent of capacity.
    pub soc_max_pct: f64,
    /// Charging efficiency.
    pub charge_efficiency: f64,
    /// Discharging efficiency.
    pub discharge_efficiency: f64,
    /// Price of exceeding a node limit or a site connection, minor units per kWh.
    pub violation_price: f64,
}

impl Default for PlanSettings {
    fn default() -> Self {
        Self {
            step: chrono::Duration::seconds(i64::from(DEFAULT_STEP_SECONDS)),
            steps: DEFAULT_STEPS as usize,
            import_price: DEFAULT_IMPORT_PRICE as f64,
            feed_in_price: DEFAULT_FEED_IN_PRICE as f64,
            imbalance_price: DEFAULT_IMPORT_PRICE as f64,
            degradation_per_kwh: DEFAULT_DEGRADATION as f64,
            soc_min_pct: 10.0,
            soc_max_pct: 95.0,
            charge_efficiency: 0.95,
            discharge_efficiency: 1.0,
            violation_price: 1_000.0,
        }
    }
}

impl PlanSettings {
    /// What a kWh left in a battery at the horizon's end is worth to the plan: halfway between
    /// what it earns exported and what it saves covering the home's own load later, less wear.
    /// Below the second, a battery still covers its home's load near the horizon's end; above
    /// the first, it does not empty itself into the grid just because the horizon ends there.
    #[must_use]
    pub fn terminal_value_per_kwh(&self) -> f64 {
        let mid = f64::midpoint(self.import_price, self.feed_in_price.min(self.import_price));
        (mid * self.discharge_efficiency - self.degradation_per_kwh).max(0.0)
    }

    /// A step's length in hours.
    #[must_use]
    pub fn step_hours(&self) -> f64 {
        self.step.num_milliseconds() as f64 / 3_600_000.0
    }
}

/// The start of the step `at` falls in (steps are aligned to the Unix epoch).
#[must_use]
pub fn step_start(at: Timestamp, step: chrono::Duration) -> Timestamp {
    let ms = step.num_milliseconds().max(1);
    let t = at.timestamp_millis();
    DateTime::from_timestamp_millis(t - t.rem_euclid(ms)).unwrap_or(at)
}

/// One site as the optimizer sees it.
#[derive(Debug, Clone)]
pub struct SiteState {
    /// The site.
    pub site: Site,
    /// Its 15-minute history, oldest first.
    pub history: Vec<PastPeriod>,
    /// Its latest reading.
    pub latest: Option<Reading>,
    /// Net export it committed to on the market, Wh per period.
    pub commitments: BTreeMap<Period, i64>,
}

/// A utility's request on a node's (or the whole area's) net power over a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlexRequest {
    /// Its id.
    pub id: uuid::Uuid,
    /// The node, or the whole area when `None`.
    pub node: Option<GridNodeId>,
    /// Target, cap or floor.
    pub kind: RequestKind,
    /// The power, W, import positive.
    pub power_w: i64,
    /// Window start.
    pub starts_at: Timestamp,
    /// Window end (exclusive).
    pub ends_at: Timestamp,
    /// Price of deviation, minor currency units per kWh.
    pub price_minor_per_kwh: i64,
}

/// Everything a plan is made from.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// Start of the first step.
    pub start: Timestamp,
    /// When the inputs were read (the latest readings' freshness is judged against it).
    pub now: Timestamp,
    /// The grid tree.
    pub topology: Topology,
    /// The sites, ordered by id.
    pub sites: Vec<SiteState>,
    /// Requests in force in the horizon.
    pub requests: Vec<FlexRequest>,
    /// Limit windows (seasonal, outage) overlapping the horizon.
    pub limit_windows: Vec<LimitWindow>,
}

/// A reading this recent is the first step's forecast (persistence beats a profile for the
/// next minutes).
const FRESH: chrono::Duration = chrono::Duration::minutes(2);

fn kw(w: i64) -> f64 {
    w as f64 / 1_000.0
}

/// The optimizer instance for `inputs` (site and node ids are their UUIDs).
#[must_use]
pub fn build_instance(inputs: &Inputs, settings: &PlanSettings) -> Instance {
    let steps = settings.steps;
    let hours = settings.step_hours();
    let step_at = |t: usize| inputs.start + settings.step * i32::try_from(t).unwrap_or(i32::MAX);
    let step_of = |t: Timestamp| -> usize {
        let ms = (t - inputs.start).num_milliseconds().max(0);
        let step_ms = settings.step.num_milliseconds().max(1);
        usize::try_from(ms / step_ms).unwrap_or(usize::MAX).min(steps)
    };
    // A window covers the steps it overlaps; the one starting last wins where they meet.
    let mut windows: Vec<&LimitWindow> = inputs.limit_windows.iter().collect();
    windows.sort_by_key(|w| w.from);
    let step_limits = |node: GridNodeId| -> Vec<crate::StepLimits> {
        windows
            .iter()
            .filter(|w| w.node == node)
            .filter_map(|w| {
                let from = step_of(w.from);
                let to = step_of(w.until - chrono::Duration::milliseconds(1)) + 1;
                (w.until > inputs.start && from < to.min(steps)).then(|| crate::StepLimits {
                    from_step: from,
                    to_step: to.min(steps),
                    import_limit_kw: w.import_limit.map(|l| kw(l.get())),
                    export_limit_kw: w.export_limit.map(|l| kw(l.get())),
                })
            })
            .collect()
    };
    let nodes = inputs
        .topology
        .top_down()
        .into_iter()
        .filter_map(|id| inputs.topology.node(id))
        .map(|n| crate::GridNode {
            id: n.id.0.to_string(),
            parent: n.parent.map(|p| p.0.to_string()),
            import_limit_kw: Some(kw(n.import_limit.get())),
            export_limit_kw: Some(kw(n.export_limit.get())),
            limit_windows: step_limits(n.id),
        })
        .collect();
    let sites = inputs
        .sites
        .iter()
        .filter_map(|s| {
            let node = inputs.topology.feeder_of(s.site.id)?;
            let mut pv_kw = Vec::with_capacity(steps);
            let mut load_kw = Vec::with_capacity(steps);
            for t in 0..steps {
                let f = Baseline.forecast(&s.site, &s.history, Period::containing(step_at(t)));
                // Energy in a 15-minute period, as average power.
                pv_kw.push((f.pv.get() as f64 * 4.0 / 1_000.0).max(0.0));
                load_kw.push((f.load.get() as f64 * 4.0 / 1_000.0).max(0.0));
            }
            let latest = s.latest.as_ref();
            if let Some(r) = latest.filter(|r| inputs.now - r.at <= FRESH)
                && let (Some(grid), Some(pv)) = (r.grid_power, r.pv_power)
                && steps > 0
            {
                let load = grid.get() + pv.get() - r.battery_power.map_or(0, Watts::get);
                pv_kw[0] = kw(pv.get().max(0));
                load_kw[0] = kw(load.max(0));
            }
            let battery = s.site.battery.filter(|b| b.capacity.get() > 0).map(|b| {
                let cap = b.capacity.get() as f64 / 1_000.0;
                let (lo, hi) = (cap * settings.soc_min_pct / 100.0, cap * settings.soc_max_pct / 100.0);
                let soc = latest.and_then(|r| r.battery_soc).map_or(0.5, |s| s.percent() / 100.0) * cap;
                Battery {
                    capacity_kwh: cap,
                    max_charge_kw: kw(b.max_charge.get()),
                    max_discharge_kw: kw(b.max_discharge.get()),
                    charge_efficiency: settings.charge_efficiency,
                    discharge_efficiency: settings.discharge_efficiency,
                    soc_min_kwh: lo,
                    soc_max_kwh: hi,
                    // Outside the plan's band (the device's own logic went further): start at
                    // its edge.
                    initial_soc_kwh: soc.clamp(lo, hi),
                    final_soc_min_kwh: None,
                    degradation_cost_per_kwh: settings.degradation_per_kwh,
                    terminal_value_per_kwh: settings.terminal_value_per_kwh(),
                }
            });
            let commitment_kw = (!s.commitments.is_empty()).then(|| {
                (0..steps)
                    .map(|t| {
                        s.commitments
                            .get(&Period::containing(step_at(t)))
                            .map(|wh| *wh as f64 * 4.0 / 1_000.0)
                    })
                    .collect()
            });
            Some(crate::Site {
                id: s.site.id.0.to_string(),
                node: node.0.to_string(),
                pv_kw,
                load_kw,
                import_limit_kw: kw(s.site.grid.import_limit.get()),
                export_limit_kw: kw(s.site.grid.export_limit.get()),
                battery,
                commitment_kw,
            })
        })
        .collect();
    let end = step_at(steps);
    let requests = inputs
        .requests
        .iter()
        .filter(|r| r.ends_at > inputs.start && r.starts_at < end)
        .filter_map(|r| {
            let from = step_of(r.starts_at);
            // A window ending inside a step still covers that step.
            let to = step_of(r.ends_at - chrono::Duration::milliseconds(1)) + 1;
            (from < to.min(steps)).then(|| crate::UtilityRequest {
                id: r.id.to_string(),
                node: r.node.map(|n| n.0.to_string()),
                kind: r.kind,
                kw: kw(r.power_w),
                from_step: from,
                to_step: to.min(steps),
                price_per_kw: r.price_minor_per_kwh as f64 * hours,
            })
        })
        .collect();
    Instance {
        step_minutes: u32::try_from(settings.step.num_minutes().max(1)).unwrap_or(15),
        steps,
        nodes,
        sites,
        tariff: Tariff {
            import_price: vec![settings.import_price; steps],
            feed_in_price: vec![settings.feed_in_price.min(settings.import_price); steps],
            imbalance_price: vec![settings.imbalance_price; steps],
        },
        requests,
        penalties: crate::Penalties {
            node_violation_per_kwh: settings.violation_price,
            site_overload_per_kwh: settings.violation_price,
            ..crate::Penalties::default()
        },
    }
}

/// The setpoints of step `t` of `plan` (sites with a battery or curtailment), each valid from
/// `from` to the end of the step plus a grace (half a step, at most a minute), with the grid
/// power the plan expects meanwhile.
#[must_use]
pub fn setpoints_for_step(
    plan: &Plan,
    instance: &Instance,
    start: Timestamp,
    step: chrono::Duration,
    t: usize,
    from: Timestamp,
) -> Vec<(Setpoint, i64)> {
    // Valid a little past the step's end, so that the device does not fall back to its own
    // logic for the moment between this step's end and the next setpoint's arrival; the next
    // setpoint replaces it.
    let grace = (step / 2).min(chrono::Duration::seconds(60));
    let until = start + step * i32::try_from(t + 1).unwrap_or(i32::MAX) + grace;
    let w = |kw: f64| Watts((kw * 1_000.0).round() as i64);
    plan.sites
        .iter()
        .zip(&instance.sites)
        .filter_map(|(p, s)| {
            let site = s.id.parse::<uuid::Uuid>().ok().map(SiteId)?;
            let (charge, discharge, curtail) =
                (*p.charge_kw.get(t)?, *p.discharge_kw.get(t)?, *p.curtail_kw.get(t)?);
            let battery = s.battery.as_ref().map(|_| w(charge - discharge));
            let pv = *s.pv_kw.get(t)?;
            let pv_limit = (curtail > 0.01).then(|| w((pv - curtail).max(0.0)));
            if battery.is_none() && pv_limit.is_none() {
                return None;
            }
            let planned = w(p.import_kw.get(t)? - p.export_kw.get(t)?).get();
            let sp = Setpoint {
                command: CommandId::new_random(),
                site,
                issued_at: from,
                valid_from: from,
                valid_until: until,
                // Past its window (or a minute after, were the clock off) the device is on its own.
                revert_after_secs: u32::try_from((until - from).num_seconds().max(1) + 60)
                    .unwrap_or(u32::MAX),
                battery_power: battery,
                pv_limit,
                import_limit: None,
                export_limit: None,
            };
            Some((sp, planned))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;
    use crate::RequestKind;
    use gridmesh_core::{
        BatterySpec, GridConnection, GridNode, GridNodeKind, Reading, StateOfCharge, UserId, WattHours,
    };

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn inputs(now: Timestamp, requests: Vec<FlexRequest>) -> (Inputs, PlanSettings) {
        let feeder = gridmesh_core::GridNodeId::from_bytes([1; 16]);
        let node = GridNode {
            id: feeder,
            kind: GridNodeKind::Feeder,
            parent: None,
            name: "f".into(),
            import_limit: Watts(30_000),
            export_limit: Watts(20_000),
        };
        let site = Site {
            id: SiteId::from_bytes([2; 16]),
            owner: UserId::from_bytes([3; 16]),
            feeder: Some(feeder),
            name: "home".into(),
            location: None,
            rated_pv: Watts(6_000),
            pv_orientation: None,
            battery: Some(BatterySpec {
                capacity: WattHours(10_000),
                max_charge: Watts(4_000),
                max_discharge: Watts(3_000),
            }),
            grid: GridConnection { import_limit: Watts(16_000), export_limit: Watts(6_000) },
        };
        let topology = Topology::new(vec![node], [(site.id, feeder)]).unwrap();
        let latest = Reading {
            at: now - chrono::Duration::seconds(10),
            grid_power: Some(Watts(1_500)),
            pv_power: Some(Watts(2_000)),
            battery_power: Some(Watts(500)),
            battery_soc: StateOfCharge::from_basis_points(8_000),
            ..Reading::default()
        };
        let settings = PlanSettings { steps: 8, ..PlanSettings::default() };
        let state =
            SiteState { site, history: Vec::new(), latest: Some(latest), commitments: BTreeMap::new() };
        let start = step_start(now, settings.step);
        (Inputs { start, now, topology, sites: vec![state], requests, limit_windows: Vec::new() }, settings)
    }

    #[test]
    fn steps_are_aligned_to_the_epoch() {
        let step = chrono::Duration::minutes(15);
        assert_eq!(step_start(at("2026-12-01T10:07:31Z"), step), at("2026-12-01T10:00:00Z"));
        assert_eq!(step_start(at("2026-12-01T10:15:00Z"), step), at("2026-12-01T10:15:00Z"));
        assert_eq!(
            step_start(at("2026-12-01T10:00:19Z"), chrono::Duration::seconds(20)),
            at("2026-12-01T10:00:00Z")
        );
    }

    #[test]
    fn the_instance_starts_from_the_latest_reading_and_maps_request_windows_to_steps() {
        let now = at("2026-12-01T10:07:00Z");
        let request = |from: &str, to: &str| FlexRequest {
            id: uuid::Uuid::from_bytes([9; 16]),
            node: Some(gridmesh_core::GridNodeId::from_bytes([1; 16])),
            kind: RequestKind::Cap,
            power_w: 2_500,
            starts_at: at(from),
            ends_at: at(to),
            price_minor_per_kwh: 400,
        };
        let (inputs, settings) = inputs(
            now,
            vec![
                request("2026-12-01T10:20:00Z", "2026-12-01T10:50:00Z"),
                request("2026-12-02T10:00:00Z", "2026-12-02T11:00:00Z"),
            ],
        );
        let inst = build_instance(&inputs, &settings);
        inst.validate().unwrap();
        let site = &inst.sites[0];
        // The first step is the latest reading: PV 2 kW, load = grid + PV − battery = 3 kW.
        assert!((site.pv_kw[0] - 2.0).abs() < 1e-9 && (site.load_kw[0] - 3.0).abs() < 1e-9, "{site:?}");
        let b = site.battery.as_ref().unwrap();
        assert!((b.initial_soc_kwh - 8.0).abs() < 1e-9 && (b.max_discharge_kw - 3.0).abs() < 1e-9);
        assert!((b.soc_min_kwh - 1.0).abs() < 1e-9 && (b.soc_max_kwh - 9.5).abs() < 1e-9);
        // 10:20 to 10:50 covers the steps starting 10:15, 10:30 and 10:45 (1 to 3); the request a
        // day later is outside the 2-hour horizon.
        assert_eq!(inst.requests.len(), 1);
        let r = &inst.requests[0];
        assert_eq!((r.from_step, r.to_step, r.kw), (1, 4, 2.5));
        assert!((r.price_per_kw - 100.0).abs() < 1e-9, "400 per kWh over a quarter hour");
        assert_eq!(inst.nodes[0].import_limit_kw, Some(30.0));
    }

    #[test]
    fn a_limit_window_replaces_the_node_limit_for_the_steps_it_covers() {
        let now = at("2026-12-01T10:07:00Z");
        let (mut inputs, settings) = inputs(now, Vec::new());
        let feeder = gridmesh_core::GridNodeId::from_bytes([1; 16]);
        // An outage limit of 5 kW from 10:20 to 10:40: steps from 10:15 and 10:30 (1 and 2).
        inputs.limit_windows = vec![LimitWindow {
            node: feeder,
            from: at("2026-12-01T10:20:00Z"),
            until: at("2026-12-01T10:40:00Z"),
            import_limit: Some(Watts(5_000)),
            export_limit: None,
        }];
        let inst = build_instance(&inputs, &settings);
        inst.validate().unwrap();
        let node = &inst.nodes[0];
        let imports: Vec<Option<f64>> = (0..4).map(|t| node.import_limit_at(t)).collect();
        assert_eq!(imports, [Some(30.0), Some(5.0), Some(5.0), Some(30.0)]);
        assert_eq!(node.export_limit_at(1), Some(20.0), "the export limit stays the node's own");
        // The plan keeps the feeder under the window's limit where its load allows.
        let plan = crate::ipm::solve(&inst, &crate::ipm::IpmOptions::default()).unwrap();
        let feeder_plan = &plan.nodes[0];
        assert!(feeder_plan.binding[1].is_some() || plan.sites[0].import_kw[1] <= 5.0 + 1e-3, "{plan:?}");
        // A window outside the horizon changes nothing.
        inputs.limit_windows[0].from = at("2026-12-03T00:00:00Z");
        inputs.limit_windows[0].until = at("2026-12-03T01:00:00Z");
        assert!(build_instance(&inputs, &settings).nodes[0].limit_windows.is_empty());
    }

    #[test]
    fn setpoints_carry_the_plan_step_and_revert_after_it() {
        let now = at("2026-12-01T10:07:00Z");
        let (inputs, settings) = inputs(now, Vec::new());
        let inst = build_instance(&inputs, &settings);
        let plan = crate::ipm::solve(&inst, &crate::ipm::IpmOptions::default()).unwrap();
        let sps = setpoints_for_step(&plan, &inst, inputs.start, settings.step, 0, now);
        assert_eq!(sps.len(), 1);
        let (sp, planned) = &sps[0];
        assert_eq!((sp.valid_from, sp.valid_until), (now, at("2026-12-01T10:16:00Z")));
        assert_eq!(sp.revert_after_secs, 9 * 60 + 60);
        let p = &plan.sites[0];
        let expected = ((p.charge_kw[0] - p.discharge_kw[0]) * 1_000.0).round() as i64;
        assert_eq!(sp.battery_power, Some(Watts(expected)));
        assert_eq!(*planned, ((p.import_kw[0] - p.export_kw[0]) * 1_000.0).round() as i64);
        sp.validate().unwrap();
    }
}
