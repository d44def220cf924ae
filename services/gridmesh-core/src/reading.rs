//! A normalised reading of a site: what the edge agent measures, whatever the device.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{Timestamp, WattHours, Watts};

/// Battery state of charge in basis points: 0 is empty, 10 000 is full (so 0.01 % steps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct StateOfCharge(u16);

impl StateOfCharge {
    /// Full charge.
    pub const FULL: Self = Self(10_000);
    /// Empty.
    pub const EMPTY: Self = Self(0);

    /// A state of charge from basis points; `None` above 10 000.
    #[must_use]
    pub const fn from_basis_points(bp: u16) -> Option<Self> {
        if bp <= 10_000 { Some(Self(bp)) } else { None }
    }

    /// The value in basis points (0..=10 000).
    #[must_use]
    pub const fn basis_points(self) -> u16 {
        self.0
    }

    /// The value in percent.
    #[must_use]
    pub fn percent(self) -> f64 {
        f64::from(self.0) / 100.0
    }
}

impl TryFrom<u16> for StateOfCharge {
    type Error = ReadingError;

    fn try_from(bp: u16) -> Result<Self, ReadingError> {
        Self::from_basis_points(bp).ok_or(ReadingError::SocOutOfRange(bp))
    }
}

impl From<StateOfCharge> for u16 {
    fn from(s: StateOfCharge) -> u16 {
        s.0
    }
}

/// Why a reading is not well formed (plausibility against ratings is ingest's job, not this).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReadingError {
    /// State of charge above 100 %.
    #[error("state of charge {0} basis points is above 10000 (100 %)")]
    SocOutOfRange(u16),
    /// A quantity that cannot be negative was.
    #[error("{field} must not be negative, got {value}")]
    Negative {
        /// The field.
        field: &'static str,
        /// Its value.
        value: i64,
    },
}

/// One instant's measurements at a site. Every quantity is optional: a site without a battery
/// reports no battery values, a plain meter no PV.
///
/// Signs: `grid_power` is positive when the site imports from the grid; `battery_power` is
/// positive when the battery charges; `pv_power` is production (an inverter in standby may
/// report a few watts below zero, which is a measurement, not an error). Energy fields are the
/// devices' cumulative counters, which only grow and are never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Reading {
    /// When the values were measured (UTC; the wire keeps millisecond precision).
    pub at: Timestamp,
    /// Net power at the grid connection, import positive.
    pub grid_power: Option<Watts>,
    /// PV production (may be slightly negative: standby consumption).
    pub pv_power: Option<Watts>,
    /// Battery power, charging positive.
    pub battery_power: Option<Watts>,
    /// Battery state of charge.
    pub battery_soc: Option<StateOfCharge>,
    /// Cumulative energy imported from the grid.
    pub grid_import: Option<WattHours>,
    /// Cumulative energy exported to the grid.
    pub grid_export: Option<WattHours>,
    /// Cumulative PV production.
    pub pv_energy: Option<WattHours>,
    /// Cumulative energy charged into the battery.
    pub battery_charged: Option<WattHours>,
    /// Cumulative energy discharged from the battery.
    pub battery_discharged: Option<WattHours>,
}

impl Reading {
    /// Checks signs: the energy counters are never negative. Whether a value is plausible
    /// (within ratings, counters not running backwards) is ingest's judgement, not a format rule.
    ///
    /// # Errors
    /// The first negative quantity, by name.
    pub fn validate(&self) -> Result<(), ReadingError> {
        let checks = [
            ("grid_import", self.grid_import.map(WattHours::get)),
            ("grid_export", self.grid_export.map(WattHours::get)),
            ("pv_energy", self.pv_energy.map(WattHours::get)),
            ("battery_charged", self.battery_charged.map(WattHours::get)),
            ("battery_discharged", self.battery_discharged.map(WattHours::get)),
        ];
        for (field, value) in checks {
            if let Some(value) = value
                && value < 0
            {
                return Err(ReadingError::Negative { field, value });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_of_charge_stays_within_100_percent() {
        assert_eq!(StateOfCharge::from_basis_points(5_050).unwrap().percent(), 50.5);
        assert!(StateOfCharge::from_basis_points(10_001).is_none());
        assert!(serde_json::from_str::<StateOfCharge>("10001").is_err());
        assert_eq!(serde_json::from_str::<StateOfCharge>("10000").unwrap(), StateOfCharge::FULL);
    }

    #[test]
    fn negative_counters_are_refused_but_standby_pv_is_not() {
        let ok =
            Reading { pv_power: Some(Watts(3_000)), grid_power: Some(Watts(-2_000)), ..Default::default() };
        ok.validate().unwrap();
        let bad = Reading { grid_export: Some(WattHours(-5)), ..ok };
        assert_eq!(bad.validate().unwrap_err().to_string(), "grid_export must not be negative, got -5");
    }
}
