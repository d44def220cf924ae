//! Shelly Gen2+ energy meters (Pro 3EM and kin), read as the grid connection.
//!
//! * `<prefix>/status/em:0`: the meter's power status; `total_act_power` (W) is the net power.
//! * `<prefix>/status/emdata:0`: the counters; `total_act` (Wh, imported) and `total_act_ret`
//!   (Wh, exported), floats rounded to whole Wh.
//! * `<prefix>/events/rpc`: `NotifyStatus` / `NotifyFullStatus` RPC notifications whose
//!   `params` carry `em:0` and `emdata:0` objects with only the fields that changed. A field
//!   that is absent (or `null`) is not a zero: it keeps its last value. Other notifications
//!   (`NotifyEvent`, or a `NotifyStatus` about other components) are valid and change nothing.
//!
//! When a notification carries phase powers (`a_act_power`...) but no `total_act_power`, the
//! total is the sum of the three phases' last known values, once all three are known.

use serde_json::{Map, Value};

use crate::config::ShellyConfig;
use crate::error::{ParseError, Problem};
use crate::json;
use crate::state::{DeviceState, Field, Mapping, Unit};

/// The last known active power per phase (W, as reported), kept between messages.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Phases([Option<f64>; 3]);

const PHASE_KEYS: [&str; 3] = ["a_act_power", "b_act_power", "c_act_power"];

/// The update one message carries, and the phase powers after it.
pub(crate) fn parse(
    config: &ShellyConfig,
    phases: Phases,
    topic: &str,
    payload: &[u8],
) -> Result<(DeviceState, Phases), ParseError> {
    let Some(rest) = topic.strip_prefix(config.prefix.as_str()).and_then(|r| r.strip_prefix('/')) else {
        return Err(ParseError::message(topic, Problem::UnexpectedTopic));
    };
    let mut reader = Reader { topic, update: DeviceState::default(), phases };
    match rest {
        "status/em:0" => reader.em(&json::object(topic, payload)?, "")?,
        "status/emdata:0" => reader.emdata(&json::object(topic, payload)?, "")?,
        "events/rpc" => {
            let message = json::object(topic, payload)?;
            let method = match message.get("method") {
                Some(Value::String(m)) => m.as_str(),
                Some(other) => {
                    return Err(ParseError::field(topic, "method", Problem::wrong_type("a string", other)));
                }
                None => return Err(ParseError::field(topic, "method", Problem::Missing)),
            };
            if matches!(method, "NotifyStatus" | "NotifyFullStatus") {
                let params = match message.get("params") {
                    Some(Value::Object(p)) => p,
                    Some(other) => {
                        return Err(ParseError::field(
                            topic,
                            "params",
                            Problem::wrong_type("an object", other),
                        ));
                    }
                    None => return Err(ParseError::field(topic, "params", Problem::Missing)),
                };
                if let Some(em) = params.get("em:0") {
                    reader.em(object(topic, "params.em:0", em)?, "params.em:0.")?;
                }
                if let Some(emdata) = params.get("emdata:0") {
                    reader.emdata(object(topic, "params.emdata:0", emdata)?, "params.emdata:0.")?;
                }
            }
        }
        _ => return Err(ParseError::message(topic, Problem::UnexpectedTopic)),
    }
    Ok((reader.update, reader.phases))
}

fn object<'a>(topic: &str, field: &str, v: &'a Value) -> Result<&'a Map<String, Value>, ParseError> {
    v.as_object().ok_or_else(|| ParseError::field(topic, field, Problem::wrong_type("an object", v)))
}

/// Builds one message's update.
struct Reader<'t> {
    topic: &'t str,
    update: DeviceState,
    phases: Phases,
}

impl Reader<'_> {
    /// A number at `key`, absent or `null` as `None`.
    fn number(&self, obj: &Map<String, Value>, path: &str, key: &str) -> Result<Option<f64>, ParseError> {
        match obj.get(key) {
            None => Ok(None),
            Some(v) => json::number(v).map_err(|p| ParseError::field(self.topic, format!("{path}{key}"), p)),
        }
    }

    fn put(&mut self, mapping: Mapping, value: f64, field: String) -> Result<(), ParseError> {
        self.update.put(mapping, value).map_err(|p| ParseError::field(self.topic, field, p))
    }

    fn em(&mut self, em: &Map<String, Value>, path: &str) -> Result<(), ParseError> {
        let mut any_phase = false;
        for (slot, key) in PHASE_KEYS.iter().enumerate() {
            if let Some(w) = self.number(em, path, key)? {
                self.phases.0[slot] = Some(w);
                any_phase = true;
            }
        }
        let power = Mapping::fixed(Field::GridPower, Unit::Watt);
        if let Some(total) = self.number(em, path, "total_act_power")? {
            self.put(power, total, format!("{path}total_act_power"))?;
        } else if any_phase && let [Some(a), Some(b), Some(c)] = self.phases.0 {
            self.put(power, a + b + c, format!("{path}a/b/c_act_power"))?;
        }
        Ok(())
    }

    fn emdata(&mut self, emdata: &Map<String, Value>, path: &str) -> Result<(), ParseError> {
        let counters = [("total_act", Field::GridImport), ("total_act_ret", Field::GridExport)];
        for (key, field) in counters {
            if let Some(wh) = self.number(emdata, path, key)? {
                self.put(Mapping::fixed(field, Unit::WattHour), wh, format!("{path}{key}"))?;
            }
        }
        Ok(())
    }
}
