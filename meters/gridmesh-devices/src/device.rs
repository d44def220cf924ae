//! One device: its configuration, its last good state, and what its parser remembers.

use std::collections::BTreeMap;

use gridmesh_core::{Reading, Timestamp};

use crate::config::{DeviceConfig, Family};
use crate::error::{ConfigError, ParseError, Problem};
use crate::ha::{self, Discovery, SensorDefinition};
use crate::state::DeviceState;
use crate::{dtu, shelly, tasmota};

/// A device's last good state, fed with the MQTT messages of its topics.
///
/// [`Device::apply`] is all or nothing: a message that is refused leaves the device exactly as
/// it was, and one that is accepted changes only the fields it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    config: DeviceConfig,
    state: DeviceState,
    /// Shelly: the phase powers last seen, for notifications that carry phases but no total.
    phases: shelly::Phases,
    /// Home Assistant: the sensors discovered so far, by discovery topic.
    sensors: BTreeMap<String, SensorDefinition>,
}

/// What an accepted message did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The state took these values (the fields the message carried; the others are `None`).
    Updated(DeviceState),
    /// A Home Assistant sensor was announced (or re-announced): subscribe to its state topic.
    SensorAdded(SensorDefinition),
    /// A Home Assistant sensor was removed; its last values stay in the state.
    SensorRemoved(SensorDefinition),
    /// A valid message that this device does not read, and why (a voltage sensor's discovery,
    /// the removal of a sensor never seen).
    Ignored(String),
}

impl Device {
    /// A device with an empty state.
    ///
    /// # Errors
    /// A configuration that [`DeviceConfig::validate`] refuses.
    pub fn new(config: DeviceConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            state: DeviceState::default(),
            phases: shelly::Phases::default(),
            sensors: BTreeMap::new(),
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &DeviceConfig {
        &self.config
    }

    /// The last good state.
    #[must_use]
    pub fn state(&self) -> &DeviceState {
        &self.state
    }

    /// The last good state as a reading taken at `at`.
    #[must_use]
    pub fn reading(&self, at: Timestamp) -> Reading {
        self.state.to_reading(at)
    }

    /// The Home Assistant sensors discovered so far.
    pub fn sensors(&self) -> impl Iterator<Item = &SensorDefinition> {
        self.sensors.values()
    }

    /// The MQTT topic filters to subscribe to. For Home Assistant this grows as sensors are
    /// discovered (see [`Applied::SensorAdded`]).
    #[must_use]
    pub fn subscriptions(&self) -> Vec<String> {
        match &self.config.family {
            Family::Tasmota(c) => vec![c.sensor_topic.clone()],
            Family::Shelly(c) => ["events/rpc", "status/em:0", "status/emdata:0"]
                .iter()
                .map(|suffix| format!("{}/{suffix}", c.prefix))
                .collect(),
            Family::Dtu(c) => c.values.keys().map(|suffix| format!("{}/{suffix}", c.base_topic)).collect(),
            Family::HomeAssistant(c) => {
                let mut filters = vec![ha::discovery_filter(c)];
                for sensor in self.sensors.values() {
                    if !filters.contains(&sensor.state_topic) {
                        filters.push(sensor.state_topic.clone());
                    }
                }
                filters
            }
        }
    }

    /// Reads one message and merges what it carries into the state.
    ///
    /// # Errors
    /// A message the device's parser refuses (wrong topic, malformed payload, a value out of
    /// range); the device is then unchanged.
    pub fn apply(&mut self, topic: &str, payload: &[u8]) -> Result<Applied, ParseError> {
        let update = match &self.config.family {
            Family::Tasmota(c) => tasmota::parse(c, topic, payload)?,
            Family::Dtu(c) => dtu::parse(c, topic, payload)?,
            Family::Shelly(c) => {
                let (update, phases) = shelly::parse(c, self.phases, topic, payload)?;
                self.phases = phases;
                update
            }
            Family::HomeAssistant(c) => {
                if let Some(object_id) = ha::discovery_object(c, topic) {
                    return Ok(match ha::parse_discovery(c, topic, object_id, payload)? {
                        Discovery::Sensor(sensor) => {
                            self.sensors.insert(topic.to_owned(), sensor.clone());
                            Applied::SensorAdded(sensor)
                        }
                        Discovery::Removed => match self.sensors.remove(topic) {
                            Some(sensor) => Applied::SensorRemoved(sensor),
                            None => Applied::Ignored("removal of a sensor not known".to_owned()),
                        },
                        Discovery::Ignored(why) => Applied::Ignored(why),
                    });
                }
                self.read_sensors(topic, payload)?
            }
        };
        Ok(Applied::Updated(self.commit(update)))
    }

    /// The update from every discovered sensor whose state arrives on `topic`.
    fn read_sensors(&self, topic: &str, payload: &[u8]) -> Result<DeviceState, ParseError> {
        let mut update = DeviceState::default();
        let mut any = false;
        for sensor in self.sensors.values().filter(|s| s.state_topic == topic) {
            any = true;
            let value = sensor.read(topic, payload)?;
            update
                .put(sensor.mapping, value)
                .map_err(|p| ParseError::field(topic, sensor.template.source(), p))?;
        }
        if any { Ok(update) } else { Err(ParseError::message(topic, Problem::UnexpectedTopic)) }
    }

    fn commit(&mut self, mut update: DeviceState) -> DeviceState {
        if self.config.invert_sign {
            update.negate_power();
        }
        self.state.merge(&update);
        update
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_can_move_between_tasks() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Device>();
    }
}
