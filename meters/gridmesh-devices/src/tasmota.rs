//! Tasmota telemetry: `tele/<topic>/SENSOR`.
//!
//! * `ENERGY` (built-in energy monitor): `Power` in W, a number or an array with one number per
//!   phase or channel, which is summed; `Total` in kWh (likewise number or array), read into the
//!   counter of the configured [`Role`](crate::Role). `Today` and `Yesterday` are daily values,
//!   not counters, and are not read.
//! * Smart-meter objects (`SML` and whatever the meter script names them): the field names are
//!   the user's, so each value read comes from the configured `"<object>.<field>"` mapping.
//!   Several values mapped to one field are added up, so a meter that reports only per-phase
//!   powers (`power_l1`, `power_l2`, `power_l3`) still yields the grid power. When `ENERGY` and
//!   `sml` both feed a field, `sml` wins.
//!
//! A mapped value that is absent or `null` is skipped; one of the wrong type refuses the whole
//! message. A message that carries none of the mapped values is refused too, so a
//! misconfiguration shows up instead of the device silently staying empty.

use std::collections::BTreeMap;

use crate::config::TasmotaConfig;
use crate::error::{ParseError, Problem};
use crate::json;
use crate::state::{DeviceState, Field, Mapping, Unit};

/// The update carried by one `SENSOR` message.
pub(crate) fn parse(config: &TasmotaConfig, topic: &str, payload: &[u8]) -> Result<DeviceState, ParseError> {
    if topic != config.sensor_topic {
        return Err(ParseError::message(topic, Problem::UnexpectedTopic));
    }
    let root = json::object(topic, payload)?;
    let mut update = DeviceState::default();

    if let Some(role) = config.energy
        && let Some(energy) = root.get("ENERGY")
    {
        let energy = energy
            .as_object()
            .ok_or_else(|| ParseError::field(topic, "ENERGY", Problem::wrong_type("an object", energy)))?;
        let read = [
            ("Power", Mapping::fixed(role.power(), Unit::Watt)),
            ("Total", Mapping::fixed(role.energy(), Unit::KilowattHour)),
        ];
        for (key, mapping) in read {
            let Some(raw) = energy.get(key) else { continue };
            let field = || format!("ENERGY.{key}");
            if let Some(value) = json::number_or_sum(raw).map_err(|p| ParseError::field(topic, field(), p))? {
                update.put(mapping, value).map_err(|p| ParseError::field(topic, field(), p))?;
            }
        }
    }

    // Values mapped to the same field add up (per-phase powers into one grid power).
    let mut sums: BTreeMap<Field, (i64, &str)> = BTreeMap::new();
    for (path, mapping) in &config.sml {
        let Some(raw) = json::at_path(&root, path) else { continue };
        let Some(value) = json::number(raw).map_err(|p| ParseError::field(topic, path, p))? else { continue };
        let base = mapping.to_base(value).map_err(|p| ParseError::field(topic, path, p))?;
        let (sum, _) = sums.entry(mapping.field()).or_insert((0, path));
        *sum = sum.checked_add(base).ok_or_else(|| {
            ParseError::field(topic, path, Problem::OutOfRange { value, range: "a sum within i64" })
        })?;
    }
    for (field, (sum, path)) in sums {
        update.set(field, sum).map_err(|p| ParseError::field(topic, path, p))?;
    }

    if update.is_empty() {
        let mut expected: Vec<&str> = config.sml.keys().map(String::as_str).collect();
        if config.energy.is_some() {
            expected.insert(0, "ENERGY.Power/Total");
        }
        return Err(ParseError::message(topic, Problem::NothingMapped(expected.join(", "))));
    }
    Ok(update)
}
