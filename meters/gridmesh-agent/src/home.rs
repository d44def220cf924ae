//! The home broker: MQTT devices (Tasmota, Shelly, OpenDTU/AhoyDTU, Home Assistant discovery)
//! publish there in their own formats; [`gridmesh_devices`] turns each payload into the device's
//! normalized state. A payload that does not parse is logged (once a minute per device and
//! reason) and skipped: it never stops the agent and never overwrites the last good state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gridmesh_devices::{Applied, Device, DeviceConfig, DeviceState};
use gridmesh_sunspec::Readout;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
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

/// Each device's state as a readout, in configuration order (earlier devices win when the
/// poll loop merges them).
#[must_use]
pub fn readouts(devices: &SharedDevices) -> Vec<Readout> {
    let devices = devices.lock().unwrap_or_else(PoisonError::into_inner);
    devices
        .iter()
        .map(|d| {
            let s: &DeviceState = d.state();
            Readout {
                grid_power_w: s.grid_power_w,
                pv_power_w: s.pv_power_w,
                battery_power_w: s.battery_power_w,
                battery_soc_bp: s.battery_soc.map(gridmesh_core::StateOfCharge::basis_points),
                grid_import_wh: s.grid_import_wh,
                grid_export_wh: s.grid_export_wh,
                pv_energy_wh: s.pv_energy_wh,
            }
        })
        .collect()
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

/// A client for the home broker at `host:port`; [`run`] drives its event loop, the client
/// publishes device commands (DTU limits).
#[must_use]
pub fn connect(host: String, port: u16, credentials: Option<(String, String)>) -> (AsyncClient, EventLoop) {
    let mut opts = MqttOptions::new(format!("gridmesh-agent-home-{}", std::process::id()), host, port);
    opts.set_keep_alive(Duration::from_secs(30));
    if let Some((u, p)) = credentials {
        opts.set_credentials(u, p);
    }
    AsyncClient::new(opts, 100)
}

/// The first MQTT device that takes a power limit command (an OpenDTU/AhoyDTU inverter with
/// `limit` configured).
#[must_use]
pub fn limit_command(devices: &SharedDevices) -> Option<gridmesh_devices::DtuLimit> {
    let devices = devices.lock().unwrap_or_else(PoisonError::into_inner);
    devices.iter().find_map(|d| match &d.config().family {
        gridmesh_devices::Family::Dtu(c) => c.limit.clone(),
        _ => None,
    })
}

/// What one message did to the devices whose topics it matched.
#[derive(Debug, Default)]
struct Fed {
    /// Topics to subscribe to now (sensors a discovery message announced).
    subscribe: Vec<String>,
    /// Indexes of the devices that took the message.
    took: Vec<usize>,
    /// Devices that refused it: index, device name, the kind of problem (what logs are limited
    /// by) and the whole reason.
    refused: Vec<(usize, String, String, String)>,
}

/// Hands a message to every device that listens on its topic.
fn feed(devices: &SharedDevices, topic: &str, payload: &[u8]) -> Fed {
    let mut fed = Fed::default();
    let mut devices = devices.lock().unwrap_or_else(PoisonError::into_inner);
    for (i, d) in devices.iter_mut().enumerate() {
        if !d.subscriptions().iter().any(|f| matches(f, topic)) {
            continue;
        }
        match d.apply(topic, payload) {
            Ok(applied) => {
                if let Applied::SensorAdded(s) = applied {
                    fed.subscribe.push(s.state_topic.clone());
                }
                fed.took.push(i);
            }
            Err(e) => fed.refused.push((i, d.config().name.clone(), e.problem.to_string(), e.to_string())),
        }
    }
    fed
}

/// Every topic the devices listen on now.
fn filters(devices: &SharedDevices) -> Vec<String> {
    devices.lock().unwrap_or_else(PoisonError::into_inner).iter().flat_map(Device::subscriptions).collect()
}

/// Follows the home broker until `stop`, feeding every device.
pub async fn run(
    client: AsyncClient,
    mut events: EventLoop,
    devices: SharedDevices,
    mut stop: watch::Receiver<bool>,
) {
    let mut logged: HashMap<(String, String), Instant> = HashMap::new();
    loop {
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            changed = stop.changed() => if changed.is_err() { return },
            event = events.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    for f in filters(&devices) {
                        let _ = client.subscribe(f, QoS::AtMostOnce).await;
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let fed = feed(&devices, &p.topic, &p.payload);
                    for (_, device, problem, error) in fed.refused {
                        let key = (device, problem);
                        if logged.get(&key).is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                            tracing::warn!(device = %key.0, error = %error, "device payload skipped");
                            logged.insert(key, Instant::now());
                        }
                    }
                    for topic in fed.subscribe {
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

/// What `gridmesh-agent check` heard from one MQTT device.
#[derive(Debug, Clone, PartialEq)]
pub struct Heard {
    /// The device's name.
    pub name: String,
    /// The topics listened on.
    pub topics: Vec<String>,
    /// Messages the device took.
    pub messages: usize,
    /// The last message it refused, and why.
    pub last_refusal: Option<String>,
    /// Its state after listening (all `None` when nothing arrived).
    pub state: DeviceState,
}

/// Listens on the home broker for `duration`, feeding the devices as [`run`] does, and reports
/// per device what arrived: for `check`, so an installer sees each device's values or learns
/// that nothing came on its topic.
///
/// # Errors
/// The broker cannot be reached within `duration`.
pub async fn listen(
    client: AsyncClient,
    mut events: EventLoop,
    devices: SharedDevices,
    duration: Duration,
) -> anyhow::Result<Vec<Heard>> {
    let mut heard: Vec<(usize, Option<String>)> =
        vec![(0, None); devices.lock().unwrap_or_else(PoisonError::into_inner).len()];
    let deadline = tokio::time::Instant::now() + duration;
    let mut connected = false;
    let mut last_error = None;
    loop {
        let event = match tokio::time::timeout_at(deadline, events.poll()).await {
            Err(_) => break,
            Ok(event) => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connected = true;
                for f in filters(&devices) {
                    client.subscribe(f, QoS::AtMostOnce).await?;
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let fed = feed(&devices, &p.topic, &p.payload);
                for i in fed.took {
                    heard[i].0 += 1;
                }
                for (i, _, _, error) in fed.refused {
                    heard[i].1 = Some(error);
                }
                for topic in fed.subscribe {
                    client.subscribe(topic, QoS::AtMostOnce).await?;
                }
            }
            Ok(_) => {}
            Err(e) => {
                last_error = Some(e.to_string());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    if !connected {
        anyhow::bail!(
            "the home broker did not answer within {} s{}",
            duration.as_secs(),
            last_error.map(|e| format!(": {e}")).unwrap_or_default()
        );
    }
    let _ = client.disconnect().await;
    let devices = devices.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(devices
        .iter()
        .zip(heard)
        .map(|(d, (messages, last_refusal))| Heard {
            name: d.config().name.clone(),
            topics: d.subscriptions(),
            messages,
            last_refusal,
            state: *d.state(),
        })
        .collect())
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
