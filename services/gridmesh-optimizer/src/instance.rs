//! The optimizer's input: sites, the grid tree, tariffs, utility requests and penalties.
//!
//! All power is in kW (positive = import from the grid at sites and nodes), energy in kWh,
//! prices in currency units per kWh unless a field says otherwise. The JSON form is these types
//! through serde; `docs/optimizer.md` describes it field by field.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The longest horizon accepted, in steps (15 days of 15-minute steps). The structured solver
/// keeps a dense steps × steps matrix per constrained node, so the horizon is bounded.
pub const MAX_STEPS: usize = 1440;

/// One balancing problem over a horizon of equal steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    /// Length of one step in minutes (15 for the market's periods).
    pub step_minutes: u32,
    /// Number of steps in the horizon (96 = one day of 15-minute steps).
    pub steps: usize,
    /// The grid tree: feeders, transformers, the area root. Sites hang below nodes.
    pub nodes: Vec<GridNode>,
    /// The sites (households) with their forecasts and devices.
    pub sites: Vec<Site>,
    /// Energy prices per step, shared by all sites.
    pub tariff: Tariff,
    /// Flexibility asked for by the utility, soft and priced.
    #[serde(default)]
    pub requests: Vec<UtilityRequest>,
    /// Prices of the soft limits (violations and curtailment).
    #[serde(default)]
    pub penalties: Penalties,
}

/// A node of the grid tree (feeder, transformer, substation). Its flow is the net import of all
/// sites below it, in kW, positive towards the sites.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridNode {
    /// Unique id.
    pub id: String,
    /// The node above, `None` for a root. Several roots are allowed; the area is all of them.
    #[serde(default)]
    pub parent: Option<String>,
    /// Highest net import of the subtree, kW; `None` = unlimited.
    #[serde(default)]
    pub import_limit_kw: Option<f64>,
    /// Highest net export of the subtree, kW (a positive number); `None` = unlimited.
    #[serde(default)]
    pub export_limit_kw: Option<f64>,
    /// Limits for some steps (a seasonal or outage limit), replacing the node's own there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limit_windows: Vec<StepLimits>,
}

/// A node's limits from step `from_step` to step `to_step` (exclusive); a limit left `None`
/// keeps the node's own. When windows overlap, the last one listed wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepLimits {
    /// First step.
    pub from_step: usize,
    /// Step after the last.
    pub to_step: usize,
    /// Import limit meanwhile, kW.
    #[serde(default)]
    pub import_limit_kw: Option<f64>,
    /// Export limit meanwhile, kW.
    #[serde(default)]
    pub export_limit_kw: Option<f64>,
}

impl GridNode {
    fn window_at(&self, t: usize) -> Option<&StepLimits> {
        self.limit_windows.iter().rev().find(|w| w.from_step <= t && t < w.to_step)
    }

    /// The import limit in force at step `t`.
    #[must_use]
    pub fn import_limit_at(&self, t: usize) -> Option<f64> {
        self.window_at(t).and_then(|w| w.import_limit_kw).or(self.import_limit_kw)
    }

    /// The export limit in force at step `t`.
    #[must_use]
    pub fn export_limit_at(&self, t: usize) -> Option<f64> {
        self.window_at(t).and_then(|w| w.export_limit_kw).or(self.export_limit_kw)
    }

    /// Whether any step has a limit.
    #[must_use]
    pub fn has_limits(&self) -> bool {
        self.import_limit_kw.is_some()
            || self.export_limit_kw.is_some()
            || self.limit_windows.iter().any(|w| w.import_limit_kw.is_some() || w.export_limit_kw.is_some())
    }
}

/// A household: forecasts, grid connection and an optional battery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// Unique id.
    pub id: String,
    /// The grid node the site is connected to.
    pub node: String,
    /// PV production forecast per step, kW (average over the step), ≥ 0.
    pub pv_kw: Vec<f64>,
    /// Consumption forecast per step, kW, ≥ 0.
    pub load_kw: Vec<f64>,
    /// Connection limit for import, kW. Exceeding it is allowed at the overload penalty and
    /// reported, so a load above it never makes the problem infeasible.
    pub import_limit_kw: f64,
    /// Connection limit for export, kW (hard: surplus PV can always be curtailed).
    pub export_limit_kw: f64,
    /// A stationary battery, if any.
    #[serde(default)]
    pub battery: Option<Battery>,
    /// Net export the site committed to on the energy market, kW per step; `null` steps are
    /// uncommitted. Deviations are priced at the tariff's imbalance price.
    #[serde(default)]
    pub commitment_kw: Option<Vec<Option<f64>>>,
}

/// A battery behind the site's meter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Battery {
    /// Usable capacity, kWh, > 0.
    pub capacity_kwh: f64,
    /// Highest charging power (AC side), kW, ≥ 0.
    pub max_charge_kw: f64,
    /// Highest discharging power (AC side), kW, ≥ 0.
    pub max_discharge_kw: f64,
    /// Share of the charged energy that is stored, in (0, 1].
    pub charge_efficiency: f64,
    /// Share of the stored energy withdrawn that reaches the AC side, in (0, 1].
    pub discharge_efficiency: f64,
    /// Lowest state of charge, kWh.
    pub soc_min_kwh: f64,
    /// Highest state of charge, kWh; `soc_min_kwh < soc_max_kwh ≤ capacity_kwh`.
    pub soc_max_kwh: f64,
    /// State of charge at the start of the horizon, kWh, within the bounds.
    pub initial_soc_kwh: f64,
    /// If set, the state of charge at the end of the horizon is at least this, kWh (hard; it must
    /// be reachable by charging at full power from the initial state).
    #[serde(default)]
    pub final_soc_min_kwh: Option<f64>,
    /// Wear cost per kWh of throughput, counted on charge and on discharge (AC side), ≥ 0.
    pub degradation_cost_per_kwh: f64,
    /// What a kWh still stored at the end of the horizon is worth, ≥ 0 (currency units per kWh;
    /// default 0). Without it a plan empties the battery before the horizon ends, since stored
    /// energy past the horizon counts for nothing; a rolling scheduler sets it to about what
    /// that energy saves later (the import price less the wear).
    #[serde(default)]
    pub terminal_value_per_kwh: f64,
}

/// Prices per step, currency units per kWh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tariff {
    /// Price of imported energy per step. May be negative.
    pub import_price: Vec<f64>,
    /// Price paid for exported energy per step; never above the import price of the step.
    pub feed_in_price: Vec<f64>,
    /// Price of each kWh of deviation from a market commitment per step, ≥ 0.
    pub imbalance_price: Vec<f64>,
}

/// What a utility request asks of a node's (or the area's) net import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// Net import should equal `kw`; deviations either way are priced.
    Target,
    /// Net import should be at most `kw`; the excess is priced.
    Cap,
    /// Net import should be at least `kw`; the shortfall is priced.
    Floor,
}

/// A utility's flexibility request on a node or the whole area over a window of steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UtilityRequest {
    /// Unique id.
    pub id: String,
    /// The node whose subtree's net import is meant; `None` = the whole area (all sites).
    #[serde(default)]
    pub node: Option<String>,
    /// Target, cap or floor.
    pub kind: RequestKind,
    /// The level, kW of net import (negative = export).
    pub kw: f64,
    /// First step of the window.
    pub from_step: usize,
    /// Step after the last of the window (exclusive); `from_step < to_step ≤ steps`.
    pub to_step: usize,
    /// Cost per kW of deviation in each step of the window (currency units per kW per step,
    /// not per kWh), ≥ 0.
    pub price_per_kw: f64,
}

/// Prices of soft limits, currency units per kWh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Penalties {
    /// Price of each kWh by which a node's flow exceeds its import or export limit.
    #[serde(default = "default_violation")]
    pub node_violation_per_kwh: f64,
    /// Price of each kWh a site imports above its connection's import limit (on top of the
    /// import price).
    #[serde(default = "default_violation")]
    pub site_overload_per_kwh: f64,
    /// Price of each kWh of curtailed PV; a small positive value keeps free surplus exported
    /// rather than curtailed when both cost the same.
    #[serde(default = "default_curtailment")]
    pub curtailment_per_kwh: f64,
}

fn default_violation() -> f64 {
    10.0
}

fn default_curtailment() -> f64 {
    0.001
}

impl Default for Penalties {
    fn default() -> Self {
        Self {
            node_violation_per_kwh: default_violation(),
            site_overload_per_kwh: default_violation(),
            curtailment_per_kwh: default_curtailment(),
        }
    }
}

/// Why an instance was refused, naming the item and the field.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum InstanceError {
    /// `steps` is 0, above [`MAX_STEPS`], or `step_minutes` is 0.
    #[error("horizon: {0}")]
    BadHorizon(String),
    /// A number is NaN or infinite.
    #[error("{field} is not a finite number")]
    NonFinite {
        /// Where, e.g. `sites["h1"].pv_kw[17]`.
        field: String,
    },
    /// A quantity that must not be negative is.
    #[error("{field} must not be negative, got {value}")]
    Negative {
        /// Where.
        field: String,
        /// The value given.
        value: f64,
    },
    /// A per-step series has the wrong length.
    #[error("{field} has {got} values, the horizon has {expected} steps")]
    HorizonLength {
        /// Where.
        field: String,
        /// `steps`.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// Two nodes, sites or requests share an id.
    #[error("{kind} id {id:?} appears twice")]
    DuplicateId {
        /// `node`, `site` or `request`.
        kind: &'static str,
        /// The id.
        id: String,
    },
    /// A node names a parent that is not a node.
    #[error("node {node:?} names unknown parent {parent:?}")]
    UnknownParent {
        /// The node.
        node: String,
        /// The missing parent.
        parent: String,
    },
    /// The parent links loop.
    #[error("node {0:?} is part of a cycle; nodes must form a tree")]
    Cycle(String),
    /// A site names a node that is not in the tree.
    #[error("site {site:?} is on unknown node {node:?}")]
    UnknownSiteNode {
        /// The site.
        site: String,
        /// The node it names.
        node: String,
    },
    /// A request names a node that is not in the tree.
    #[error("request {request:?} is on unknown node {node:?}")]
    UnknownRequestNode {
        /// The request.
        request: String,
        /// The node it names.
        node: String,
    },
    /// A request's window is empty or reaches past the horizon.
    #[error("request {request:?}: window {from_step}..{to_step} is empty or outside 0..{steps}")]
    BadWindow {
        /// The request.
        request: String,
        /// Its first step.
        from_step: usize,
        /// Its exclusive end.
        to_step: usize,
        /// The horizon.
        steps: usize,
    },
    /// A battery efficiency is outside (0, 1].
    #[error("site {site:?}: {field} must be in (0, 1], got {value}")]
    Efficiency {
        /// The site.
        site: String,
        /// `charge_efficiency` or `discharge_efficiency`.
        field: &'static str,
        /// The value.
        value: f64,
    },
    /// Battery capacity is zero.
    #[error("site {site:?}: battery capacity must be positive")]
    ZeroCapacity {
        /// The site.
        site: String,
    },
    /// The state-of-charge bounds do not satisfy `soc_min < soc_max ≤ capacity`.
    #[error("site {site:?}: SoC bounds {min}..{max} kWh do not fit 0 ≤ min < max ≤ capacity {capacity}")]
    SocBounds {
        /// The site.
        site: String,
        /// `soc_min_kwh`.
        min: f64,
        /// `soc_max_kwh`.
        max: f64,
        /// `capacity_kwh`.
        capacity: f64,
    },
    /// The initial state of charge is outside the bounds.
    #[error("site {site:?}: initial SoC {value} kWh outside {min}..{max}")]
    InitialSoc {
        /// The site.
        site: String,
        /// The initial state.
        value: f64,
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
    },
    /// The final state-of-charge target is above the upper bound or not reachable by charging at
    /// full power from the initial state.
    #[error("site {site:?}: final SoC target {target} kWh cannot be met (at most {reachable} kWh)")]
    FinalSoc {
        /// The site.
        site: String,
        /// The target.
        target: f64,
        /// The highest state of charge reachable at the end.
        reachable: f64,
    },
    /// The feed-in price is above the import price: a site could buy and resell the same kWh.
    #[error("step {step}: feed-in price {feed_in} is above import price {import}")]
    FeedInAboveImport {
        /// The step.
        step: usize,
        /// Import price.
        import: f64,
        /// Feed-in price.
        feed_in: f64,
    },
}

impl Instance {
    /// Length of a step in hours.
    #[must_use]
    pub fn step_hours(&self) -> f64 {
        f64::from(self.step_minutes) / 60.0
    }

    /// Checks everything the solvers rely on. A valid instance always has an optimal plan (every
    /// soft goal carries priced slack).
    ///
    /// # Errors
    ///
    /// The first problem found, naming the item and field.
    pub fn validate(&self) -> Result<(), InstanceError> {
        let t = self.steps;
        if self.step_minutes == 0 {
            return Err(InstanceError::BadHorizon("step_minutes must be positive".into()));
        }
        if t == 0 || t > MAX_STEPS {
            return Err(InstanceError::BadHorizon(format!("steps must be 1 to {MAX_STEPS}, got {t}")));
        }

        self.validate_tariff()?;
        self.validate_penalties()?;
        let node_ids = self.validate_nodes()?;
        let mut site_ids = HashSet::new();
        for site in &self.sites {
            if !site_ids.insert(site.id.as_str()) {
                return Err(InstanceError::DuplicateId { kind: "site", id: site.id.clone() });
            }
            self.validate_site(site, &node_ids)?;
        }
        let mut request_ids = HashSet::new();
        for r in &self.requests {
            if !request_ids.insert(r.id.as_str()) {
                return Err(InstanceError::DuplicateId { kind: "request", id: r.id.clone() });
            }
            let field = |f: &str| format!("requests[{:?}].{f}", r.id);
            finite(r.kw, || field("kw"))?;
            non_negative(r.price_per_kw, || field("price_per_kw"))?;
            if let Some(node) = &r.node
                && !node_ids.contains(node.as_str())
            {
                return Err(InstanceError::UnknownRequestNode { request: r.id.clone(), node: node.clone() });
            }
            if r.from_step >= r.to_step || r.to_step > t {
                return Err(InstanceError::BadWindow {
                    request: r.id.clone(),
                    from_step: r.from_step,
                    to_step: r.to_step,
                    steps: t,
                });
            }
        }
        Ok(())
    }

    fn validate_tariff(&self) -> Result<(), InstanceError> {
        let tf = &self.tariff;
        series(&tf.import_price, self.steps, "tariff.import_price", false)?;
        series(&tf.feed_in_price, self.steps, "tariff.feed_in_price", false)?;
        series(&tf.imbalance_price, self.steps, "tariff.imbalance_price", true)?;
        for (step, (&import, &feed_in)) in tf.import_price.iter().zip(&tf.feed_in_price).enumerate() {
            if feed_in > import {
                return Err(InstanceError::FeedInAboveImport { step, import, feed_in });
            }
        }
        Ok(())
    }

    fn validate_penalties(&self) -> Result<(), InstanceError> {
        let p = &self.penalties;
        non_negative(p.node_violation_per_kwh, || "penalties.node_violation_per_kwh".into())?;
        non_negative(p.site_overload_per_kwh, || "penalties.site_overload_per_kwh".into())?;
        non_negative(p.curtailment_per_kwh, || "penalties.curtailment_per_kwh".into())
    }

    fn validate_nodes(&self) -> Result<HashSet<&str>, InstanceError> {
        let mut ids = HashSet::new();
        for n in &self.nodes {
            if !ids.insert(n.id.as_str()) {
                return Err(InstanceError::DuplicateId { kind: "node", id: n.id.clone() });
            }
            if let Some(v) = n.import_limit_kw {
                non_negative(v, || format!("nodes[{:?}].import_limit_kw", n.id))?;
            }
            if let Some(v) = n.export_limit_kw {
                non_negative(v, || format!("nodes[{:?}].export_limit_kw", n.id))?;
            }
            for (i, w) in n.limit_windows.iter().enumerate() {
                let field = |f: &str| format!("nodes[{:?}].limit_windows[{i}].{f}", n.id);
                if w.from_step >= w.to_step || w.to_step > self.steps {
                    return Err(InstanceError::BadHorizon(format!(
                        "{}: steps {}..{} must be a non-empty range within the {} steps",
                        field("from_step"),
                        w.from_step,
                        w.to_step,
                        self.steps
                    )));
                }
                for (name, v) in
                    [("import_limit_kw", w.import_limit_kw), ("export_limit_kw", w.export_limit_kw)]
                {
                    if let Some(v) = v {
                        non_negative(v, || field(name))?;
                    }
                }
            }
        }
        let parent: HashMap<&str, Option<&str>> =
            self.nodes.iter().map(|n| (n.id.as_str(), n.parent.as_deref())).collect();
        for n in &self.nodes {
            if let Some(p) = &n.parent
                && !ids.contains(p.as_str())
            {
                return Err(InstanceError::UnknownParent { node: n.id.clone(), parent: p.clone() });
            }
        }
        // Walk up from each node; a path longer than the number of nodes loops.
        for n in &self.nodes {
            let mut at = n.id.as_str();
            let mut hops = 0;
            while let Some(Some(p)) = parent.get(at) {
                at = p;
                hops += 1;
                if hops > self.nodes.len() {
                    return Err(InstanceError::Cycle(n.id.clone()));
                }
            }
        }
        Ok(ids)
    }

    fn validate_site(&self, s: &Site, node_ids: &HashSet<&str>) -> Result<(), InstanceError> {
        let field = |f: &str| format!("sites[{:?}].{f}", s.id);
        if !node_ids.contains(s.node.as_str()) {
            return Err(InstanceError::UnknownSiteNode { site: s.id.clone(), node: s.node.clone() });
        }
        series(&s.pv_kw, self.steps, &field("pv_kw"), true)?;
        series(&s.load_kw, self.steps, &field("load_kw"), true)?;
        non_negative(s.import_limit_kw, || field("import_limit_kw"))?;
        non_negative(s.export_limit_kw, || field("export_limit_kw"))?;
        if let Some(c) = &s.commitment_kw {
            if c.len() != self.steps {
                return Err(InstanceError::HorizonLength {
                    field: field("commitment_kw"),
                    expected: self.steps,
                    got: c.len(),
                });
            }
            for (i, v) in c.iter().enumerate() {
                if let Some(v) = v {
                    finite(*v, || field(&format!("commitment_kw[{i}]")))?;
                }
            }
        }
        match &s.battery {
            Some(b) => validate_battery(&s.id, &field("battery"), b, self.steps, self.step_hours()),
            None => Ok(()),
        }
    }

    /// SHA-256 of the instance's canonical binary form (see `docs/optimizer.md`): equal for equal
    /// instances whatever the JSON formatting, different when any field differs. Stored with a
    /// plan, it says which input the plan answers.
    #[must_use]
    pub fn input_hash(&self) -> [u8; 32] {
        let mut h = Canon(Sha256::new());
        h.bytes(b"gridmesh-optimizer/instance/v1");
        h.u64(u64::from(self.step_minutes));
        h.len(self.steps);
        h.len(self.nodes.len());
        for n in &self.nodes {
            h.str(&n.id);
            h.opt_str(n.parent.as_deref());
            h.opt_f64(n.import_limit_kw);
            h.opt_f64(n.export_limit_kw);
            // Only when present, so instances without windows keep the hashes they had.
            if !n.limit_windows.is_empty() {
                h.bytes(b"limit_windows");
                h.len(n.limit_windows.len());
                for w in &n.limit_windows {
                    h.len(w.from_step);
                    h.len(w.to_step);
                    h.opt_f64(w.import_limit_kw);
                    h.opt_f64(w.export_limit_kw);
                }
            }
        }
        h.len(self.sites.len());
        for s in &self.sites {
            h.str(&s.id);
            h.str(&s.node);
            h.f64s(&s.pv_kw);
            h.f64s(&s.load_kw);
            h.f64(s.import_limit_kw);
            h.f64(s.export_limit_kw);
            match &s.battery {
                None => h.u8(0),
                Some(b) => {
                    h.u8(1);
                    for v in [
                        b.capacity_kwh,
                        b.max_charge_kw,
                        b.max_discharge_kw,
                        b.charge_efficiency,
                        b.discharge_efficiency,
                        b.soc_min_kwh,
                        b.soc_max_kwh,
                        b.initial_soc_kwh,
                    ] {
                        h.f64(v);
                    }
                    h.opt_f64(b.final_soc_min_kwh);
                    h.f64(b.degradation_cost_per_kwh);
                    h.f64(b.terminal_value_per_kwh);
                }
            }
            match &s.commitment_kw {
                None => h.u8(0),
                Some(c) => {
                    h.u8(1);
                    h.len(c.len());
                    for v in c {
                        h.opt_f64(*v);
                    }
                }
            }
        }
        h.f64s(&self.tariff.import_price);
        h.f64s(&self.tariff.feed_in_price);
        h.f64s(&self.tariff.imbalance_price);
        h.len(self.requests.len());
        for r in &self.requests {
            h.str(&r.id);
            h.opt_str(r.node.as_deref());
            h.u8(match r.kind {
                RequestKind::Target => 0,
                RequestKind::Cap => 1,
                RequestKind::Floor => 2,
            });
            h.f64(r.kw);
            h.len(r.from_step);
            h.len(r.to_step);
            h.f64(r.price_per_kw);
        }
        let p = &self.penalties;
        h.f64(p.node_violation_per_kwh);
        h.f64(p.site_overload_per_kwh);
        h.f64(p.curtailment_per_kwh);
        h.0.finalize().into()
    }
}

/// The canonical encoding fed to SHA-256: integers as u64 little-endian, lengths before
/// sequences and strings, strings as UTF-8, options as a 0/1 tag then the value, f64 as its IEEE
/// bits little-endian with -0.0 written as 0.0.
struct Canon(Sha256);

impl Canon {
    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.update(b);
    }
    fn u8(&mut self, v: u8) {
        self.0.update([v]);
    }
    fn u64(&mut self, v: u64) {
        self.0.update(v.to_le_bytes());
    }
    fn len(&mut self, v: usize) {
        self.u64(v as u64);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
    fn f64(&mut self, v: f64) {
        let v = if v == 0.0 { 0.0 } else { v };
        self.u64(v.to_bits());
    }
    fn opt_f64(&mut self, v: Option<f64>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.f64(v);
            }
        }
    }
    fn f64s(&mut self, v: &[f64]) {
        self.len(v.len());
        for &x in v {
            self.f64(x);
        }
    }
}

/// Checks a battery for a horizon of `steps` steps of `step_hours`; `site` names it in errors,
/// `field` is the path of the battery in the input.
pub(crate) fn validate_battery(
    site: &str,
    field: &str,
    b: &Battery,
    steps: usize,
    step_hours: f64,
) -> Result<(), InstanceError> {
    let bf = |f: &str| format!("{field}.{f}");
    for (name, v) in [
        ("capacity_kwh", b.capacity_kwh),
        ("max_charge_kw", b.max_charge_kw),
        ("max_discharge_kw", b.max_discharge_kw),
        ("soc_min_kwh", b.soc_min_kwh),
        ("soc_max_kwh", b.soc_max_kwh),
        ("initial_soc_kwh", b.initial_soc_kwh),
        ("degradation_cost_per_kwh", b.degradation_cost_per_kwh),
        ("terminal_value_per_kwh", b.terminal_value_per_kwh),
    ] {
        non_negative(v, || bf(name))?;
    }
    for (name, v) in
        [("charge_efficiency", b.charge_efficiency), ("discharge_efficiency", b.discharge_efficiency)]
    {
        finite(v, || bf(name))?;
        if !(v > 0.0 && v <= 1.0) {
            return Err(InstanceError::Efficiency { site: site.to_owned(), field: name, value: v });
        }
    }
    if b.capacity_kwh == 0.0 {
        return Err(InstanceError::ZeroCapacity { site: site.to_owned() });
    }
    if b.soc_min_kwh >= b.soc_max_kwh || b.soc_max_kwh > b.capacity_kwh {
        return Err(InstanceError::SocBounds {
            site: site.to_owned(),
            min: b.soc_min_kwh,
            max: b.soc_max_kwh,
            capacity: b.capacity_kwh,
        });
    }
    if b.initial_soc_kwh < b.soc_min_kwh || b.initial_soc_kwh > b.soc_max_kwh {
        return Err(InstanceError::InitialSoc {
            site: site.to_owned(),
            value: b.initial_soc_kwh,
            min: b.soc_min_kwh,
            max: b.soc_max_kwh,
        });
    }
    if let Some(target) = b.final_soc_min_kwh {
        finite(target, || bf("final_soc_min_kwh"))?;
        let reachable = (b.initial_soc_kwh
            + steps as f64 * step_hours * b.charge_efficiency * b.max_charge_kw)
            .min(b.soc_max_kwh);
        if target > reachable {
            return Err(InstanceError::FinalSoc { site: site.to_owned(), target, reachable });
        }
    }
    Ok(())
}

fn finite(v: f64, field: impl FnOnce() -> String) -> Result<(), InstanceError> {
    if v.is_finite() { Ok(()) } else { Err(InstanceError::NonFinite { field: field() }) }
}

fn non_negative(v: f64, field: impl FnOnce() -> String) -> Result<(), InstanceError> {
    if !v.is_finite() {
        return Err(InstanceError::NonFinite { field: field() });
    }
    if v < 0.0 {
        return Err(InstanceError::Negative { field: field(), value: v });
    }
    Ok(())
}

fn series(v: &[f64], steps: usize, field: &str, non_neg: bool) -> Result<(), InstanceError> {
    if v.len() != steps {
        return Err(InstanceError::HorizonLength { field: field.to_owned(), expected: steps, got: v.len() });
    }
    for (i, &x) in v.iter().enumerate() {
        let at = || format!("{field}[{i}]");
        if non_neg {
            non_negative(x, at)?;
        } else {
            finite(x, at)?;
        }
    }
    Ok(())
}
