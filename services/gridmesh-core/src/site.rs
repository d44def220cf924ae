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
    /// A PV orientation outside its range.
    #[error("{field} must be between 0 and {max} degrees, got {value}")]
    BadOrientation {
        /// `pv_orientation.azimuth_deg` or `pv_orientation.tilt_deg`.
        field: &'static str,
        /// The highest value allowed.
        max: i16,
        /// Its value.
        value: i16,
    },
}

/// Which way a PV array faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PvOrientation {
    /// Degrees clockwise from north, 0 to 359 (180 faces south).
    pub azimuth_deg: i16,
    /// Degrees from horizontal, 0 (flat) to 90 (a wall).
    pub tilt_deg: i16,
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

/// A household's connection point, owned by one user and hanging off one feeder once a utility
/// or an operator has assigned it (pending until then).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    /// The site's id.
    pub id: SiteId,
    /// The account that owns the site.
    pub owner: UserId,
    /// The feeder the site is connected to; `None` while the home is pending (its agent may
    /// report, but it is not planned, does not trade and does not settle).
    pub feeder: Option<GridNodeId>,
    /// A human name ("Maple St 12").
    pub name: String,
    /// Where the site is, when known (used for PV plausibility against neighbours).
    pub location: Option<GeoPoint>,
    /// Rated (nameplate AC) PV power; zero for a site without PV.
    pub rated_pv: Watts,
    /// The PV array's orientation, when the owner gave it.
    pub pv_orientation: Option<PvOrientation>,
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
        if let Some(o) = self.pv_orientation {
            for (field, max, value) in [
                ("pv_orientation.azimuth_deg", 359, o.azimuth_deg),
                ("pv_orientation.tilt_deg", 90, o.tilt_deg),
            ] {
                if !(0..=max).contains(&value) {
                    return Err(SiteError::BadOrientation { field, max, value });
                }
            }
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
            feeder: Some(GridNodeId::new_random()),
            name: "Maple St 12".into(),
            location: Some(GeoPoint { lat: 52.5, lon: 13.4 }),
            rated_pv: Watts(8_000),
            pv_orientation: Some(PvOrientation { azimuth_deg: 180, tilt_deg: 35 }),
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
        let mut s = site();
        s.pv_orientation = Some(PvOrientation { azimuth_deg: 360, tilt_deg: 30 });
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "pv_orientation.azimuth_deg must be between 0 and 359 degrees, got 360"
        );
        s.pv_orientation = Some(PvOrientation { azimuth_deg: 90, tilt_deg: -1 });
        assert!(matches!(
            s.validate(),
            Err(SiteError::BadOrientation { field: "pv_orientation.tilt_deg", .. })
        ));
    }
}
