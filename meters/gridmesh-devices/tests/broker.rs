//! The fixtures published through the real Mosquitto (`GRIDMESH_TEST_MQTT_URL`, default
//! `mqtt://127.0.0.1:1883`), read back and fed to the parsers as the agent would.
#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gridmesh_devices::{Applied, Device, DeviceState, Problem};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Longest wait for any single step against the broker.
const STEP: Duration = Duration::from_secs(10);

/// Host and port of an `mqtt://host[:port]` URL.
fn broker() -> (String, u16) {
    let url = std::env::var("GRIDMESH_TEST_MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".to_owned());
    let rest = url.strip_prefix("mqtt://").or_else(|| url.strip_prefix("tcp://")).unwrap_or(&url);
    let authority = rest.split('/').next().unwrap();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    match authority.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse().unwrap()),
        None => (authority.to_owned(), 1883),
    }
}

/// Publishes `messages`, waits for each to come back, and feeds it to every device; returns how
/// many devices took each message.
async fn exchange(
    client: &AsyncClient,
    arrived: &mut mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    messages: &[(String, Vec<u8>)],
    devices: &mut [Device],
) -> Vec<usize> {
    for (topic, payload) in messages {
        client.publish(topic.as_str(), QoS::AtLeastOnce, false, payload.clone()).await.unwrap();
    }
    let mut taken = Vec::new();
    while taken.len() < messages.len() {
        let (topic, payload) = timeout(STEP, arrived.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {} messages came back", taken.len(), messages.len()))
            .unwrap();
        let mut takers = 0;
        for device in devices.iter_mut() {
            match device.apply(&topic, &payload) {
                Ok(Applied::Updated(_) | Applied::SensorAdded(_)) => takers += 1,
                Ok(other) => panic!("{topic}: {other:?}"),
                Err(e) if e.problem == Problem::UnexpectedTopic => {}
                Err(e) => panic!("{e}"),
            }
        }
        taken.push(takers);
    }
    taken
}

#[tokio::test]
async fn fixtures_through_the_broker() {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let run = format!("gridmesh-devices-test/{}-{nanos}", std::process::id());
    let p = format!("{run}/");

    // The discovery configs name their state topics; move those under this run's prefix too.
    let scoped = |name: &str| {
        String::from_utf8(common::fixture(name))
            .unwrap()
            .replace("tele/hausmeter/", &format!("{p}tele/hausmeter/"))
            .replace("solar/116491234567/", &format!("{p}solar/116491234567/"))
            .into_bytes()
    };
    let shelly = format!("{p}shellypro3em-c8f09e1a2b3c");
    let messages: Vec<(String, Vec<u8>)> = vec![
        (format!("{p}tele/plug/SENSOR"), common::fixture("tasmota_energy.json")),
        (format!("{p}tele/meter/SENSOR"), common::fixture("tasmota_sml_3p.json")),
        (format!("{shelly}/status/emdata:0"), common::fixture("shelly_pro3em_status_emdata.json")),
        (format!("{shelly}/events/rpc"), common::fixture("shelly_pro3em_notify.json")),
        (format!("{shelly}/events/rpc"), common::fixture("shelly_partial_notify.json")),
        (format!("{shelly}/events/rpc"), common::fixture("shelly_partial_em_notify.json")),
        (format!("{p}solar/116491234567/0/power"), common::fixture("opendtu_power.txt")),
        (format!("{p}solar/116491234567/0/yieldtotal"), common::fixture("opendtu_yieldtotal.txt")),
        (
            format!("{p}homeassistant/sensor/hausmeter/total_out/config"),
            scoped("ha_discovery_energy_full.json"),
        ),
        (
            format!("{p}homeassistant/sensor/hausmeter/total_in/config"),
            scoped("ha_discovery_energy_import.json"),
        ),
        (format!("{p}tele/hausmeter/SENSOR"), common::fixture("tasmota_sml.json")),
        (
            format!("{p}homeassistant/sensor/116491234567/ch0_power/config"),
            scoped("ha_discovery_opendtu_power.json"),
        ),
        (
            format!("{p}homeassistant/sensor/116491234567/ch0_yieldtotal/config"),
            scoped("ha_discovery_tilde.json"),
        ),
    ];

    let (host, port) = broker();
    let mut options = MqttOptions::new(format!("gridmesh-devices-test-{nanos}"), host, port);
    options.set_keep_alive(Duration::from_secs(5)).set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let (subscribed_tx, mut subscribed) = mpsc::channel(1);
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel();
    let events = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = subscribed_tx.try_send(());
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let _ = arrived_tx.send((publish.topic, publish.payload.to_vec()));
                }
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    });

    client.subscribe(format!("{p}#"), QoS::AtLeastOnce).await.unwrap();
    timeout(STEP, subscribed.recv())
        .await
        .expect("no SUBACK from the broker in time")
        .expect("the connection to the broker failed (is Mosquitto at GRIDMESH_TEST_MQTT_URL running?)");

    let mut devices = [
        common::tasmota_plug(&p),
        common::tasmota_sml(&p),
        common::shelly(&p),
        common::dtu(&p),
        common::ha_meter(&p),
        common::ha_inverter(&p),
    ];
    let taken = exchange(&client, &mut arrived, &messages, &mut devices).await;
    assert_eq!(taken, vec![1; messages.len()], "each message belongs to exactly one device");

    // The inverter's discovery named the DTU's topics: the agent subscribes to them, and the
    // next values feed both the DTU device and the discovered sensors.
    let mut topics = devices[5].subscriptions();
    topics.sort();
    assert_eq!(
        topics,
        [
            format!("{p}homeassistant/sensor/116491234567/+/config"),
            format!("{p}solar/116491234567/0/power"),
            format!("{p}solar/116491234567/0/yieldtotal"),
        ]
    );
    let values = [
        (format!("{p}solar/116491234567/0/power"), b"398.2\n".to_vec()),
        (format!("{p}solar/116491234567/0/yieldtotal"), b"1234.6012\n".to_vec()),
    ];
    assert_eq!(exchange(&client, &mut arrived, &values, &mut devices).await, [2, 2]);

    client.disconnect().await.unwrap();
    let _ = timeout(STEP, events).await;

    let [plug, meter, shelly, dtu, ha_meter, ha_inverter] = &devices;
    assert_eq!(
        *plug.state(),
        DeviceState { pv_power_w: Some(250), pv_energy_wh: Some(12_346), ..Default::default() }
    );
    assert_eq!(
        *meter.state(),
        DeviceState {
            grid_power_w: Some(-174),
            grid_import_wh: Some(7_731_402),
            grid_export_wh: Some(952_660),
            ..Default::default()
        }
    );
    assert_eq!(
        *shelly.state(),
        DeviceState {
            grid_power_w: Some(557),
            grid_import_wh: Some(1_941_640),
            grid_export_wh: Some(88_214),
            ..Default::default()
        }
    );
    let pv = DeviceState { pv_power_w: Some(398), pv_energy_wh: Some(1_234_601), ..Default::default() };
    assert_eq!(*dtu.state(), pv);
    assert_eq!(*ha_inverter.state(), pv);
    assert_eq!(
        *ha_meter.state(),
        DeviceState {
            grid_import_wh: Some(18_342_118),
            grid_export_wh: Some(4_410_290),
            ..Default::default()
        }
    );
}
