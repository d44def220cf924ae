//! Setpoints, safely: a command is checked (signed by the server, for this site, within its
//! validity window, well-formed), clamped to the device's rated limits, and turned into SunSpec
//! control writes that always carry a revert timer, so the device returns to its own autonomy
//! when the agent or the service goes silent. The answer says what was applied, or why not.
//!
//! The decisions and the register plan are plain functions; [`crate::run`] does the IO.

use gridmesh_core::{Setpoint, SetpointLimits, SiteId, Timestamp, Watts};
use gridmesh_sunspec::Block;
use gridmesh_wire::{SetpointOutcome, SetpointResult};

/// How far ahead of its window a setpoint is still taken (clocks differ a little).
pub const EARLY_TOLERANCE_SECS: i64 = 5;

/// One register write: model, point, raw words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The SunSpec model.
    pub model: u16,
    /// The point.
    pub point: &'static str,
    /// Its new registers.
    pub words: Vec<u16>,
}

/// What to do with a setpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Apply this (possibly clamped) setpoint.
    Apply {
        /// The values to apply.
        setpoint: Setpoint,
        /// True when clamping changed them.
        clamped: bool,
    },
    /// Answer without applying.
    Answer(SetpointOutcome, String),
}

/// Checks a received setpoint.
#[must_use]
pub fn decide(
    sp: &Setpoint,
    signed_by_server: bool,
    site: SiteId,
    now: Timestamp,
    limits: &SetpointLimits,
) -> Decision {
    if !signed_by_server {
        return Decision::Answer(SetpointOutcome::Refused, "not signed by the server's key".into());
    }
    if sp.site != site {
        return Decision::Answer(
            SetpointOutcome::Refused,
            format!("for site {}, this agent reports for {site}", sp.site),
        );
    }
    if let Err(e) = sp.validate() {
        return Decision::Answer(SetpointOutcome::Refused, e.to_string());
    }
    if now >= sp.valid_until {
        return Decision::Answer(SetpointOutcome::Expired, format!("its window ended at {}", sp.valid_until));
    }
    if sp.valid_from > now + chrono::Duration::seconds(EARLY_TOLERANCE_SECS) {
        return Decision::Answer(
            SetpointOutcome::Refused,
            format!("its window starts only at {}", sp.valid_from),
        );
    }
    let (setpoint, clamped) = sp.clamp_to(limits);
    Decision::Apply { setpoint, clamped }
}

fn number(blocks: &[Block], model: u16, point: &str) -> Option<f64> {
    blocks.iter().find(|b| b.id == model).and_then(|b| b.number(point))
}

fn raw_sf(blocks: &[Block], model: u16, point: &str) -> i32 {
    // Scale factors are read with their model; an absent one counts as 0.
    blocks
        .iter()
        .find(|b| b.id == model)
        .and_then(|b| b.scale_factors.get(point))
        .map_or(0, |v| i32::try_from(*v).unwrap_or(0))
}

/// The device's limits for clamping: rated charge and discharge power (124 `WChaMax`), PV
/// rating (123's base, taken from the inverter's nameplate when present, else `fallback_pv`).
#[must_use]
pub fn limits_from(blocks: &[Block], fallback: SetpointLimits) -> SetpointLimits {
    let w = |v: Option<f64>| v.filter(|x| *x > 0.0).map(|x| Watts(x.round() as i64));
    SetpointLimits {
        max_charge: w(number(blocks, 124, "WChaMax")).unwrap_or(fallback.max_charge),
        max_discharge: w(number(blocks, 124, "WChaMax")).unwrap_or(fallback.max_discharge),
        rated_pv: w(number(blocks, 120, "WRtg")).unwrap_or(fallback.rated_pv),
        ..fallback
    }
}

/// The control writes for a setpoint on a SunSpec device, given its freshly read models: storage
/// (124) for battery power, the inverter limit (123) for a PV limit; every write set carries
/// its revert timer (the setpoint's, cut at the end of its window). Import and export limits have no SunSpec control here and are refused.
///
/// # Errors
/// What the device cannot do, in words for the answer.
pub fn plan(
    sp: &Setpoint,
    blocks: &[Block],
    limits: &SetpointLimits,
    now: Timestamp,
) -> Result<Vec<Write>, String> {
    if sp.import_limit.is_some() || sp.export_limit.is_some() {
        return Err("import and export limits are not supported by this device's SunSpec controls".into());
    }
    let has = |m: u16| blocks.iter().any(|b| b.id == m);
    // The device hands control back at the revert timer or at the end of the window,
    // whichever comes first.
    let left = (sp.reverts_at(now) - now).num_seconds().max(1);
    let revert = u16::try_from(left).unwrap_or(u16::MAX);
    let mut writes = Vec::new();
    if let Some(p) = sp.battery_power {
        if !has(124) {
            return Err(
                "battery power needs SunSpec storage controls (model 124), which the device lacks".into()
            );
        }
        let sf = raw_sf(blocks, 124, "InOutWRte_SF");
        let max = if p.get() >= 0 { limits.max_charge.get() } else { limits.max_discharge.get() }.max(1);
        let pct = (p.get().abs() as f64 / max as f64 * 100.0).min(100.0);
        let word = (pct / 10_f64.powi(sf)).round() as i64 as u16;
        let (point, mode) = if p.get() >= 0 { ("InWRte", 1_u16) } else { ("OutWRte", 2_u16) };
        writes.push(Write { model: 124, point, words: vec![word] });
        writes.push(Write { model: 124, point: "InOutWRte_RvrtTms", words: vec![revert] });
        writes.push(Write {
            model: 124,
            point: "StorCtl_Mod",
            words: vec![if p.get() == 0 { 0 } else { mode }],
        });
    }
    if let Some(l) = sp.pv_limit {
        if !has(123) {
            return Err(
                "a PV limit needs SunSpec inverter controls (model 123), which the device lacks".into()
            );
        }
        let sf = raw_sf(blocks, 123, "WMaxLimPct_SF");
        let pct = (l.get() as f64 / limits.rated_pv.get().max(1) as f64 * 100.0).min(100.0);
        writes.push(Write {
            model: 123,
            point: "WMaxLimPct",
            words: vec![(pct / 10_f64.powi(sf)).round() as i64 as u16],
        });
        writes.push(Write { model: 123, point: "WMaxLimPct_RvrtTms", words: vec![revert] });
        writes.push(Write { model: 123, point: "WMaxLim_Ena", words: vec![1] });
    }
    Ok(writes)
}

/// The answer to send.
#[must_use]
pub fn answer(
    sp: &Setpoint,
    at: Timestamp,
    outcome: SetpointOutcome,
    applied: Option<&Setpoint>,
    reason: String,
) -> SetpointResult {
    let mut reason = reason;
    let mut cut = gridmesh_wire::REASON_MAX_BYTES.min(reason.len());
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    reason.truncate(cut);
    SetpointResult {
        command: sp.command,
        site: sp.site,
        at,
        outcome,
        battery_power: applied.and_then(|a| a.battery_power),
        pv_limit: applied.and_then(|a| a.pv_limit),
        import_limit: applied.and_then(|a| a.import_limit),
        export_limit: applied.and_then(|a| a.export_limit),
        reason,
    }
}
