//! One simulated home as a SunSpec device: register maps per Modbus unit, refreshed from the
//! home's physics, and control writes (storage 124, inverter limit 123) that act on the home
//! until their revert timers run out.

use std::collections::BTreeMap;

use chrono::Duration;
use gridmesh_core::{Timestamp, Watts};
use gridmesh_sunspec::{Image, SUNS, SunSpecError, model};

use crate::home::Home;

/// Where the marker sits.
pub const BASE: u16 = 40_000;

/// Which SunSpec models the device speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Integer values with scale factors: 1, 103, 160, 123, 124, meter 203.
    IntScale,
    /// Floats and DER models: 1, 113, 701, 704, 802, meter 213.
    Float,
}

/// A write the device refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No such unit, or the registers are not all inside one model.
    IllegalAddress,
    /// The registers are not writable points.
    ReadOnly,
}

/// One unit's register map.
#[derive(Debug, Clone)]
struct UnitMap {
    regs: Vec<u16>,
    /// Model id → index of its ID register in `regs`.
    models: BTreeMap<u16, usize>,
}

impl UnitMap {
    fn new(images: Vec<Image>) -> Self {
        let mut regs = SUNS.to_vec();
        let mut models = BTreeMap::new();
        for m in images {
            models.insert(m.registers()[0], regs.len());
            regs.extend_from_slice(m.registers());
        }
        regs.extend_from_slice(&[0xFFFF, 0]);
        Self { regs, models }
    }

    fn point_at(&self, id: u16, name: &str) -> Option<(usize, usize)> {
        let start = *self.models.get(&id)?;
        let p = model(id)?.point(name)?;
        Some((start + usize::from(p.offset), usize::from(p.size)))
    }

    fn set(&mut self, id: u16, name: &str, words: &[u16]) {
        if let Some((at, size)) = self.point_at(id, name)
            && size == words.len()
        {
            self.regs[at..at + size].copy_from_slice(words);
        }
    }

    fn int(&mut self, id: u16, name: &str, v: i64) {
        if let Some((_, size)) = self.point_at(id, name) {
            let words: Vec<u16> = (0..size).rev().map(|k| (v >> (16 * k)) as u16).collect();
            self.set(id, name, &words);
        }
    }

    fn float(&mut self, id: u16, name: &str, v: f64) {
        let b = (v as f32).to_bits();
        self.set(id, name, &[(b >> 16) as u16, b as u16]);
    }

    fn get(&self, id: u16, name: &str) -> Option<i64> {
        let (at, size) = self.point_at(id, name)?;
        let raw = self.regs[at..at + size].iter().fold(0_i64, |a, w| (a << 16) | i64::from(*w));
        Some(if size == 1 { i64::from(raw as u16 as i16) } else { raw })
    }

    fn get_u16(&self, id: u16, name: &str) -> Option<u16> {
        let (at, _) = self.point_at(id, name)?;
        Some(self.regs[at])
    }
}

/// A simulated home behind a SunSpec Modbus interface.
#[derive(Debug, Clone)]
pub struct SimDevice {
    home: Home,
    profile: Profile,
    units: BTreeMap<u8, UnitMap>,
    meter_unit: u8,
    power_sf: i16,
    storage_revert: Option<Timestamp>,
    limit_revert: Option<Timestamp>,
}

fn image(id: u16, repeats: usize) -> Result<Image, SunSpecError> {
    Image::new(id, repeats)
}

impl SimDevice {
    /// A device for `home`: inverter, storage and controls on unit 1, the meter on
    /// `meter_unit` (1, or 200 as some vendors do).
    ///
    /// # Errors
    /// Only if a model map were missing (a build error).
    pub fn new(home: Home, profile: Profile, meter_unit: u8, serial: &str) -> Result<Self, SunSpecError> {
        let mut common = image(1, 0)?;
        common.set_text("Mn", "gridmesh")?.set_text("Md", "sim home")?.set_text("SN", serial)?;
        common.set_int("DA", None, 1)?;
        let (inverter, meter) = match profile {
            Profile::IntScale => (103, 203),
            Profile::Float => (113, 213),
        };
        let mut main = vec![common.clone(), image(inverter, 0)?];
        match profile {
            Profile::IntScale => {
                main.push(image(160, 2)?);
                main.push(image(123, 0)?);
                if home.battery.is_some() {
                    // Controls (124) and the battery's own model (802: power and state of
                    // charge), as hybrid inverters show them.
                    main.push(image(124, 0)?);
                    main.push(image(802, 0)?);
                }
            }
            Profile::Float => {
                main.push(image(701, 0)?);
                main.push(image(704, 0)?);
                if home.battery.is_some() {
                    main.push(image(802, 0)?);
                }
            }
        }
        let mut units = BTreeMap::new();
        if meter_unit == 1 {
            main.push(image(meter, 0)?);
            units.insert(1, UnitMap::new(main));
        } else {
            units.insert(1, UnitMap::new(main));
            units.insert(meter_unit, UnitMap::new(vec![common, image(meter, 0)?]));
        }
        let mut dev =
            Self { home, profile, units, meter_unit, power_sf: 0, storage_revert: None, limit_revert: None };
        dev.write_constants();
        Ok(dev)
    }

    fn write_constants(&mut self) {
        let battery = self.home.battery;
        let rated = self.home.rated_pv.get();
        if let Some(u) = self.units.get_mut(&1) {
            u.int(123, "WMaxLimPct_SF", 0);
            u.int(123, "WMaxLim_Ena", 0);
            if let Some(b) = battery {
                u.int(124, "WChaMax", b.max_charge.get());
                u.int(124, "WChaMax_SF", 0);
                u.int(124, "ChaState_SF", -1);
                u.int(124, "InOutWRte_SF", 0);
                u.int(124, "StorCtl_Mod", 0);
                u.int(802, "SoC_SF", -1);
                u.int(802, "W_SF", 0);
            }
            u.int(701, "W_SF", 0);
            u.int(160, "DCW_SF", 0);
            let _ = rated;
        }
    }

    /// The Modbus unit ids this device answers.
    pub fn units(&self) -> impl Iterator<Item = u8> + '_ {
        self.units.keys().copied()
    }

    /// Scales power values by 10^`sf` from the next refresh on (a device changing its scale
    /// factor at run time).
    pub fn set_power_scale(&mut self, sf: i16) {
        self.power_sf = sf;
    }

    /// The home's physics.
    #[must_use]
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// Advances the home to `now`, applies expired revert timers and refreshes the registers.
    pub fn tick(&mut self, now: Timestamp) {
        if self.storage_revert.is_some_and(|t| now >= t) {
            self.storage_revert = None;
            if let Some(u) = self.units.get_mut(&1) {
                u.int(124, "StorCtl_Mod", 0);
            }
        }
        if self.limit_revert.is_some_and(|t| now >= t) {
            self.limit_revert = None;
            if let Some(u) = self.units.get_mut(&1) {
                u.int(123, "WMaxLim_Ena", 0);
            }
        }
        let r = self.home.read(now);
        let scale = |w: i64| (w as f64 / 10_f64.powi(i32::from(self.power_sf))).round() as i64;
        let pv = r.pv_power.map_or(0, Watts::get);
        let grid = r.grid_power.map_or(0, Watts::get);
        let battery = r.battery_power.map(Watts::get);
        let soc_tenths = r.battery_soc.map(|s| i64::from(s.basis_points()) / 10);
        let (pv_wh, imp, exp) = (
            r.pv_energy.map_or(0, |w| w.get()),
            r.grid_import.map_or(0, |w| w.get()),
            r.grid_export.map_or(0, |w| w.get()),
        );
        let sf = i64::from(self.power_sf);
        let profile = self.profile;
        let meter_unit = self.meter_unit;
        if let Some(u) = self.units.get_mut(&1) {
            match profile {
                Profile::IntScale => {
                    u.int(103, "W", scale(pv));
                    u.int(103, "W_SF", sf);
                    u.int(103, "WH", pv_wh);
                    u.int(103, "WH_SF", 0);
                    u.int(124, "ChaState", soc_tenths.unwrap_or(0));
                    if let Some(b) = battery {
                        // SunSpec 802 counts discharging as positive.
                        u.int(802, "W", -b);
                        u.int(802, "SoC", soc_tenths.unwrap_or(0));
                    }
                }
                Profile::Float => {
                    u.float(113, "W", pv as f64);
                    u.float(113, "WH", pv_wh as f64);
                    u.int(701, "W", pv);
                    if let Some(b) = battery {
                        // SunSpec 802 counts discharging as positive.
                        u.int(802, "W", -b);
                    }
                    u.int(802, "SoC", soc_tenths.unwrap_or(0));
                }
            }
        }
        if let Some(u) = self.units.get_mut(&meter_unit) {
            match profile {
                Profile::IntScale => {
                    u.int(203, "W", scale(grid));
                    u.int(203, "W_SF", sf);
                    u.int(203, "TotWhImp", imp);
                    u.int(203, "TotWhExp", exp);
                    u.int(203, "TotWh_SF", 0);
                }
                Profile::Float => {
                    u.float(213, "W", grid as f64);
                    u.float(213, "TotWhImp", imp as f64);
                    u.float(213, "TotWhExp", exp as f64);
                }
            }
        }
    }

    /// Reads `count` registers at `address` of `unit`.
    ///
    /// # Errors
    /// An unknown unit or an address outside the map.
    pub fn read(&self, unit: u8, address: u16, count: u16) -> Result<Vec<u16>, Refusal> {
        let u = self.units.get(&unit).ok_or(Refusal::IllegalAddress)?;
        let start = usize::from(address.checked_sub(BASE).ok_or(Refusal::IllegalAddress)?);
        u.regs.get(start..start + usize::from(count)).map(<[u16]>::to_vec).ok_or(Refusal::IllegalAddress)
    }

    /// Writes registers at `address` of `unit` and applies the controls they change.
    ///
    /// # Errors
    /// Registers outside the map or not writable points of one model.
    pub fn write(&mut self, unit: u8, address: u16, words: &[u16], now: Timestamp) -> Result<(), Refusal> {
        let u = self.units.get_mut(&unit).ok_or(Refusal::IllegalAddress)?;
        let start = usize::from(address.checked_sub(BASE).ok_or(Refusal::IllegalAddress)?);
        let end = start + words.len();
        if end > u.regs.len() || words.is_empty() {
            return Err(Refusal::IllegalAddress);
        }
        // Every written register must belong to a writable point of one model.
        let (&id, &model_start) = u
            .models
            .iter()
            .filter(|(_, at)| **at <= start)
            .max_by_key(|(_, at)| **at)
            .ok_or(Refusal::IllegalAddress)?;
        let def = model(id).ok_or(Refusal::IllegalAddress)?;
        for r in start..end {
            let off = r - model_start;
            let ok = def.points.iter().any(|p| {
                p.writable
                    && usize::from(p.offset) <= off
                    && off < usize::from(p.offset) + usize::from(p.size)
            });
            if !ok {
                return Err(Refusal::ReadOnly);
            }
        }
        u.regs[start..end].copy_from_slice(words);
        match id {
            124 => self.apply_storage(now),
            123 => self.apply_limit(now),
            _ => {}
        }
        Ok(())
    }

    fn apply_storage(&mut self, now: Timestamp) {
        let Some(u) = self.units.get(&1) else { return };
        let Some(b) = self.home.battery else { return };
        let mode = u.get_u16(124, "StorCtl_Mod").unwrap_or(0);
        let pct = |name| u.get(124, name).filter(|v| (-100..=100).contains(v)).unwrap_or(0);
        let revert = u.get_u16(124, "InOutWRte_RvrtTms").filter(|s| *s != 0xFFFF && *s > 0);
        let max = b.max_charge.get();
        let watts = if mode & 1 != 0 {
            Some(max * pct("InWRte") / 100)
        } else if mode & 2 != 0 {
            Some(-b.max_discharge.get() * pct("OutWRte") / 100)
        } else {
            None
        };
        // Without a revert timer a command would hold for ever; the simulator caps it at an hour.
        let until = now + Duration::seconds(i64::from(revert.unwrap_or(3_600)));
        self.storage_revert = watts.map(|_| until);
        self.home.command_battery(watts.map(|w| (Watts(w), until)));
    }

    fn apply_limit(&mut self, now: Timestamp) {
        let Some(u) = self.units.get(&1) else { return };
        let enabled = u.get_u16(123, "WMaxLim_Ena") == Some(1);
        let pct = u.get(123, "WMaxLimPct").filter(|v| (0..=100).contains(v)).unwrap_or(100);
        let revert = u.get_u16(123, "WMaxLimPct_RvrtTms").filter(|s| *s != 0xFFFF && *s > 0);
        let until = now + Duration::seconds(i64::from(revert.unwrap_or(3_600)));
        let limit = enabled.then(|| Watts(self.home.rated_pv.get() * pct / 100));
        self.limit_revert = limit.map(|_| until);
        self.home.limit_pv(limit.map(|w| (w, until)));
    }
}
