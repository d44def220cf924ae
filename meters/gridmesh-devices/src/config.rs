//! What the agent's configuration says about one device.
//!
//! In the agent's TOML a device reads, for example:
//!
//! ```toml
//! [[devices]]
//! name = "meter"
//! invert_sign = false
//! [devices.family.tasmota]
//! sensor_topic = "tele/smartmeter/SENSOR"
//! sml = { "SML.Power_curr" = { field = "grid_power", unit = "W" }, "SML.Total_in" = { field = "grid_import", unit = "kWh" } }
//! ```
//!
//! Unknown keys are refused everywhere, so a misspelt key is an error naming it rather than a
//! silently ignored setting.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::state::{Field, Mapping, Role};

/// One device the agent reads over the home broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// The device's name in logs and readings.
    pub name: String,
    /// Quirk: the device reports power with the wrong sign (a CT clamp fitted the wrong way
    /// round, a meter that counts export positive). Every power value it yields is negated;
    /// energy counters are left alone, since they are mapped to import or export explicitly.
    #[serde(default)]
    pub invert_sign: bool,
    /// The device's family and what is specific to it.
    pub family: Family,
}

/// A device family with its family-specific settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Family {
    /// Tasmota telemetry (`tele/<topic>/SENSOR`).
    Tasmota(TasmotaConfig),
    /// Shelly Gen2+ energy meter (Pro 3EM and kin).
    Shelly(ShellyConfig),
    /// OpenDTU / AhoyDTU: one plain value per topic.
    Dtu(DtuConfig),
    /// Sensors announced by Home Assistant MQTT discovery.
    HomeAssistant(HomeAssistantConfig),
}

/// A Tasmota device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TasmotaConfig {
    /// The full telemetry topic, usually `tele/<topic>/SENSOR`.
    pub sensor_topic: String,
    /// What the built-in energy monitor (`ENERGY`) measures: `grid` for a plug or meter at the
    /// grid connection (`Total` is import), `pv` for a plug on an inverter (`Total` is
    /// production), `battery` (`Total` is charge). Absent: `ENERGY` is not read.
    #[serde(default)]
    pub energy: Option<Role>,
    /// Smart-meter (SML) values: `"<object>.<field>"` as in the JSON (e.g. `"SML.Total_in"`)
    /// to the field and unit it is read as.
    #[serde(default)]
    pub sml: BTreeMap<String, Mapping>,
}

/// A Shelly Gen2+ energy meter (`em:0` / `emdata:0`), read as the grid connection: active power
/// to `grid_power`, `total_act` to the import and `total_act_ret` to the export counter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShellyConfig {
    /// The device's MQTT prefix (by default its id, e.g. `shellypro3em-aabbccddeeff`).
    pub prefix: String,
}

/// An OpenDTU or AhoyDTU inverter: one plain number per topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DtuConfig {
    /// The topic prefix of the inverter, e.g. `solar/114182345678`.
    pub base_topic: String,
    /// Topic suffix after the prefix (e.g. `0/power`, `0/yieldtotal`) to field and unit.
    pub values: BTreeMap<String, Mapping>,
    /// The inverter's power limit command, for PV-limit setpoints.
    #[serde(default)]
    pub limit: Option<DtuLimit>,
}

/// How a DTU takes a non-persistent power limit for its inverter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DtuLimit {
    /// The command topic: OpenDTU `<prefix>/<serial>/cmd/limit_nonpersistent_absolute` (watts)
    /// or `.../limit_nonpersistent_relative` (percent); AhoyDTU `<prefix>/ctrl/limit/<id>`
    /// (percent, or watts with a `W` suffix).
    pub topic: String,
    /// What the payload is.
    pub format: LimitFormat,
    /// The inverter's rated AC power, W: the ceiling for clamping, and the value that hands the
    /// inverter back its full power when a limit ends.
    pub rated_w: i64,
}

/// The payload of a DTU limit command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitFormat {
    /// Watts as a plain number (`"350"`): OpenDTU's `limit_nonpersistent_absolute`.
    Watts,
    /// Watts with a `W` suffix (`"350W"`): AhoyDTU's absolute limit.
    WattsSuffix,
    /// Percent of the rated power (`"44"`): OpenDTU's `limit_nonpersistent_relative`, AhoyDTU's
    /// `ctrl/limit/<id>`.
    Percent,
}

impl DtuLimit {
    /// The command payload that limits the inverter to `watts` (clamped to 0..=`rated_w`).
    #[must_use]
    pub fn payload(&self, watts: i64) -> String {
        let w = watts.clamp(0, self.rated_w.max(0));
        match self.format {
            LimitFormat::Watts => w.to_string(),
            LimitFormat::WattsSuffix => format!("{w}W"),
            LimitFormat::Percent => {
                let rated = self.rated_w.max(1);
                // Whole percent, rounded down so the limit never exceeds what was asked.
                ((w * 100) / rated).to_string()
            }
        }
    }

    /// The payload that hands the inverter back its full power.
    #[must_use]
    pub fn release_payload(&self) -> String {
        match self.format {
            LimitFormat::Percent => "100".to_owned(),
            _ => self.payload(self.rated_w),
        }
    }
}

/// Sensors announced over Home Assistant MQTT discovery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeAssistantConfig {
    /// The discovery prefix.
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
    /// Only sensors announced under this node id (`<prefix>/sensor/<node_id>/<object>/config`)
    /// are taken. Without it, only the sensors named in `fields` are taken, so that a site's
    /// other power sensors do not end up in this device.
    #[serde(default)]
    pub node_id: Option<String>,
    /// What the sensors measure: decides where power and energy go.
    pub role: Role,
    /// Explicit targets by `unique_id`, overriding the rule of [`crate::ha`].
    #[serde(default)]
    pub fields: BTreeMap<String, Field>,
    /// Sensors (by `unique_id`) to leave out.
    #[serde(default)]
    pub ignore: Vec<String>,
}

fn default_discovery_prefix() -> String {
    "homeassistant".to_owned()
}

impl DeviceConfig {
    /// Checks what the types cannot: topics are non-empty and free of MQTT wildcards, and the
    /// device maps at least one value.
    ///
    /// # Errors
    /// The first field at fault, by its path in the configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field: &str, problem: &str| ConfigError {
            device: self.name.clone(),
            field: field.to_owned(),
            problem: problem.to_owned(),
        };
        if self.name.trim().is_empty() {
            return Err(fail("name", "must not be empty"));
        }
        match &self.family {
            Family::Tasmota(c) => {
                check_topic(&c.sensor_topic).map_err(|p| fail("family.tasmota.sensor_topic", p))?;
                if c.energy.is_none() && c.sml.is_empty() {
                    return Err(fail("family.tasmota", "maps nothing: set `energy` or `sml`"));
                }
                for path in c.sml.keys() {
                    if path.split('.').any(str::is_empty) {
                        return Err(fail(
                            &format!("family.tasmota.sml.{path:?}"),
                            "must be `<object>.<field>` with no empty part",
                        ));
                    }
                }
            }
            Family::Shelly(c) => {
                check_topic(&c.prefix).map_err(|p| fail("family.shelly.prefix", p))?;
            }
            Family::Dtu(c) => {
                check_topic(&c.base_topic).map_err(|p| fail("family.dtu.base_topic", p))?;
                if c.values.is_empty() {
                    return Err(fail("family.dtu.values", "maps nothing"));
                }
                for suffix in c.values.keys() {
                    check_topic(suffix).map_err(|p| fail(&format!("family.dtu.values.{suffix:?}"), p))?;
                }
                if let Some(l) = &c.limit {
                    check_topic(&l.topic).map_err(|p| fail("family.dtu.limit.topic", p))?;
                    if l.rated_w <= 0 {
                        return Err(fail("family.dtu.limit.rated_w", "must be positive"));
                    }
                }
            }
            Family::HomeAssistant(c) => {
                check_topic(&c.discovery_prefix)
                    .map_err(|p| fail("family.home_assistant.discovery_prefix", p))?;
                if let Some(node) = &c.node_id
                    && (check_topic(node).is_err() || node.contains('/'))
                {
                    return Err(fail("family.home_assistant.node_id", "must be one topic level"));
                }
                if c.node_id.is_none() && c.fields.is_empty() {
                    return Err(fail(
                        "family.home_assistant",
                        "takes nothing: set `node_id` or name sensors in `fields`",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A topic or topic part: non-empty, no wildcards, no surrounding slashes.
fn check_topic(topic: &str) -> Result<(), &'static str> {
    if topic.is_empty() {
        Err("must not be empty")
    } else if topic.contains(['+', '#']) {
        Err("must not contain the MQTT wildcards `+` or `#`")
    } else if topic.starts_with('/') || topic.ends_with('/') {
        Err("must not start or end with `/`")
    } else {
        Ok(())
    }
}
