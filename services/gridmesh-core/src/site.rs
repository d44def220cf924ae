//! A household site: its grid connection and the assets behind it.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{GridNodeId, SiteId, UserId, WattHours, Watts};

/// Why a site description was refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SiteError {
    /// A rating or limit that must not be negative was.
    #[error("{field} must not be negative, got {value}")]
    Negative {
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: i64,
    },
    /// A coordinate outside the globe.
    #[error("location {lat},{lon} is not a valid WGS84 coordinate (latitude -90..90, longitude -180..180)")]
    BadLocation {
        /// Latitude in degrees.
        lat: f64,
        /// Longitude in degrees.
        lon: f64,
    },
    /// The name is empty or too long.
    #[error("site name must be 1 to 200 characters, got {0}")]
    BadName(usize),
}

/// A WGS84 coordinate in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    /// Latitude, -90 to 90.
    pub lat: f64,
    /// Longitude, -180 to 180.
    pub lon: f64,
}

/// A stationary battery behind the meter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatterySpec {
    /// Usable capacity.
    pub capacity: WattHours,
    /// Highest charging power.
    pub max_charge: Watts,
    /// Highest discharging power (a positive number).
    pub max_discharge: Watts,
}

/// The limits of a site's connection to the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridConnection {
    /// Highest power the site may draw from the grid.
    pub import_limit: Watts,
    /// Highest power the site may feed into the grid (a positive number).
    pub export_limit: Watts,
}

/// A household's connection point, owned by one user and hanging off one feeder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    /// The site's id.
    pub id: SiteId,
    /// The account that owns the site.
    pub owner: UserId,
    /// The feeder the site is connected to.
    pub feeder: GridNodeId,
    /// A human name ("Maple St 12").
    pub name: String,
    /// Where the site is, when known (used for PV plausibility against neighbours).
    pub location: Option<GeoPoint>,
    /// Rated (nameplate AC) PV power; zero for a site without PV.
    pub rated_pv: Watts,
    /// The battery, if any.
    pub battery: Option<BatterySpec>,
    /// Connection limits.
    pub grid: GridConnection,
}

impl Site {
    /// Checks ratings, limits, location and name.
    ///
    /// # Errors
    /// The first problem found, naming the field.
    pub fn validate(&self) -> Result<(), SiteError> {
        let chars = self.name.chars().count();
        if !(1..=200).contains(&chars) {
            return Err(SiteError::BadName(chars));
        }
        let mut checks = vec![
            ("rated_pv", self.rated_pv.get()),
            ("grid.import_limit", self.grid.import_limit.get()),
            ("grid.export_limit", self.grid.export_limit.get()),
        ];
        if let Some(b) = self.battery {
            checks.extend([
                ("battery.capacity", b.capacity.get()),
                ("battery.max_charge", b.max_charge.get()),
                ("battery.max_discharge", b.max_discharge.get()),
            ]);
        }
        if let Some((field, value)) = checks.into_iter().find(|(_, v)| *v < 0) {
            return Err(SiteError::Negative { field, value });
        }
        if let Some(GeoPoint { lat, lon }) = self.location
            && !((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon))
        {
            return Err(SiteError::BadLocation { lat, lon });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        Site {
            id: SiteId::new_random(),
            owner: UserId::new_random(),
            feeder: GridNodeId::new_random(),
            name: "Maple St 12".into(),
            location: Some(GeoPoint { lat: 52.5, lon: 13.4 }),
            rated_pv: Watts(8_000),
            battery: Some(BatterySpec {
                capacity: WattHours(10_000),
                max_charge: Watts(5_000),
                max_discharge: Watts(5_000),
            }),
            grid: GridConnection { import_limit: Watts(17_000), export_limit: Watts(7_000) },
        }
    }

    #[test]
    fn a_sound_site_validates() {
        site().validate().unwrap();
    }

    #[test]
    fn nonsense_is_refused_with_the_field_named() {
        let mut s = site();
        s.battery = Some(BatterySpec { capacity: WattHours(-1), ..s.battery.unwrap() });
        assert_eq!(s.validate().unwrap_err().to_string(), "battery.capacity must not be negative, got -1");
        let mut s = site();
        s.location = Some(GeoPoint { lat: 91.0, lon: 0.0 });
        assert!(matches!(s.validate(), Err(SiteError::BadLocation { .. })));
        let mut s = site();
        s.name.clear();
        assert!(matches!(s.validate(), Err(SiteError::BadName(0))));
    }
}
