//! Device configuration: what deserializes, and what is refused naming the field.
#![allow(clippy::unwrap_used, reason = "tests")]

use gridmesh_devices::{ConfigError, Device, DeviceConfig, Family, Field, Role, Unit};
use serde_json::json;

fn parse(config: serde_json::Value) -> Result<DeviceConfig, String> {
    serde_json::from_value(config).map_err(|e| e.to_string())
}

fn config_error(config: serde_json::Value) -> ConfigError {
    Device::new(parse(config).unwrap()).unwrap_err()
}

#[test]
fn every_family_deserializes() {
    let config = parse(json!({
        "name": "meter",
        "invert_sign": true,
        "family": { "tasmota": {
            "sensor_topic": "tele/meter/SENSOR",
            "energy": "grid",
            "sml": { "SML.Total_in": { "field": "grid_import", "unit": "kWh" } }
        } }
    }))
    .unwrap();
    assert!(config.invert_sign);
    let Family::Tasmota(tasmota) = &config.family else { panic!("{config:?}") };
    assert_eq!(tasmota.energy, Some(Role::Grid));
    let mapping = tasmota.sml["SML.Total_in"];
    assert_eq!((mapping.field(), mapping.unit()), (Field::GridImport, Unit::KilowattHour));
    // What serializes deserializes to the same.
    assert_eq!(parse(serde_json::to_value(&config).unwrap()).unwrap(), config);

    let ha = parse(json!({ "name": "x", "family": { "home_assistant": { "node_id": "n", "role": "pv" } } }))
        .unwrap();
    let Family::HomeAssistant(ha) = ha.family else { panic!() };
    assert_eq!(ha.discovery_prefix, "homeassistant");
    assert!(!parse(json!({ "name": "x", "family": { "shelly": { "prefix": "p" } } })).unwrap().invert_sign);
}

#[test]
fn serde_refuses_unknown_and_mismatched_fields_by_name() {
    let err =
        parse(json!({ "name": "x", "invert": true, "family": { "shelly": { "prefix": "p" } } })).unwrap_err();
    assert!(err.contains("unknown field `invert`"), "{err}");
    let err =
        parse(json!({ "name": "x", "family": { "shelly": { "prefix": "p", "topic": "q" } } })).unwrap_err();
    assert!(err.contains("unknown field `topic`"), "{err}");
    let err = parse(json!({ "name": "x", "family": { "modbus": {} } })).unwrap_err();
    assert!(err.contains("unknown variant `modbus`"), "{err}");
    let err = parse(json!({ "name": "x", "family": { "home_assistant": { "node_id": "n" } } })).unwrap_err();
    assert!(err.contains("missing field `role`"), "{err}");
    let err = parse(json!({ "name": "x", "family": { "dtu": { "base_topic": "solar/1", "values": {
        "0/power": { "field": "pv_power", "unit": "kWh" }
    } } } }))
    .unwrap_err();
    assert!(err.contains("unit kWh measures energy, but field PvPower holds power"), "{err}");
    let err = parse(json!({ "name": "x", "family": { "dtu": { "base_topic": "solar/1", "values": {
        "0/power": { "field": "pv_power", "unit": "MW" }
    } } } }))
    .unwrap_err();
    assert!(err.contains("unknown variant `MW`"), "{err}");
    let err = parse(json!({ "name": "x", "family": { "dtu": { "base_topic": "solar/1", "values": {
        "0/power": { "field": "pv_power", "unit": "W", "scale": 2 }
    } } } }))
    .unwrap_err();
    assert!(err.contains("unknown field `scale`"), "{err}");
}

#[test]
fn validation_names_the_field() {
    let err = config_error(
        json!({ "name": "m", "family": { "tasmota": { "sensor_topic": "", "energy": "grid" } } }),
    );
    assert_eq!(err.field, "family.tasmota.sensor_topic");
    assert_eq!(err.to_string(), r#"device "m": `family.tasmota.sensor_topic`: must not be empty"#);
    let err =
        config_error(json!({ "name": "m", "family": { "tasmota": { "sensor_topic": "tele/m/SENSOR" } } }));
    assert_eq!(err.field, "family.tasmota");
    let err =
        config_error(json!({ "name": "m", "family": { "tasmota": { "sensor_topic": "tele/m/SENSOR", "sml": {
        "SML.": { "field": "grid_power", "unit": "W" }
    } } } }));
    assert_eq!(err.field, r#"family.tasmota.sml."SML.""#);
    let err = config_error(json!({ "name": "m", "family": { "shelly": { "prefix": "shelly/+" } } }));
    assert_eq!(err.field, "family.shelly.prefix");
    let err =
        config_error(json!({ "name": "m", "family": { "dtu": { "base_topic": "solar/1", "values": {} } } }));
    assert_eq!(err.field, "family.dtu.values");
    let err = config_error(json!({ "name": "m", "family": { "home_assistant": { "role": "grid" } } }));
    assert_eq!(err.field, "family.home_assistant");
    let err = config_error(
        json!({ "name": "m", "family": { "home_assistant": { "role": "grid", "node_id": "a/b" } } }),
    );
    assert_eq!(err.field, "family.home_assistant.node_id");
    let err = config_error(json!({ "name": " ", "family": { "shelly": { "prefix": "p" } } }));
    assert_eq!(err.field, "name");
}

#[test]
fn subscriptions_per_family() {
    let device = |config| Device::new(parse(config).unwrap()).unwrap();
    let shelly = device(json!({ "name": "s", "family": { "shelly": { "prefix": "shellypro3em-1" } } }));
    assert_eq!(
        shelly.subscriptions(),
        ["shellypro3em-1/events/rpc", "shellypro3em-1/status/em:0", "shellypro3em-1/status/emdata:0"]
    );
    let dtu = device(json!({ "name": "d", "family": { "dtu": { "base_topic": "solar/1", "values": {
        "0/power": { "field": "pv_power", "unit": "W" }
    } } } }));
    assert_eq!(dtu.subscriptions(), ["solar/1/0/power"]);
    let ha = device(json!({ "name": "h", "family": { "home_assistant": {
        "role": "grid", "fields": { "x": "grid_power" }
    } } }));
    assert_eq!(ha.subscriptions(), ["homeassistant/sensor/#"]);
}

#[test]
fn dtu_limit_commands_in_each_format() {
    let dtu = |format: &str| {
        let c = parse(json!({ "name": "hm", "family": { "dtu": {
            "base_topic": "solar/1141", "values": { "0/power": { "field": "pv_power", "unit": "W" } },
            "limit": { "topic": "solar/1141/cmd/limit_nonpersistent_absolute", "format": format, "rated_w": 800 }
        } } }))
        .unwrap();
        Device::new(c.clone()).unwrap();
        match c.family {
            Family::Dtu(d) => d.limit.unwrap(),
            _ => unreachable!("a dtu"),
        }
    };
    let watts = dtu("watts");
    assert_eq!(
        (watts.payload(350), watts.payload(-5), watts.payload(2_000)),
        ("350".into(), "0".into(), "800".into())
    );
    assert_eq!(watts.release_payload(), "800");
    let ahoy = dtu("watts_suffix");
    assert_eq!((ahoy.payload(350), ahoy.release_payload()), ("350W".into(), "800W".into()));
    let pct = dtu("percent");
    // Rounded down: never more than asked.
    assert_eq!(
        (pct.payload(350), pct.payload(799), pct.release_payload()),
        ("43".into(), "99".into(), "100".into())
    );
    assert!(
        parse(json!({ "name": "hm", "family": { "dtu": {
        "base_topic": "solar/1141", "values": { "0/power": { "field": "pv_power", "unit": "W" } },
        "limit": { "topic": "t", "format": "kilowatts", "rated_w": 800 } } } }))
        .unwrap_err()
        .contains("unknown variant `kilowatts`")
    );
    for (limit, field) in [
        (json!({ "topic": "a/#", "format": "watts", "rated_w": 800 }), "family.dtu.limit.topic"),
        (json!({ "topic": "a/b", "format": "watts", "rated_w": 0 }), "family.dtu.limit.rated_w"),
    ] {
        let err = config_error(json!({ "name": "hm", "family": { "dtu": {
            "base_topic": "solar/1141", "values": { "0/power": { "field": "pv_power", "unit": "W" } }, "limit": limit } } }));
        assert_eq!(err.field, field);
    }
}
