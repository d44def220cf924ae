//! The normalised state of one device, and the vocabulary that maps device values into it.

use std::fmt;

use gridmesh_core::{Reading, StateOfCharge, Timestamp, WattHours, Watts};
use serde::{Deserialize, Serialize};

use crate::error::Problem;

/// Largest magnitude a value may reach after scaling: beyond 2^53 an `f64` no longer counts in
/// whole units, so a counter there would silently lose watt-hours.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

/// What one device last reported, in the units and signs of [`Reading`]. Every value is
/// optional: a field is `Some` once a message carried it and stays at its last good value until a
/// later message carries it again.
///
/// The same type is used for an *update*: the fields one message carried, all others `None`;
/// [`DeviceState::merge`] folds it into the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeviceState {
    /// Net power at the grid connection in W, import positive.
    pub grid_power_w: Option<i64>,
    /// PV production in W.
    pub pv_power_w: Option<i64>,
    /// Battery power in W, charging positive.
    pub battery_power_w: Option<i64>,
    /// Battery state of charge.
    pub battery_soc: Option<StateOfCharge>,
    /// Cumulative energy imported from the grid, Wh.
    pub grid_import_wh: Option<i64>,
    /// Cumulative energy exported to the grid, Wh.
    pub grid_export_wh: Option<i64>,
    /// Cumulative PV production, Wh.
    pub pv_energy_wh: Option<i64>,
    /// Cumulative energy charged into the battery, Wh.
    pub battery_charged_wh: Option<i64>,
    /// Cumulative energy discharged from the battery, Wh.
    pub battery_discharged_wh: Option<i64>,
}

impl DeviceState {
    /// Takes every field `update` carries; fields it does not carry keep their value.
    pub fn merge(&mut self, update: &Self) {
        fn take<T: Copy>(into: &mut Option<T>, from: Option<T>) {
            if from.is_some() {
                *into = from;
            }
        }
        take(&mut self.grid_power_w, update.grid_power_w);
        take(&mut self.pv_power_w, update.pv_power_w);
        take(&mut self.battery_power_w, update.battery_power_w);
        take(&mut self.battery_soc, update.battery_soc);
        take(&mut self.grid_import_wh, update.grid_import_wh);
        take(&mut self.grid_export_wh, update.grid_export_wh);
        take(&mut self.pv_energy_wh, update.pv_energy_wh);
        take(&mut self.battery_charged_wh, update.battery_charged_wh);
        take(&mut self.battery_discharged_wh, update.battery_discharged_wh);
    }

    /// True when no field is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The state as a reading taken at `at`.
    #[must_use]
    pub fn to_reading(&self, at: Timestamp) -> Reading {
        Reading {
            at,
            grid_power: self.grid_power_w.map(Watts),
            pv_power: self.pv_power_w.map(Watts),
            battery_power: self.battery_power_w.map(Watts),
            battery_soc: self.battery_soc,
            grid_import: self.grid_import_wh.map(WattHours),
            grid_export: self.grid_export_wh.map(WattHours),
            pv_energy: self.pv_energy_wh.map(WattHours),
            battery_charged: self.battery_charged_wh.map(WattHours),
            battery_discharged: self.battery_discharged_wh.map(WattHours),
        }
    }

    /// Negates every power value (the `invert_sign` quirk); counters are left alone.
    pub(crate) fn negate_power(&mut self) {
        for power in [&mut self.grid_power_w, &mut self.pv_power_w, &mut self.battery_power_w] {
            *power = power.map(|w| w.saturating_neg());
        }
    }

    /// Sets the field of `mapping` from `value` given in the mapping's unit.
    pub(crate) fn put(&mut self, mapping: Mapping, value: f64) -> Result<(), Problem> {
        self.set(mapping.field, mapping.to_base(value)?)
    }

    /// Sets `field` from a value in its base unit (W, Wh, basis points).
    pub(crate) fn set(&mut self, field: Field, base: i64) -> Result<(), Problem> {
        let slot = match field {
            Field::BatterySoc => {
                let soc = u16::try_from(base).ok().and_then(StateOfCharge::from_basis_points);
                #[expect(clippy::cast_precision_loss, reason = "only quoted in the error")]
                let value = base as f64 / 100.0;
                self.battery_soc = Some(soc.ok_or(Problem::OutOfRange { value, range: "0..=100 %" })?);
                return Ok(());
            }
            Field::GridPower => &mut self.grid_power_w,
            Field::PvPower => &mut self.pv_power_w,
            Field::BatteryPower => &mut self.battery_power_w,
            Field::GridImport => &mut self.grid_import_wh,
            Field::GridExport => &mut self.grid_export_wh,
            Field::PvEnergy => &mut self.pv_energy_wh,
            Field::BatteryCharged => &mut self.battery_charged_wh,
            Field::BatteryDischarged => &mut self.battery_discharged_wh,
        };
        *slot = Some(base);
        Ok(())
    }
}

/// A field of [`DeviceState`] that a device value is mapped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// Net grid power, import positive.
    GridPower,
    /// PV production power.
    PvPower,
    /// Battery power, charging positive.
    BatteryPower,
    /// Battery state of charge.
    BatterySoc,
    /// Grid import counter.
    GridImport,
    /// Grid export counter.
    GridExport,
    /// PV production counter.
    PvEnergy,
    /// Battery charge counter.
    BatteryCharged,
    /// Battery discharge counter.
    BatteryDischarged,
}

impl Field {
    /// The quantity the field holds.
    #[must_use]
    pub const fn quantity(self) -> Quantity {
        match self {
            Self::GridPower | Self::PvPower | Self::BatteryPower => Quantity::Power,
            Self::BatterySoc => Quantity::StateOfCharge,
            Self::GridImport
            | Self::GridExport
            | Self::PvEnergy
            | Self::BatteryCharged
            | Self::BatteryDischarged => Quantity::Energy,
        }
    }
}

/// The kind of physical quantity of a [`Field`] or a [`Unit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quantity {
    /// Power.
    Power,
    /// Cumulative energy.
    Energy,
    /// State of charge.
    StateOfCharge,
}

impl Quantity {
    /// The quantity in words, for messages.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Power => "power",
            Self::Energy => "energy",
            Self::StateOfCharge => "state of charge",
        }
    }
}

/// The unit a device reports a value in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Unit {
    /// Watts.
    #[serde(rename = "W")]
    Watt,
    /// Kilowatts.
    #[serde(rename = "kW")]
    Kilowatt,
    /// Watt-hours.
    #[serde(rename = "Wh")]
    WattHour,
    /// Kilowatt-hours.
    #[serde(rename = "kWh")]
    KilowattHour,
    /// Percent (state of charge).
    #[serde(rename = "%")]
    Percent,
}

impl Unit {
    /// The unit written as devices and Home Assistant write it (`W`, `kW`, `Wh`, `kWh`, `%`).
    #[must_use]
    pub fn from_symbol(symbol: &str) -> Option<Self> {
        match symbol {
            "W" => Some(Self::Watt),
            "kW" => Some(Self::Kilowatt),
            "Wh" => Some(Self::WattHour),
            "kWh" => Some(Self::KilowattHour),
            "%" => Some(Self::Percent),
            _ => None,
        }
    }

    /// The quantity this unit measures.
    #[must_use]
    pub const fn quantity(self) -> Quantity {
        match self {
            Self::Watt | Self::Kilowatt => Quantity::Power,
            Self::WattHour | Self::KilowattHour => Quantity::Energy,
            Self::Percent => Quantity::StateOfCharge,
        }
    }

    /// Factor to the base unit of the quantity: W, Wh, or basis points of charge.
    const fn factor(self) -> f64 {
        match self {
            Self::Watt | Self::WattHour => 1.0,
            Self::Kilowatt | Self::KilowattHour => 1_000.0,
            Self::Percent => 100.0,
        }
    }

    /// The symbol, as in [`Unit::from_symbol`].
    #[must_use]
    pub const fn symbol(self) -> &'static str {
        match self {
            Self::Watt => "W",
            Self::Kilowatt => "kW",
            Self::WattHour => "Wh",
            Self::KilowattHour => "kWh",
            Self::Percent => "%",
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

/// Where a device value goes and in which unit the device reports it. The unit always fits the
/// field's quantity (checked when the mapping is made or deserialized).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawMapping", into = "RawMapping")]
pub struct Mapping {
    field: Field,
    unit: Unit,
}

impl Mapping {
    /// A mapping of values in `unit` to `field`.
    ///
    /// # Errors
    /// When the unit measures another quantity than the field holds (kWh into a power field).
    pub fn new(field: Field, unit: Unit) -> Result<Self, MappingError> {
        if field.quantity() == unit.quantity() {
            Ok(Self { field, unit })
        } else {
            Err(MappingError { field, unit })
        }
    }

    /// A pairing fixed by a device format (Shelly's Wh counters, Tasmota's kWh `Total`).
    /// A unit that does not fit is a bug in this crate, caught by the family tests.
    pub(crate) fn fixed(field: Field, unit: Unit) -> Self {
        debug_assert_eq!(field.quantity(), unit.quantity(), "{field:?} in {unit}");
        Self { field, unit }
    }

    /// The target field.
    #[must_use]
    pub const fn field(self) -> Field {
        self.field
    }

    /// The unit the device reports in.
    #[must_use]
    pub const fn unit(self) -> Unit {
        self.unit
    }

    /// Converts `value` (in the mapping's unit) to the field's base unit: W, Wh or basis points.
    ///
    /// Rounding is to the nearest integer, halves away from zero (`0.0815 kWh` is 82 Wh before
    /// float error, `81.5 W` is 82 W, `-81.5 W` is -82 W).
    ///
    /// # Errors
    /// A value that is not finite, too large to count exactly, a negative energy counter, or a
    /// state of charge outside 0..=100 %.
    pub fn to_base(self, value: f64) -> Result<i64, Problem> {
        if !value.is_finite() {
            return Err(Problem::NotFinite);
        }
        let scaled = (value * self.unit.factor()).round();
        if scaled.abs() > MAX_EXACT {
            return Err(Problem::OutOfRange { value, range: "±2^53 base units" });
        }
        #[expect(clippy::cast_possible_truncation, reason = "checked to be integral and within ±2^53")]
        let base = scaled as i64;
        match self.field.quantity() {
            Quantity::Energy if base < 0 => Err(Problem::NegativeCounter(base)),
            Quantity::StateOfCharge if !(0..=10_000).contains(&base) => {
                Err(Problem::OutOfRange { value, range: "0..=100 %" })
            }
            _ => Ok(base),
        }
    }
}

/// A unit that does not fit the field it is mapped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unit {unit} measures {}, but field {field:?} holds {}", unit.quantity().name(), field.quantity().name())]
pub struct MappingError {
    /// The field.
    pub field: Field,
    /// The unit.
    pub unit: Unit,
}

/// A mapping as written in configuration, before its unit is checked against its field.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    field: Field,
    unit: Unit,
}

impl TryFrom<RawMapping> for Mapping {
    type Error = MappingError;

    fn try_from(raw: RawMapping) -> Result<Self, MappingError> {
        Self::new(raw.field, raw.unit)
    }
}

impl From<Mapping> for RawMapping {
    fn from(m: Mapping) -> Self {
        Self { field: m.field, unit: m.unit }
    }
}

/// What a device measures, for formats whose values do not say (a Tasmota plug's `ENERGY`, a
/// Home Assistant power sensor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The grid connection: power to `grid_power`, energy to the import or export counter.
    Grid,
    /// A PV inverter: power to `pv_power`, energy to `pv_energy`.
    Pv,
    /// A battery: power to `battery_power`, energy to the charge or discharge counter.
    Battery,
}

impl Role {
    /// The power field of this role.
    #[must_use]
    pub const fn power(self) -> Field {
        match self {
            Self::Grid => Field::GridPower,
            Self::Pv => Field::PvPower,
            Self::Battery => Field::BatteryPower,
        }
    }

    /// The energy field of this role for energy flowing in the role's positive direction: grid
    /// import, PV production, battery charge.
    #[must_use]
    pub const fn energy(self) -> Field {
        match self {
            Self::Grid => Field::GridImport,
            Self::Pv => Field::PvEnergy,
            Self::Battery => Field::BatteryCharged,
        }
    }

    /// The energy field for the other direction: grid export, battery discharge (a PV inverter
    /// has only production).
    #[must_use]
    pub const fn reverse_energy(self) -> Field {
        match self {
            Self::Grid => Field::GridExport,
            Self::Pv => Field::PvEnergy,
            Self::Battery => Field::BatteryDischarged,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn conversion_rounds_half_away_from_zero_and_checks_ranges() {
        let kwh = Mapping::new(Field::GridImport, Unit::KilowattHour).unwrap();
        assert_eq!(kwh.to_base(0.081).unwrap(), 81);
        assert_eq!(kwh.to_base(39_027.955_4).unwrap(), 39_027_955);
        assert_eq!(kwh.to_base(-0.1).unwrap_err(), Problem::NegativeCounter(-100));
        let w = Mapping::new(Field::GridPower, Unit::Watt).unwrap();
        assert_eq!(w.to_base(81.5).unwrap(), 82);
        assert_eq!(w.to_base(-81.5).unwrap(), -82);
        assert_eq!(w.to_base(f64::NAN).unwrap_err(), Problem::NotFinite);
        assert!(matches!(w.to_base(1e300).unwrap_err(), Problem::OutOfRange { .. }));
        let soc = Mapping::new(Field::BatterySoc, Unit::Percent).unwrap();
        assert_eq!(soc.to_base(55.55).unwrap(), 5_555);
        assert!(matches!(soc.to_base(100.01).unwrap_err(), Problem::OutOfRange { .. }));
        assert_eq!(
            Mapping::new(Field::GridPower, Unit::KilowattHour).unwrap_err().to_string(),
            "unit kWh measures energy, but field GridPower holds power"
        );
    }

    #[test]
    fn merge_takes_only_carried_fields() {
        let mut state = DeviceState { grid_power_w: Some(5), grid_import_wh: Some(10), ..Default::default() };
        state.merge(&DeviceState { grid_power_w: Some(-7), ..Default::default() });
        assert_eq!(
            state,
            DeviceState { grid_power_w: Some(-7), grid_import_wh: Some(10), ..Default::default() }
        );
        state.merge(&DeviceState::default());
        assert_eq!(state.grid_import_wh, Some(10));
    }
}
