//! From decoded models to a site's normalized reading: grid power positive when importing,
//! PV production, battery power positive when charging, state of charge, energy counters in
//! integer Wh.

use crate::decode::Block;

/// Vendor quirks, from the agent's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quirks {
    /// The meter reports export as positive power (and swaps its import/export counters).
    pub invert_meter: bool,
    /// The battery model reports charging as positive power (SunSpec 802 counts discharge as
    /// positive; some devices do the opposite).
    pub battery_charge_positive: bool,
    /// The device accepts one Modbus client at a time: every unit id of the device (inverter,
    /// meter, storage) goes over one shared connection with requests serialised. Read by the
    /// agent, not by decoding.
    pub single_client: bool,
}

/// What a device's models say about the site. Absent where no model says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Readout {
    /// Grid power, W, positive when importing.
    pub grid_power_w: Option<i64>,
    /// PV (inverter AC) power, W.
    pub pv_power_w: Option<i64>,
    /// Battery power, W, positive when charging.
    pub battery_power_w: Option<i64>,
    /// State of charge, basis points (0 to 10 000).
    pub battery_soc_bp: Option<u16>,
    /// Energy imported from the grid, Wh.
    pub grid_import_wh: Option<i64>,
    /// Energy exported to the grid, Wh.
    pub grid_export_wh: Option<i64>,
    /// PV energy produced, Wh.
    pub pv_energy_wh: Option<i64>,
}

fn whole(v: Option<f64>) -> Option<i64> {
    v.filter(|x| x.is_finite() && x.abs() < 9.0e15).map(|x| x.round() as i64)
}

fn soc(v: Option<f64>) -> Option<u16> {
    v.filter(|x| x.is_finite() && (0.0..=100.0).contains(x)).map(|x| (x * 100.0).round() as u16)
}

/// Combines the decoded models of one or more devices (inverter, meter, storage) into one
/// readout: inverters (101 to 103, 111 to 113, else 701) give PV power and energy, meters (201
/// to 204, 211 to 214) grid power and counters, storage (124) or battery (802) the state of
/// charge, 802 the battery power.
#[must_use]
pub fn readout(blocks: &[Block], quirks: Quirks) -> Readout {
    let mut r = Readout::default();
    for b in blocks {
        match b.id {
            101..=103 | 111..=113 => {
                r.pv_power_w = r.pv_power_w.or(whole(b.number("W")));
                r.pv_energy_wh = r.pv_energy_wh.or(whole(b.number("WH")));
            }
            201..=204 | 211..=214 => {
                let sign = if quirks.invert_meter { -1 } else { 1 };
                r.grid_power_w = r.grid_power_w.or(whole(b.number("W")).map(|w| w * sign));
                let (imp, exp) = (whole(b.number("TotWhImp")), whole(b.number("TotWhExp")));
                let (imp, exp) = if quirks.invert_meter { (exp, imp) } else { (imp, exp) };
                r.grid_import_wh = r.grid_import_wh.or(imp);
                r.grid_export_wh = r.grid_export_wh.or(exp);
            }
            124 => r.battery_soc_bp = r.battery_soc_bp.or(soc(b.number("ChaState"))),
            802 => {
                r.battery_soc_bp = r.battery_soc_bp.or(soc(b.number("SoC")));
                let sign = if quirks.battery_charge_positive { 1 } else { -1 };
                r.battery_power_w = r.battery_power_w.or(whole(b.number("W")).map(|w| w * sign));
            }
            _ => {}
        }
    }
    if r.pv_power_w.is_none() {
        r.pv_power_w = blocks.iter().find(|b| b.id == 701).and_then(|b| whole(b.number("W")));
    }
    r
}
