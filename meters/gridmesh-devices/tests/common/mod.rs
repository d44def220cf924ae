//! Fixtures and devices shared by the tests.
#![allow(clippy::unwrap_used, reason = "test helpers")]
#![allow(dead_code, reason = "each test binary uses a different part")]

use gridmesh_devices::{Device, DeviceConfig};
use serde_json::json;

/// A fixture's bytes from `tests/fixtures/`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A device from its configuration as JSON (the same shape as the agent's TOML).
pub fn device(config: serde_json::Value) -> Device {
    let config: DeviceConfig = serde_json::from_value(config).unwrap();
    Device::new(config).unwrap()
}

/// A Tasmota plug on a PV inverter, reading `ENERGY`.
pub fn tasmota_plug(prefix: &str) -> Device {
    device(json!({
        "name": "balcony plug",
        "family": { "tasmota": { "sensor_topic": format!("{prefix}tele/plug/SENSOR"), "energy": "pv" } }
    }))
}

/// A Tasmota SML reader at the grid connection.
pub fn tasmota_sml(prefix: &str) -> Device {
    device(json!({
        "name": "meter",
        "family": { "tasmota": {
            "sensor_topic": format!("{prefix}tele/meter/SENSOR"),
            "sml": {
                "SML.Total_in": { "field": "grid_import", "unit": "kWh" },
                "SML.Total_out": { "field": "grid_export", "unit": "kWh" },
                "SML.Power_curr": { "field": "grid_power", "unit": "W" }
            }
        } }
    }))
}

/// A Shelly Pro 3EM.
pub fn shelly(prefix: &str) -> Device {
    device(json!({
        "name": "pro3em",
        "family": { "shelly": { "prefix": format!("{prefix}shellypro3em-c8f09e1a2b3c") } }
    }))
}

/// An OpenDTU inverter.
pub fn dtu(prefix: &str) -> Device {
    device(json!({
        "name": "roof",
        "family": { "dtu": {
            "base_topic": format!("{prefix}solar/116491234567"),
            "values": {
                "0/power": { "field": "pv_power", "unit": "W" },
                "0/yieldtotal": { "field": "pv_energy", "unit": "kWh" }
            }
        } }
    }))
}

/// Home Assistant discovery of the house meter (grid) under `<prefix>homeassistant`.
pub fn ha_meter(prefix: &str) -> Device {
    device(json!({
        "name": "house meter",
        "family": { "home_assistant": {
            "discovery_prefix": format!("{prefix}homeassistant"),
            "node_id": "hausmeter",
            "role": "grid"
        } }
    }))
}

/// Home Assistant discovery of the OpenDTU inverter (PV).
pub fn ha_inverter(prefix: &str) -> Device {
    device(json!({
        "name": "garage inverter",
        "family": { "home_assistant": {
            "discovery_prefix": format!("{prefix}homeassistant"),
            "node_id": "116491234567",
            "role": "pv"
        } }
    }))
}
