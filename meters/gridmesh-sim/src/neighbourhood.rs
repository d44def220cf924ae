//! A neighbourhood file: the homes one `gridmesh-sim` process serves, each on its own port.
//! `gridmesh-loadgen agents` writes it for the homes it provisions, so the simulated devices
//! have the same PV rating and battery the service knows for each site.

use std::path::Path;

use gridmesh_core::{BatterySpec, GeoPoint, Watts};
use serde::{Deserialize, Serialize};

/// One simulated home.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeSpec {
    /// Modbus TCP port.
    pub port: u16,
    /// Serial number shown in the common model.
    pub serial: String,
    /// Rated PV power.
    pub rated_pv: Watts,
    /// The battery, if any.
    pub battery: Option<BatterySpec>,
    /// Where the home is (the sun's path).
    pub location: GeoPoint,
    /// Varies clouds and load between homes.
    pub seed: u64,
}

/// Why a neighbourhood file was refused.
#[derive(Debug, thiserror::Error)]
pub enum NeighbourhoodError {
    /// Unreadable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not the expected JSON.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said (with line and column).
        message: String,
    },
    /// A home that cannot be simulated.
    #[error("{path}: home {index}: {problem}")]
    Invalid {
        /// The file.
        path: String,
        /// Position in the list.
        index: usize,
        /// What is wrong.
        problem: String,
    },
}

/// Parses and checks a neighbourhood (a JSON list of [`HomeSpec`]); `path` only names it in
/// errors.
///
/// # Errors
/// Malformed JSON, a duplicate port, a negative rating or battery, a location off the globe.
pub fn parse(path: &str, text: &str) -> Result<Vec<HomeSpec>, NeighbourhoodError> {
    let homes: Vec<HomeSpec> = serde_json::from_str(text)
        .map_err(|e| NeighbourhoodError::Parse { path: path.into(), message: e.to_string() })?;
    let mut ports = std::collections::BTreeSet::new();
    for (index, h) in homes.iter().enumerate() {
        let invalid = |problem: String| NeighbourhoodError::Invalid { path: path.into(), index, problem };
        if !ports.insert(h.port) {
            return Err(invalid(format!("port {} is used twice", h.port)));
        }
        if h.rated_pv.get() < 0 {
            return Err(invalid(format!("rated_pv must not be negative, got {}", h.rated_pv.get())));
        }
        if let Some(b) = h.battery
            && (b.capacity.get() <= 0 || b.max_charge.get() <= 0 || b.max_discharge.get() <= 0)
        {
            return Err(invalid("battery capacity and power limits must be positive".into()));
        }
        if !(-90.0..=90.0).contains(&h.location.lat) || !(-180.0..=180.0).contains(&h.location.lon) {
            return Err(invalid(format!("location {:?} is off the globe", h.location)));
        }
        if h.serial.is_empty() || h.serial.len() > 32 {
            return Err(invalid("serial must be 1 to 32 characters".into()));
        }
    }
    Ok(homes)
}

/// Reads and checks a neighbourhood file.
///
/// # Errors
/// As [`parse`], or an unreadable file.
pub fn load(path: &Path) -> Result<Vec<HomeSpec>, NeighbourhoodError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|source| NeighbourhoodError::Read { path: name.clone(), source })?;
    parse(&name, &text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;

    const ONE: &str = r#"[{"port": 15020, "serial": "SIM-1", "rated_pv": 5000,
        "battery": {"capacity": 10000, "max_charge": 4000, "max_discharge": 4000},
        "location": {"lat": 52.5, "lon": 13.4}, "seed": 7}]"#;

    #[test]
    fn a_home_round_trips() {
        let homes = parse("n.json", ONE).unwrap();
        assert_eq!(homes.len(), 1);
        assert_eq!(homes[0].rated_pv, Watts(5_000));
        let again = parse("n.json", &serde_json::to_string(&homes).unwrap()).unwrap();
        assert_eq!(again, homes);
    }

    #[test]
    fn bad_files_name_the_problem() {
        let twice = format!("[{0}, {0}]", ONE.trim_start_matches('[').trim_end_matches(']'));
        let e = parse("n.json", &twice).unwrap_err().to_string();
        assert!(e.contains("home 1: port 15020 is used twice"), "{e}");
        let e = parse("n.json", &ONE.replace("5000", "-1")).unwrap_err().to_string();
        assert!(e.contains("rated_pv must not be negative"), "{e}");
        let e = parse("n.json", &ONE.replace("52.5", "152.5")).unwrap_err().to_string();
        assert!(e.contains("off the globe"), "{e}");
        let e = parse("n.json", &ONE.replace("\"seed\"", "\"sead\"")).unwrap_err().to_string();
        assert!(e.starts_with("n.json: unknown field `sead`"), "{e}");
        let e = parse("n.json", "{").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }
}
