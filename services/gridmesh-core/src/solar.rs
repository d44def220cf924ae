//! Where the sun is: enough astronomy to tell day from night at a site.
//!
//! The approximation (declination and equation of time from the day of the year) is within
//! about a degree of a full ephemeris, which is plenty for "is PV production possible now".

use crate::{GeoPoint, Timestamp};
use chrono::{Datelike, Timelike};

/// The sun's elevation above the horizon in degrees (negative below it) at `at` and `place`.
#[must_use]
pub fn elevation_deg(at: Timestamp, place: GeoPoint) -> f64 {
    let day = f64::from(at.ordinal());
    let hours = f64::from(at.hour()) + f64::from(at.minute()) / 60.0 + f64::from(at.second()) / 3600.0;
    let declination = 23.44_f64.to_radians() * (360.0 / 365.0 * (284.0 + day)).to_radians().sin();
    let b = (360.0 / 365.0 * (day - 81.0)).to_radians();
    let equation_of_time_min = 9.87 * (2.0 * b).sin() - 7.53 * b.cos() - 1.5 * b.sin();
    let solar_time = hours + place.lon / 15.0 + equation_of_time_min / 60.0;
    let hour_angle = (15.0 * (solar_time - 12.0)).to_radians();
    let lat = place.lat.to_radians();
    let sin_elevation = lat.sin() * declination.sin() + lat.cos() * declination.cos() * hour_angle.cos();
    sin_elevation.clamp(-1.0, 1.0).asin().to_degrees()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const BERLIN: GeoPoint = GeoPoint { lat: 52.52, lon: 13.40 };
    const SYDNEY: GeoPoint = GeoPoint { lat: -33.87, lon: 151.21 };

    #[test]
    fn noon_is_day_and_midnight_is_night() {
        // Solar noon in Berlin is about 11:05 UTC; in June the sun stands about 61° high.
        let june_noon = elevation_deg(at("2026-06-21T11:08:00Z"), BERLIN);
        assert!((59.0..62.0).contains(&june_noon), "{june_noon}");
        // In December about 14°.
        let dec_noon = elevation_deg(at("2026-12-21T11:05:00Z"), BERLIN);
        assert!((12.5..15.5).contains(&dec_noon), "{dec_noon}");
        assert!(elevation_deg(at("2026-06-21T23:00:00Z"), BERLIN) < -10.0);
        // Southern hemisphere: 02:00 UTC is midday in Sydney.
        assert!(elevation_deg(at("2026-12-21T02:00:00Z"), SYDNEY) > 70.0);
        assert!(elevation_deg(at("2026-12-21T14:00:00Z"), SYDNEY) < -10.0);
    }
}
