//! The exact best schedule of one battery trading against known prices, by a forward dynamic
//! program over convex piecewise-linear value functions (the "slope trick").
//!
//! With one price per step for energy bought and sold, the cost of moving the state of charge
//! by `Δ` kWh in step `t` is convex and piecewise linear with two pieces: from the lowest `Δ`
//! (full discharge), first the cheaper of "discharge less" (slope `(π − w)·η_d`) and "charge
//! more" (slope `(π + w)/η_c`), then the other (`π` the price, `w` the wear cost per kWh).
//! The least cost of reaching state `s` after step `t` is then `F_t = clip(F_{t−1} □ g_t)`: an
//! infimal convolution, which for convex piecewise-linear functions merges their slope
//! sequences, clipped to the state-of-charge bounds. Each `F_t` is kept as its left end, its
//! value there and its segments sorted by slope; the schedule is read back from the last one.
//! Work and memory are O(T·k) for k ≤ 2T segments: instant for a day.
//!
//! It serves as an independent check of the LP on the one-battery case, and as a fast path for
//! a single home optimising against a tariff.

use serde::{Deserialize, Serialize};

use crate::instance::{Battery, InstanceError, validate_battery};

/// A battery's schedule and its cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Charging power per step, kW.
    pub charge_kw: Vec<f64>,
    /// Discharging power per step, kW.
    pub discharge_kw: Vec<f64>,
    /// State of charge at the end of each step, kWh.
    pub soc_kwh: Vec<f64>,
    /// `Σ Δh·(π_t·(charge − discharge) + wear·(charge + discharge)) − value·soc_T`, currency
    /// units (`value` the battery's terminal value per kWh).
    pub cost: f64,
}

/// A convex piecewise-linear function on `[lo, lo + Σ len]`.
#[derive(Debug, Clone)]
struct Convex {
    lo: f64,
    value: f64,
    /// (slope, length), slopes increasing.
    segs: Vec<(f64, f64)>,
}

impl Convex {
    fn hi(&self) -> f64 {
        self.lo + self.segs.iter().map(|s| s.1).sum::<f64>()
    }

    /// Infimal convolution with `g`: the slope sequences merge.
    fn convolve(&self, g: &Convex) -> Convex {
        let mut segs = self.segs.clone();
        for &s in &g.segs {
            let at = segs.partition_point(|x| x.0 <= s.0);
            segs.insert(at, s);
        }
        Convex { lo: self.lo + g.lo, value: self.value + g.value, segs }
    }

    /// Restricts the domain to `[a, b]` (which must meet it).
    fn clip(&mut self, a: f64, b: f64) {
        let mut cut = a - self.lo;
        while cut > 0.0 && !self.segs.is_empty() {
            let (slope, len) = self.segs[0];
            let take = cut.min(len);
            self.value += slope * take;
            self.lo += take;
            cut -= take;
            if take >= len {
                self.segs.remove(0);
            } else {
                self.segs[0].1 -= take;
            }
        }
        self.lo = self.lo.max(a);
        let mut over = self.hi() - b;
        while over > 0.0 {
            let Some(last) = self.segs.last_mut() else { break };
            let take = over.min(last.1);
            last.1 -= take;
            over -= take;
            if last.1 <= 0.0 {
                self.segs.pop();
            }
        }
    }

    /// The lowest point (the leftmost if there are several) and the value there.
    fn argmin(&self) -> (f64, f64) {
        let (mut at, mut value) = (self.lo, self.value);
        for &(slope, len) in &self.segs {
            if slope >= 0.0 {
                break;
            }
            at += len;
            value += slope * len;
        }
        (at, value)
    }
}

/// The least-cost schedule of `battery` over `price_per_kwh.len()` steps of `step_hours`, buying
/// and selling at `price_per_kwh` (currency units per kWh, any sign) and paying its wear cost.
/// Charging and discharging in the same step is allowed, and chosen when prices are negative
/// enough to pay for burning energy.
///
/// # Errors
///
/// The battery's [`InstanceError`] if it is invalid for this horizon, or
/// [`InstanceError::NonFinite`] for a price that is not a finite number.
pub fn optimal_schedule(
    battery: &Battery,
    price_per_kwh: &[f64],
    step_hours: f64,
) -> Result<Schedule, InstanceError> {
    let steps = price_per_kwh.len();
    if !(step_hours.is_finite() && step_hours > 0.0) {
        return Err(InstanceError::BadHorizon(format!("step_hours must be positive, got {step_hours}")));
    }
    validate_battery("battery", "battery", battery, steps, step_hours)?;
    for (t, p) in price_per_kwh.iter().enumerate() {
        if !p.is_finite() {
            return Err(InstanceError::NonFinite { field: format!("price_per_kwh[{t}]") });
        }
    }
    let b = battery;
    let wear = b.degradation_cost_per_kwh;
    // Largest energy moved into / out of storage in one step.
    let up = step_hours * b.charge_efficiency * b.max_charge_kw;
    let down = step_hours * b.max_discharge_kw / b.discharge_efficiency;
    let target = b.soc_min_kwh.max(b.final_soc_min_kwh.unwrap_or(b.soc_min_kwh));

    // Per step: the transition cost g_t and the value function F_t after clipping.
    let mut moves = Vec::with_capacity(steps);
    let mut values: Vec<Convex> = Vec::with_capacity(steps);
    let mut f = Convex { lo: b.initial_soc_kwh, value: 0.0, segs: Vec::new() };
    for (t, &price) in price_per_kwh.iter().enumerate() {
        // From Δ = −down (full discharge, c = 0): "discharge less" and "charge more".
        let less = (price - wear) * b.discharge_efficiency;
        let more = (price + wear) / b.charge_efficiency;
        let mut segs = vec![(less, down), (more, up)];
        if more < less {
            segs.swap(0, 1);
        }
        segs.retain(|s| s.1 > 0.0);
        let g = Convex { lo: -down, value: step_hours * (wear - price) * b.max_discharge_kw, segs };
        let mut next = f.convolve(&g);
        let low = if t + 1 == steps { target } else { b.soc_min_kwh };
        next.clip(low, b.soc_max_kwh);
        moves.push(g);
        values.push(next.clone());
        f = next;
    }

    // Back from the best final state: split each state into the previous state and the move.
    let mut soc = vec![0.0; steps];
    let mut delta = vec![0.0; steps];
    // Energy left at the end is worth the terminal value: every slope drops by it.
    let worth = b.terminal_value_per_kwh;
    f.value -= worth * f.lo;
    for seg in &mut f.segs {
        seg.0 -= worth;
    }
    let (mut s, cost) = f.argmin();
    for t in (0..steps).rev() {
        soc[t] = s;
        let prev = if t == 0 {
            Convex { lo: b.initial_soc_kwh, value: 0.0, segs: Vec::new() }
        } else {
            values[t - 1].clone()
        };
        let g = &moves[t];
        // Walk the merged slope sequence up to s; the previous state's share is its part.
        let mut rest = s - (prev.lo + g.lo);
        let (mut from_prev, mut from_move) = (0.0, 0.0);
        let (mut i, mut j) = (0, 0);
        while rest > 0.0 && (i < prev.segs.len() || j < g.segs.len()) {
            let take_prev = j >= g.segs.len() || (i < prev.segs.len() && prev.segs[i].0 <= g.segs[j].0);
            if take_prev {
                let take = rest.min(prev.segs[i].1);
                from_prev += take;
                rest -= take;
                i += 1;
            } else {
                let take = rest.min(g.segs[j].1);
                from_move += take;
                rest -= take;
                j += 1;
            }
        }
        let previous = prev.lo + from_prev;
        delta[t] = g.lo + from_move;
        s = previous;
    }

    // Powers from each move, resources in g_t's order: from full discharge, first discharge
    // less (unless charging is cheaper), then charge more.
    let mut charge = vec![0.0; steps];
    let mut discharge = vec![0.0; steps];
    for t in 0..steps {
        let price = price_per_kwh[t];
        let less_first = (price - wear) * b.discharge_efficiency <= (price + wear) / b.charge_efficiency;
        let q = (delta[t] + down).max(0.0);
        let (less, more) = if less_first {
            let less = q.min(down);
            (less, q - less)
        } else {
            let more = q.min(up);
            (q - more, more)
        };
        charge[t] = (more / (step_hours * b.charge_efficiency)).clamp(0.0, b.max_charge_kw);
        discharge[t] =
            (b.max_discharge_kw - less * b.discharge_efficiency / step_hours).clamp(0.0, b.max_discharge_kw);
    }
    Ok(Schedule { charge_kw: charge, discharge_kw: discharge, soc_kwh: soc, cost })
}
