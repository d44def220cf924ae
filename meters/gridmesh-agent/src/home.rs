//! The home broker: MQTT devices (Tasmota, Shelly, OpenDTU/AhoyDTU, Home Assistant discovery)
//! publish there in their own formats; [`gridmesh_devices`] turns each payload into the device's
//! normalized state. A payload that does not parse is logged (once a minute per device and
//! reason) and skipped: it never stops the agent and never overwrites the last good state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gridmesh_devices::{Applied, Device, DeviceConfig, DeviceState};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::watch;

/// The devices, shared with the poll loop.
pub type SharedDevices = Arc<Mutex<Vec<Device>>>;

/// True when `topic` matches the MQTT filter (`+` one level, `#` the rest).
#[must_use]
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The devices' combined state: for each field, the first device that has it.
#[must_use]
pub fn combined(devices: &SharedDevices) -> DeviceState {
    let devices = devices.lock().unwrap_or_else(PoisonError::into_inner);
    let mut out = DeviceState::default();
    for d in devices.iter() {
        let s = d.state();
        out.grid_power_w = out.grid_power_w.or(s.grid_power_w);
        out.pv_power_w = out.pv_power_w.or(s.pv_power_w);
        out.battery_power_w = out.battery_power_w.or(s.battery_power_w);
        out.battery_soc = out.battery_soc.or(s.battery_soc);
        out.grid_import_wh = out.grid_import_wh.or(s.grid_import_wh);
        out.grid_export_wh = out.grid_export_wh.or(s.grid_export_wh);
        out.pv_energy_wh = out.pv_energy_wh.or(s.pv_energy_wh);
        out.battery_charged_wh = out.battery_charged_wh.or(s.battery_charged_wh);
        out.battery_discharged_wh = out.battery_discharged_wh.or(s.battery_discharged_wh);
    }
    out
}

/// Builds the devices from their configuration.
///
/// # Errors
/// A device configuration that does not validate, with the field named.
pub fn devices(configs: &[DeviceConfig]) -> anyhow::Result<SharedDevices> {
    let devices = configs
        .iter()
        .cloned()
        .map(|c| Device::new(c).map_err(|e| anyhow::anyhow!("mqtt_device: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Arc::new(Mutex::new(devices)))
}

/// Follows the home broker at `host:port` until `stop`, feeding every device.
pub async fn run(
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
    devices: SharedDevices,
    mut stop: watch::Receiver<bool>,
) {
    let mut opts = MqttOptions::new(format!("gridmesh-agent-home-{}", std::process::id()), host, port);
    opts.set_keep_alive(Duration::from_secs(30));
    if let Some((u, p)) = credentials {
        opts.set_credentials(u, p);
    }
    let (client, mut events) = AsyncClient::new(opts, 100);
    let mut logged: HashMap<(String, String), Instant> = HashMap::new();
    loop {
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            changed = stop.changed() => if changed.is_err() { return },
            event = events.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let filters: Vec<String> = devices
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .iter()
                        .flat_map(Device::subscriptions)
                        .collect();
                    for f in filters {
                        let _ = client.subscribe(f, QoS::AtMostOnce).await;
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let mut subscribe = Vec::new();
                    {
                        let mut devices = devices.lock().unwrap_or_else(PoisonError::into_inner);
                        for d in devices.iter_mut() {
                            if !d.subscriptions().iter().any(|f| matches(f, &p.topic)) {
                                continue;
                            }
                            match d.apply(&p.topic, &p.payload) {
                                Ok(Applied::SensorAdded(s)) => subscribe.push(s.state_topic.clone()),
                                Ok(_) => {}
                                Err(e) => {
                                    let key = (d.config().name.clone(), e.problem.to_string());
                                    if logged.get(&key).is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                                        tracing::warn!(device = %key.0, error = %e, "device payload skipped");
                                        logged.insert(key, Instant::now());
                                    }
                                }
                            }
                        }
                    }
                    for topic in subscribe {
                        let _ = client.subscribe(topic, QoS::AtMostOnce).await;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "home broker link lost; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn topic_filters_match_like_mqtt() {
        assert!(matches("tele/+/SENSOR", "tele/meter/SENSOR"));
        assert!(matches("solar/#", "solar/123/0/power"));
        assert!(!matches("tele/+/SENSOR", "tele/meter/STATE"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(matches("a/b", "a/b"));
    }
}
