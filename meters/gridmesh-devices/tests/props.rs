//! Whatever arrives, no parser panics, and a refused message leaves the device as it was.
#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use gridmesh_devices::{Applied, Device};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Every device of the tests, each already holding a good state.
fn devices() -> Vec<(Device, Vec<&'static str>)> {
    let mut out = Vec::new();
    let mut plug = common::tasmota_plug("");
    plug.apply("tele/plug/SENSOR", &common::fixture("tasmota_energy.json")).unwrap();
    out.push((plug, vec!["tele/plug/SENSOR"]));
    let mut meter = common::tasmota_sml("");
    meter.apply("tele/meter/SENSOR", &common::fixture("tasmota_sml_3p.json")).unwrap();
    out.push((meter, vec!["tele/meter/SENSOR"]));
    let mut shelly = common::shelly("");
    let prefix = "shellypro3em-c8f09e1a2b3c";
    shelly.apply(&format!("{prefix}/events/rpc"), &common::fixture("shelly_pro3em_notify.json")).unwrap();
    out.push((
        shelly,
        vec![
            "shellypro3em-c8f09e1a2b3c/events/rpc",
            "shellypro3em-c8f09e1a2b3c/status/em:0",
            "shellypro3em-c8f09e1a2b3c/status/emdata:0",
        ],
    ));
    let mut dtu = common::dtu("");
    dtu.apply("solar/116491234567/0/power", b"321").unwrap();
    out.push((dtu, vec!["solar/116491234567/0/power", "solar/116491234567/0/yieldtotal"]));
    let mut ha = common::ha_meter("");
    ha.apply("homeassistant/sensor/hausmeter/out/config", &common::fixture("ha_discovery_energy_full.json"))
        .unwrap();
    ha.apply("tele/hausmeter/SENSOR", &common::fixture("tasmota_sml.json")).unwrap();
    out.push((
        ha,
        vec![
            "homeassistant/sensor/hausmeter/out/config",
            "homeassistant/sensor/hausmeter/x/config",
            "tele/hausmeter/SENSOR",
        ],
    ));
    out
}

/// Keys the parsers look for, so generated JSON reaches past the first check.
const KEYS: &[&str] = &[
    "ENERGY",
    "Power",
    "Total",
    "SML",
    "Total_in",
    "Total_out",
    "Power_curr",
    "power_l1",
    "method",
    "params",
    "em:0",
    "emdata:0",
    "total_act_power",
    "a_act_power",
    "b_act_power",
    "c_act_power",
    "total_act",
    "total_act_ret",
    "stat_t",
    "state_topic",
    "~",
    "unit_of_meas",
    "unit_of_measurement",
    "dev_cla",
    "device_class",
    "val_tpl",
    "value_template",
    "uniq_id",
    "unique_id",
    "name",
];

const STRINGS: &[&str] = &[
    "NotifyStatus",
    "NotifyFullStatus",
    "W",
    "kW",
    "kWh",
    "Wh",
    "%",
    "power",
    "energy",
    "battery",
    "~/x",
    "tele/hausmeter/SENSOR",
    "{{ value }}",
    "{{ value_json.SML.Total_in }}",
    "{{ value_json[0] }}",
    "{{ value_json['a'] | int }}",
    "12.5",
    "nan",
    "",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(STRINGS).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>()
            )),
        ]
    })
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        ".{0,24}".prop_map(String::into_bytes),
        json_value().prop_map(|v| v.to_string().into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn refused_messages_change_nothing(
        which in any::<prop::sample::Index>(),
        topic_pick in any::<prop::sample::Index>(),
        random_topic in prop::option::of(".{0,40}"),
        payload in payload(),
    ) {
        let mut all = devices();
        let (device, topics) = which.get_mut(&mut all);
        let topic = random_topic.unwrap_or_else(|| (*topic_pick.get(topics)).to_owned());
        let before = device.clone();
        match device.apply(&topic, &payload) {
            Err(_) => prop_assert_eq!(&*device, &before),
            // An accepted message changes exactly the fields it carries.
            Ok(Applied::Updated(update)) => {
                let mut expected = *before.state();
                expected.merge(&update);
                prop_assert_eq!(device.state(), &expected);
            }
            // Discovery changes the sensors, never the values.
            Ok(_) => prop_assert_eq!(device.state(), before.state()),
        }
    }
}
