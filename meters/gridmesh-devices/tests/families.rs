//! Each family read from the project's fixtures, and each malformed case refused without
//! touching the state.
#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use common::{device, dtu, fixture, ha_inverter, ha_meter, shelly, tasmota_plug, tasmota_sml};
use gridmesh_core::{StateOfCharge, Timestamp, WattHours, Watts};
use gridmesh_devices::{Applied, Device, DeviceState, Field, ParseError, Problem, Unit};
use serde_json::json;

/// Applies a message that must be accepted.
fn ok(device: &mut Device, topic: &str, payload: &[u8]) -> Applied {
    device.apply(topic, payload).unwrap_or_else(|e| panic!("{topic}: {e}"))
}

/// Applies a message that must be refused, checks the device did not change, returns the error.
fn refused(device: &mut Device, topic: &str, payload: &[u8]) -> ParseError {
    let before = device.clone();
    let err = device.apply(topic, payload).unwrap_err();
    assert_eq!(*device, before, "a refused message changed the device: {err}");
    err
}

// ---- Tasmota -------------------------------------------------------------------------------

#[test]
fn tasmota_energy_power_as_array_and_as_number() {
    let mut plug = tasmota_plug("");
    let topic = "tele/plug/SENSOR";
    let applied = ok(&mut plug, topic, &fixture("tasmota_energy.json"));
    // Power [215.4, 34.9] summed; Total 12.3456 kWh -> 12 346 Wh (nearest).
    let expected = DeviceState { pv_power_w: Some(250), pv_energy_wh: Some(12_346), ..Default::default() };
    assert_eq!(applied, Applied::Updated(expected));
    assert_eq!(*plug.state(), expected);

    ok(&mut plug, topic, &fixture("tasmota_energy_single.json"));
    assert_eq!(
        *plug.state(),
        DeviceState { pv_power_w: Some(187), pv_energy_wh: Some(12_351), ..Default::default() }
    );
}

#[test]
fn tasmota_energy_total_follows_the_configured_role() {
    let mut plug = device(json!({
        "name": "fridge", "family": { "tasmota": { "sensor_topic": "tele/fridge/SENSOR", "energy": "grid" } }
    }));
    ok(&mut plug, "tele/fridge/SENSOR", &fixture("tasmota_energy_single.json"));
    assert_eq!(
        *plug.state(),
        DeviceState { grid_power_w: Some(187), grid_import_wh: Some(12_351), ..Default::default() }
    );
}

#[test]
fn tasmota_sml_mapping() {
    let mut meter = tasmota_sml("");
    ok(&mut meter, "tele/meter/SENSOR", &fixture("tasmota_sml.json"));
    let expected = DeviceState {
        grid_power_w: Some(-1_312),
        grid_import_wh: Some(18_342_118),
        grid_export_wh: Some(4_410_290),
        ..Default::default()
    };
    assert_eq!(*meter.state(), expected);

    let at: Timestamp = serde_json::from_str(r#""2025-03-14T09:30:02Z""#).unwrap();
    let reading = meter.reading(at);
    assert_eq!(reading.at, at);
    assert_eq!(reading.grid_power, Some(Watts(-1_312)));
    assert_eq!(reading.grid_import, Some(WattHours(18_342_118)));
    assert_eq!(reading.grid_export, Some(WattHours(4_410_290)));
    assert_eq!(reading.pv_power, None);
    reading.validate().unwrap();
}

#[test]
fn tasmota_sml_three_phase_total_or_summed_phases() {
    let mut meter = tasmota_sml("");
    ok(&mut meter, "tele/meter/SENSOR", &fixture("tasmota_sml_3p.json"));
    assert_eq!(
        *meter.state(),
        DeviceState {
            grid_power_w: Some(-174),
            grid_import_wh: Some(7_731_402),
            grid_export_wh: Some(952_660),
            ..Default::default()
        }
    );

    // A meter script that gives only the phases: the three map to one field and add up.
    let mut phases = device(json!({
        "name": "meter", "family": { "tasmota": { "sensor_topic": "tele/meter/SENSOR", "sml": {
            "SML.power_l1": { "field": "grid_power", "unit": "W" },
            "SML.power_l2": { "field": "grid_power", "unit": "W" },
            "SML.power_l3": { "field": "grid_power", "unit": "W" },
            "SML.Total_in": { "field": "grid_import", "unit": "kWh" }
        } } }
    }));
    ok(&mut phases, "tele/meter/SENSOR", &fixture("tasmota_sml_3p.json"));
    assert_eq!(phases.state().grid_power_w, Some(-174));
    assert_eq!(phases.state().grid_import_wh, Some(7_731_402));
}

#[test]
fn tasmota_malformed_is_refused_and_keeps_the_state() {
    let mut meter = tasmota_sml("");
    let topic = "tele/meter/SENSOR";
    ok(&mut meter, topic, &fixture("tasmota_sml.json"));

    let err = refused(&mut meter, topic, b"{\"SML\":{\"Total_in\":");
    assert!(matches!(err.problem, Problem::NotJson(_)), "{err}");
    let err = refused(&mut meter, topic, br#"{"SML":{"Total_in":"12.5","Power_curr":5}}"#);
    assert_eq!(err.field.as_deref(), Some("SML.Total_in"));
    assert!(matches!(err.problem, Problem::WrongType { .. }));
    assert_eq!(
        err.to_string(),
        r#"tele/meter/SENSOR: field `SML.Total_in`: expected a number, found "12.5""#
    );
    let err = refused(&mut meter, topic, br#"{"SML":{"Total_out":-3.2}}"#);
    assert_eq!(err.problem, Problem::NegativeCounter(-3_200));
    let err = refused(&mut meter, topic, br#"{"Time":"2025-03-14T09:31:00","DS18B20":{"Temperature":21.3}}"#);
    assert!(matches!(err.problem, Problem::NothingMapped(ref f) if f.contains("SML.Total_in")), "{err}");
    let err = refused(&mut meter, topic, b"[1,2,3]");
    assert!(matches!(err.problem, Problem::WrongType { .. }));
    let err = refused(&mut meter, "tele/other/SENSOR", &fixture("tasmota_sml.json"));
    assert_eq!(err.problem, Problem::UnexpectedTopic);

    let mut plug = tasmota_plug("");
    ok(&mut plug, "tele/plug/SENSOR", &fixture("tasmota_energy.json"));
    let err = refused(&mut plug, "tele/plug/SENSOR", br#"{"ENERGY":{"Power":[1.5,"x"],"Total":1}}"#);
    assert_eq!(err.field.as_deref(), Some("ENERGY.Power"));
    let err = refused(&mut plug, "tele/plug/SENSOR", br#"{"ENERGY":{"Power":5,"Total":1e300}}"#);
    assert!(matches!(err.problem, Problem::OutOfRange { .. }), "{err}");
    let err = refused(&mut plug, "tele/plug/SENSOR", br#"{"ENERGY":17}"#);
    assert_eq!(err.field.as_deref(), Some("ENERGY"));
}

// ---- Shelly --------------------------------------------------------------------------------

const SHELLY: &str = "shellypro3em-c8f09e1a2b3c";

#[test]
fn shelly_status_topics() {
    let mut meter = shelly("");
    ok(&mut meter, &format!("{SHELLY}/status/em:0"), &fixture("shelly_pro3em_status_em.json"));
    ok(&mut meter, &format!("{SHELLY}/status/emdata:0"), &fixture("shelly_pro3em_status_emdata.json"));
    assert_eq!(
        *meter.state(),
        DeviceState {
            grid_power_w: Some(542),
            grid_import_wh: Some(1_941_640),
            grid_export_wh: Some(88_211),
            ..Default::default()
        }
    );
}

#[test]
fn shelly_partial_notifications_merge_without_zeroing() {
    let mut meter = shelly("");
    let rpc = format!("{SHELLY}/events/rpc");
    ok(&mut meter, &format!("{SHELLY}/status/emdata:0"), &fixture("shelly_pro3em_status_emdata.json"));
    ok(&mut meter, &rpc, &fixture("shelly_pro3em_notify.json"));
    let full = DeviceState {
        grid_power_w: Some(543),
        grid_import_wh: Some(1_941_640),
        grid_export_wh: Some(88_211),
        ..Default::default()
    };
    assert_eq!(*meter.state(), full);

    // A notification about another component changes nothing.
    assert_eq!(
        ok(&mut meter, &rpc, &fixture("shelly_partial_notify.json")),
        Applied::Updated(DeviceState::default())
    );
    assert_eq!(*meter.state(), full);

    // Only phase C and the export counter changed: the total is rebuilt from the phases last
    // seen (905.331 + 150.02 - 498.7), the import counter is kept.
    let applied = ok(&mut meter, &rpc, &fixture("shelly_partial_em_notify.json"));
    assert_eq!(
        applied,
        Applied::Updated(DeviceState {
            grid_power_w: Some(557),
            grid_export_wh: Some(88_214),
            ..Default::default()
        })
    );
    assert_eq!(*meter.state(), DeviceState { grid_power_w: Some(557), grid_export_wh: Some(88_214), ..full });
}

#[test]
fn shelly_phase_alone_without_known_phases_sets_no_power() {
    let mut meter = shelly("");
    ok(&mut meter, &format!("{SHELLY}/events/rpc"), &fixture("shelly_partial_em_notify.json"));
    assert_eq!(*meter.state(), DeviceState { grid_export_wh: Some(88_214), ..Default::default() });
}

#[test]
fn shelly_invert_sign_negates_power_only() {
    let mut meter = device(json!({
        "name": "pro3em", "invert_sign": true, "family": { "shelly": { "prefix": SHELLY } }
    }));
    ok(&mut meter, &format!("{SHELLY}/status/em:0"), &fixture("shelly_pro3em_status_em.json"));
    ok(&mut meter, &format!("{SHELLY}/status/emdata:0"), &fixture("shelly_pro3em_status_emdata.json"));
    assert_eq!(meter.state().grid_power_w, Some(-542));
    assert_eq!(meter.state().grid_import_wh, Some(1_941_640));
}

#[test]
fn shelly_malformed_is_refused_and_keeps_the_state() {
    let mut meter = shelly("");
    let rpc = format!("{SHELLY}/events/rpc");
    ok(&mut meter, &rpc, &fixture("shelly_pro3em_notify.json"));

    let err = refused(&mut meter, &rpc, br#"{"params":{"em:0":{"total_act_power":1}}}"#);
    assert_eq!((err.field.as_deref(), &err.problem), (Some("method"), &Problem::Missing));
    let err = refused(&mut meter, &rpc, br#"{"method":"NotifyStatus","params":[1]}"#);
    assert_eq!(err.field.as_deref(), Some("params"));
    // The good phase A in the same message must not leak into the phase memory either.
    let err = refused(
        &mut meter,
        &rpc,
        br#"{"method":"NotifyStatus","params":{"em:0":{"a_act_power":1,"total_act_power":"lots"}}}"#,
    );
    assert_eq!(err.field.as_deref(), Some("params.em:0.total_act_power"));
    let err =
        refused(&mut meter, &rpc, br#"{"method":"NotifyStatus","params":{"emdata:0":{"total_act":-1}}}"#);
    assert_eq!(err.problem, Problem::NegativeCounter(-1));
    let err = refused(&mut meter, &format!("{SHELLY}/status/switch:0"), b"{}");
    assert_eq!(err.problem, Problem::UnexpectedTopic);
    let err = refused(&mut meter, &format!("{SHELLY}/status/em:0"), b"\xff\xfe");
    assert!(matches!(err.problem, Problem::NotJson(_)));
}

// ---- OpenDTU -------------------------------------------------------------------------------

#[test]
fn dtu_values_with_trailing_newline_and_kwh() {
    let mut inverter = dtu("");
    ok(&mut inverter, "solar/116491234567/0/power", &fixture("opendtu_power.txt"));
    ok(&mut inverter, "solar/116491234567/0/yieldtotal", &fixture("opendtu_yieldtotal.txt"));
    assert_eq!(
        *inverter.state(),
        DeviceState { pv_power_w: Some(432), pv_energy_wh: Some(1_234_568), ..Default::default() }
    );
}

#[test]
fn dtu_malformed_is_refused_and_keeps_the_state() {
    let mut inverter = dtu("");
    let topic = "solar/116491234567/0/power";
    ok(&mut inverter, topic, b"12.5");
    let err = refused(&mut inverter, topic, b"n/a\n");
    assert_eq!(err.problem, Problem::NotANumber("n/a".to_owned()));
    assert_eq!(err.to_string(), r#"solar/116491234567/0/power: field `0/power`: not a number: "n/a""#);
    assert_eq!(refused(&mut inverter, topic, b"").problem, Problem::NotANumber(String::new()));
    assert_eq!(refused(&mut inverter, topic, b"NaN").problem, Problem::NotFinite);
    assert_eq!(refused(&mut inverter, topic, b"\xc3\x28").problem, Problem::NotUtf8);
    let err = refused(&mut inverter, "solar/116491234567/0/yieldtotal", b"-0.5");
    assert_eq!(err.problem, Problem::NegativeCounter(-500));
    assert_eq!(
        refused(&mut inverter, "solar/116491234567/0/voltage", b"230").problem,
        Problem::UnexpectedTopic
    );
    assert_eq!(refused(&mut inverter, "solar/116491234567", b"1").problem, Problem::UnexpectedTopic);
    assert_eq!(inverter.state().pv_power_w, Some(13));
}

// ---- Home Assistant discovery --------------------------------------------------------------

#[test]
fn ha_discovery_long_keys() {
    let mut meter = ha_meter("");
    let Applied::SensorAdded(export) = ok(
        &mut meter,
        "homeassistant/sensor/hausmeter/total_out/config",
        &fixture("ha_discovery_energy_full.json"),
    ) else {
        panic!("no sensor")
    };
    assert_eq!(export.state_topic, "tele/hausmeter/SENSOR");
    assert_eq!((export.mapping.field(), export.mapping.unit()), (Field::GridExport, Unit::KilowattHour));
    assert_eq!(export.unique_id.as_deref(), Some("hausmeter_total_out"));
    ok(
        &mut meter,
        "homeassistant/sensor/hausmeter/total_in/config",
        &fixture("ha_discovery_energy_import.json"),
    );
    assert_eq!(meter.subscriptions(), ["homeassistant/sensor/hausmeter/+/config", "tele/hausmeter/SENSOR"]);

    // One state message feeds both sensors.
    ok(&mut meter, "tele/hausmeter/SENSOR", &fixture("tasmota_sml.json"));
    assert_eq!(
        *meter.state(),
        DeviceState {
            grid_import_wh: Some(18_342_118),
            grid_export_wh: Some(4_410_290),
            ..Default::default()
        }
    );
}

#[test]
fn ha_discovery_abbreviated_keys_and_base_topic() {
    let mut inverter = ha_inverter("");
    let Applied::SensorAdded(power) = ok(
        &mut inverter,
        "homeassistant/sensor/116491234567/ch0_power/config",
        &fixture("ha_discovery_opendtu_power.json"),
    ) else {
        panic!("no sensor")
    };
    assert_eq!(power.state_topic, "solar/116491234567/0/power");
    assert_eq!(power.mapping.field(), Field::PvPower);
    let Applied::SensorAdded(yield_total) = ok(
        &mut inverter,
        "homeassistant/sensor/116491234567/ch0_yieldtotal/config",
        &fixture("ha_discovery_tilde.json"),
    ) else {
        panic!("no sensor")
    };
    assert_eq!(yield_total.state_topic, "solar/116491234567/0/yieldtotal");
    assert_eq!(
        (yield_total.mapping.field(), yield_total.mapping.unit()),
        (Field::PvEnergy, Unit::KilowattHour)
    );

    ok(&mut inverter, "solar/116491234567/0/power", &fixture("opendtu_power.txt"));
    ok(&mut inverter, "solar/116491234567/0/yieldtotal", &fixture("opendtu_yieldtotal.txt"));
    assert_eq!(
        *inverter.state(),
        DeviceState { pv_power_w: Some(432), pv_energy_wh: Some(1_234_568), ..Default::default() }
    );

    // An empty config removes the sensor; its state topic is then no longer ours.
    let removed = ok(&mut inverter, "homeassistant/sensor/116491234567/ch0_power/config", b"");
    assert!(matches!(removed, Applied::SensorRemoved(ref s) if s.state_topic.ends_with("0/power")));
    assert_eq!(refused(&mut inverter, "solar/116491234567/0/power", b"1").problem, Problem::UnexpectedTopic);
}

#[test]
fn ha_discovery_battery_soc_override_and_ignore() {
    let mut battery = device(json!({
        "name": "battery", "family": { "home_assistant": {
            "role": "battery",
            "fields": { "bat_in_total": "battery_charged", "bat_soc": "battery_soc" },
            "ignore": ["bat_power"]
        } }
    }));
    // Without node_id only the sensors named in `fields` are taken.
    let soc = br#"{"name":"SoC","stat_t":"bat/state","val_tpl":"{{ value_json.soc }}","uniq_id":"bat_soc","unit_of_meas":"%","dev_cla":"battery"}"#;
    assert!(matches!(ok(&mut battery, "homeassistant/sensor/bat_soc/config", soc), Applied::SensorAdded(_)));
    let power = br#"{"name":"Power","stat_t":"bat/state","val_tpl":"{{ value_json.p }}","uniq_id":"bat_power","unit_of_meas":"W","dev_cla":"power"}"#;
    assert!(matches!(ok(&mut battery, "homeassistant/sensor/bat/power/config", power), Applied::Ignored(_)));
    let other =
        br#"{"name":"Other","stat_t":"x/state","uniq_id":"other","unit_of_meas":"W","dev_cla":"power"}"#;
    assert!(matches!(ok(&mut battery, "homeassistant/sensor/other/config", other), Applied::Ignored(_)));
    // The name says "out", but the explicit field wins.
    let charged = br#"{"name":"Energy out","stat_t":"bat/state","val_tpl":"{{ value_json['e_in'] }}","uniq_id":"bat_in_total","unit_of_meas":"Wh","dev_cla":"energy"}"#;
    let Applied::SensorAdded(charged) = ok(&mut battery, "homeassistant/sensor/bat/in/config", charged)
    else {
        panic!("no sensor")
    };
    assert_eq!(charged.mapping.field(), Field::BatteryCharged);

    ok(&mut battery, "bat/state", br#"{"soc":"57.3","p":-1200,"e_in":90210.4}"#);
    assert_eq!(
        *battery.state(),
        DeviceState {
            battery_soc: StateOfCharge::from_basis_points(5_730),
            battery_charged_wh: Some(90_210),
            ..Default::default()
        }
    );
}

#[test]
fn ha_malformed_is_refused_and_keeps_the_state() {
    let mut meter = ha_meter("");
    let discovery = "homeassistant/sensor/hausmeter/total_out/config";
    ok(&mut meter, discovery, &fixture("ha_discovery_energy_full.json"));
    ok(&mut meter, "tele/hausmeter/SENSOR", &fixture("tasmota_sml.json"));

    let err = refused(
        &mut meter,
        "homeassistant/sensor/hausmeter/p/config",
        br#"{"stat_t":"tele/hausmeter/SENSOR","val_tpl":"{{ value_json.SML.Power_curr | float }}","unit_of_meas":"W","dev_cla":"power"}"#,
    );
    assert_eq!(err.field.as_deref(), Some("value_template"));
    assert!(err.to_string().contains("{{ value_json.SML.Power_curr | float }}"), "{err}");
    let err = refused(
        &mut meter,
        "homeassistant/sensor/hausmeter/p/config",
        br#"{"stat_t":"tele/hausmeter/SENSOR","unit_of_meas":"VA","dev_cla":"power"}"#,
    );
    assert_eq!(err.problem, Problem::UnsupportedUnit { unit: "VA".to_owned(), quantity: "power" });
    let err = refused(
        &mut meter,
        "homeassistant/sensor/hausmeter/p/config",
        br#"{"stat_t":"~/x","unit_of_meas":"W","dev_cla":"power"}"#,
    );
    assert_eq!((err.field.as_deref(), &err.problem), (Some("~"), &Problem::Missing));
    let err = refused(
        &mut meter,
        "homeassistant/sensor/hausmeter/p/config",
        br#"{"unit_of_meas":"W","dev_cla":"power"}"#,
    );
    assert_eq!((err.field.as_deref(), &err.problem), (Some("state_topic"), &Problem::Missing));
    let err =
        refused(&mut meter, "homeassistant/sensor/hausmeter/p/config", br#"{"stat_t":7,"unit_of_meas":"W"}"#);
    assert_eq!(err.field.as_deref(), Some("stat_t"));

    // A voltage sensor is valid discovery, just not read.
    let volts = br#"{"stat_t":"tele/hausmeter/SENSOR","unit_of_meas":"V","dev_cla":"voltage"}"#;
    assert!(matches!(ok(&mut meter, "homeassistant/sensor/hausmeter/v/config", volts), Applied::Ignored(_)));
    // Another node's config is not this device's.
    let other =
        refused(&mut meter, "homeassistant/sensor/other/x/config", &fixture("ha_discovery_energy_full.json"));
    assert_eq!(other.problem, Problem::UnexpectedTopic);

    let err = refused(&mut meter, "tele/hausmeter/SENSOR", b"unavailable");
    assert!(matches!(err.problem, Problem::NotJson(_)));
    let err = refused(&mut meter, "tele/hausmeter/SENSOR", br#"{"SML":{"Total_in":1}}"#);
    assert_eq!(
        (err.field.as_deref(), &err.problem),
        (Some("{{ value_json.SML.Total_out }}"), &Problem::Missing)
    );
    assert_eq!(meter.state().grid_export_wh, Some(4_410_290));
}
