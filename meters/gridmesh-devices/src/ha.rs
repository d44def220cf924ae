//! Home Assistant MQTT discovery: sensors announced on
//! `<discovery_prefix>/sensor/[<node_id>/]<object_id>/config`.
//!
//! A discovery config is read with long keys (`state_topic`, `unit_of_measurement`,
//! `device_class`, `value_template`, `unique_id`, `object_id`) or their abbreviations (`stat_t`,
//! `unit_of_meas`, `dev_cla`, `val_tpl`, `uniq_id`, `obj_id`); a topic that starts or ends
//! with `~` has it replaced by the config's `~` base topic. An empty payload removes the sensor.
//!
//! # Which field a sensor feeds
//!
//! An explicit entry in the device's `fields` (by `unique_id`) wins. Otherwise:
//!
//! * `device_class` `power` (or no class and a unit W/kW) → the role's power field;
//! * `device_class` `battery` with unit `%` → state of charge;
//! * `device_class` `energy` (or no class and a unit Wh/kWh) → the role's energy counter for
//!   the *reverse* direction (grid export, battery discharge) when the sensor's `name`,
//!   `unique_id` or object id names it — split into words at every character that is not a
//!   letter or digit, a word that contains `export`, `return`, `feed` or `discharg`, or is
//!   exactly `out` (`Total_out`, `energy_returned`, `feed_in`) — and for the forward direction
//!   (grid import, PV production, battery charge) otherwise;
//! * any other class (voltage, temperature...) is not read: the config is
//!   [ignored](crate::Applied::Ignored), not refused.
//!
//! # Value templates
//!
//! Only templates that pick a value are understood: `{{ value }}`, `{{ value_json.a.b }}`,
//! `{{ value_json['a'] }}` (or `["a"]`, or an array index `[0]`) and combinations of these
//! steps. Anything else (filters, arithmetic, conditionals) is refused naming the template.
//! The value picked may be a JSON number or a string holding one.

use serde_json::{Map, Value};

use crate::config::HomeAssistantConfig;
use crate::error::{ParseError, Problem};
use crate::json;
use crate::state::{Field, Mapping, Quantity, Unit};

/// A sensor learnt from a discovery config: where its values arrive and what they mean.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorDefinition {
    /// The discovery topic that announced it (its identity: a later config there replaces it).
    pub discovery_topic: String,
    /// The sensor's `unique_id`, if it has one.
    pub unique_id: Option<String>,
    /// The topic its state is published on (with `~` expanded).
    pub state_topic: String,
    /// The field and unit its value is read into.
    pub mapping: Mapping,
    /// How the value is picked out of a state payload.
    pub template: ValueTemplate,
}

impl SensorDefinition {
    /// The value of a state payload, in the sensor's unit.
    ///
    /// # Errors
    /// A payload the template cannot pick a number from.
    pub fn read(&self, topic: &str, payload: &[u8]) -> Result<f64, ParseError> {
        let text = json::text(topic, payload)?;
        self.template.extract(text).map_err(|p| ParseError::field(topic, self.template.source(), p))
    }
}

/// What a discovery message means for the device.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Discovery {
    /// A sensor to read.
    Sensor(SensorDefinition),
    /// An empty config: the sensor at this discovery topic is gone.
    Removed,
    /// A valid config this device does not read, and why.
    Ignored(String),
}

/// The subscription filter for this device's discovery configs.
pub(crate) fn discovery_filter(config: &HomeAssistantConfig) -> String {
    match &config.node_id {
        Some(node) => format!("{}/sensor/{node}/+/config", config.discovery_prefix),
        None => format!("{}/sensor/#", config.discovery_prefix),
    }
}

/// The object id, when `topic` is a discovery topic of this device.
pub(crate) fn discovery_object<'t>(config: &HomeAssistantConfig, topic: &'t str) -> Option<&'t str> {
    let middle = topic
        .strip_prefix(config.discovery_prefix.as_str())?
        .strip_prefix("/sensor/")?
        .strip_suffix("/config")?;
    match (middle.split_once('/'), &config.node_id) {
        (Some((node, object)), Some(want)) if node == want && !object.contains('/') => Some(object),
        (Some((_, object)), None) if !object.contains('/') => Some(object),
        (None, None) => Some(middle),
        _ => None,
    }
}

/// Reads one discovery config published on `topic` (a topic [`discovery_object`] accepts).
pub(crate) fn parse_discovery(
    config: &HomeAssistantConfig,
    topic: &str,
    object_id: &str,
    payload: &[u8],
) -> Result<Discovery, ParseError> {
    if payload.is_empty() {
        return Ok(Discovery::Removed);
    }
    let root = json::object(topic, payload)?;
    let keys = Keys { topic, root: &root };
    let base = keys.text("~", "~")?;
    let unique_id = keys.text("unique_id", "uniq_id")?;
    if let Some(id) = unique_id
        && config.ignore.iter().any(|i| i == id)
    {
        return Ok(Discovery::Ignored(format!("unique_id {id:?} is in `ignore`")));
    }
    let explicit = unique_id.and_then(|id| config.fields.get(id)).copied();
    if config.node_id.is_none() && explicit.is_none() {
        return Ok(Discovery::Ignored("not named in `fields`".to_owned()));
    }

    let unit_text = keys.text("unit_of_measurement", "unit_of_meas")?;
    let unit = unit_text.and_then(Unit::from_symbol);
    let class = keys.text("device_class", "dev_cla")?;
    let quantity = match (explicit, class) {
        (Some(field), _) => field.quantity(),
        (None, Some("power")) => Quantity::Power,
        (None, Some("energy")) => Quantity::Energy,
        (None, Some("battery")) => Quantity::StateOfCharge,
        (None, Some(other)) => return Ok(Discovery::Ignored(format!("device_class {other:?} is not read"))),
        (None, None) => match unit {
            Some(u) if u.quantity() != Quantity::StateOfCharge => u.quantity(),
            _ => return Ok(Discovery::Ignored("no device_class and no power or energy unit".to_owned())),
        },
    };
    let unsupported = || {
        let unit = unit_text.unwrap_or("").to_owned();
        ParseError::field(
            topic,
            "unit_of_measurement",
            Problem::UnsupportedUnit { unit, quantity: quantity.name() },
        )
    };
    let unit = unit.filter(|u| u.quantity() == quantity).ok_or_else(unsupported)?;
    let field = explicit.unwrap_or_else(|| match quantity {
        Quantity::Power => config.role.power(),
        Quantity::StateOfCharge => Field::BatterySoc,
        Quantity::Energy => {
            let words = [keys.text("name", "name").ok().flatten(), unique_id, Some(object_id)];
            let object = keys.text("object_id", "obj_id").ok().flatten();
            if words.into_iter().chain([object]).flatten().any(names_reverse_flow) {
                config.role.reverse_energy()
            } else {
                config.role.energy()
            }
        }
    });
    let mapping = Mapping::new(field, unit).map_err(|_| unsupported())?;

    let state_topic = keys
        .text("state_topic", "stat_t")?
        .ok_or_else(|| ParseError::field(topic, "state_topic", Problem::Missing))?;
    let state_topic =
        expand_base(state_topic, base).ok_or_else(|| ParseError::field(topic, "~", Problem::Missing))?;
    if state_topic.is_empty() || state_topic.contains(['+', '#']) {
        let found = Value::String(state_topic);
        return Err(ParseError::field(
            topic,
            "state_topic",
            Problem::wrong_type("a topic without wildcards", &found),
        ));
    }
    let template = keys.text("value_template", "val_tpl")?.unwrap_or("{{ value }}");
    let template =
        ValueTemplate::parse(template).map_err(|p| ParseError::field(topic, "value_template", p))?;

    Ok(Discovery::Sensor(SensorDefinition {
        discovery_topic: topic.to_owned(),
        unique_id: unique_id.map(str::to_owned),
        state_topic,
        mapping,
        template,
    }))
}

/// Looks up keys by their long name or abbreviation.
struct Keys<'a> {
    topic: &'a str,
    root: &'a Map<String, Value>,
}

impl<'a> Keys<'a> {
    /// The string at `long` (or else `short`); `null` as absent.
    fn text(&self, long: &str, short: &str) -> Result<Option<&'a str>, ParseError> {
        let (key, value) = match (self.root.get(long), self.root.get(short)) {
            (Some(v), _) => (long, v),
            (None, Some(v)) => (short, v),
            (None, None) => return Ok(None),
        };
        match value {
            Value::String(s) => Ok(Some(s.as_str())),
            Value::Null => Ok(None),
            other => Err(ParseError::field(self.topic, key, Problem::wrong_type("a string", other))),
        }
    }
}

/// `topic` with a leading or trailing `~` replaced by `base`; `None` when `~` is used without
/// a base.
fn expand_base(topic: &str, base: Option<&str>) -> Option<String> {
    if let Some(rest) = topic.strip_prefix('~') {
        Some(format!("{}{rest}", base?))
    } else if let Some(rest) = topic.strip_suffix('~') {
        Some(format!("{rest}{}", base?))
    } else {
        Some(topic.to_owned())
    }
}

/// Whether a sensor's name names the reverse direction of energy flow (see the module docs).
fn names_reverse_flow(text: &str) -> bool {
    text.to_lowercase().split(|c: char| !c.is_alphanumeric()).any(|word| {
        word == "out" || ["export", "return", "feed", "discharg"].iter().any(|w| word.contains(w))
    })
}

/// A supported `value_template`: picks one value out of a state payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueTemplate {
    source: String,
    /// `None` for `{{ value }}`; the steps into the JSON after `value_json` otherwise.
    json_path: Option<Vec<Step>>,
}

/// One step into a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

impl ValueTemplate {
    /// Parses a template of one of the supported forms (see the module docs).
    ///
    /// # Errors
    /// [`Problem::UnsupportedTemplate`] naming the template for any other.
    pub fn parse(source: &str) -> Result<Self, Problem> {
        let refuse = || Problem::UnsupportedTemplate(crate::error::quote(source));
        let inner = source
            .trim()
            .strip_prefix("{{")
            .and_then(|s| s.strip_suffix("}}"))
            .map(str::trim)
            .ok_or_else(refuse)?;
        if inner == "value" {
            return Ok(Self { source: source.to_owned(), json_path: None });
        }
        let mut rest = inner.strip_prefix("value_json").ok_or_else(refuse)?;
        let mut path = Vec::new();
        while !rest.is_empty() {
            let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
            if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(|c: char| !is_name(c)).unwrap_or(after.len());
                if end == 0 {
                    return Err(refuse());
                }
                path.push(Step::Key(after[..end].to_owned()));
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let (inside, after) = after.split_once(']').ok_or_else(refuse)?;
                let quoted = ['\'', '"'].into_iter().find_map(|q| inside.strip_prefix(q)?.strip_suffix(q));
                let step = match quoted {
                    Some(key) if !key.contains(['\'', '"']) => Step::Key(key.to_owned()),
                    Some(_) => return Err(refuse()),
                    None => Step::Index(inside.parse().map_err(|_| refuse())?),
                };
                path.push(step);
                rest = after;
            } else {
                return Err(refuse());
            }
        }
        Ok(Self { source: source.to_owned(), json_path: Some(path) })
    }

    /// The template as written.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The number the template picks out of `payload`.
    ///
    /// # Errors
    /// A payload that is not JSON (for `value_json`), a path that is not there, or a value that
    /// is not a number or a string holding one.
    pub fn extract(&self, payload: &str) -> Result<f64, Problem> {
        let Some(path) = &self.json_path else {
            return json::text_number(payload);
        };
        let root: Value = serde_json::from_str(payload).map_err(|e| Problem::NotJson(e.to_string()))?;
        let mut current = &root;
        for step in path {
            let next = match step {
                Step::Key(key) => current.as_object().and_then(|o| o.get(key)),
                Step::Index(i) => current.as_array().and_then(|a| a.get(*i)),
            };
            current = next.ok_or(Problem::Missing)?;
        }
        match current {
            Value::String(s) => json::text_number(s),
            other => json::number(other)?.ok_or(Problem::Missing),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn templates() {
        let t = ValueTemplate::parse("{{ value_json.SML.Total_in }}").unwrap();
        assert_eq!(t.extract(r#"{"SML":{"Total_in":12.5}}"#).unwrap(), 12.5);
        let t = ValueTemplate::parse("{{value_json['ENERGY'][\"Power\"][1]}}").unwrap();
        assert_eq!(t.extract(r#"{"ENERGY":{"Power":[1,"7.5"]}}"#).unwrap(), 7.5);
        assert_eq!(t.extract(r#"{"ENERGY":{"Power":[1]}}"#).unwrap_err(), Problem::Missing);
        let t = ValueTemplate::parse(" {{ value }} ").unwrap();
        assert_eq!(t.extract("42\n").unwrap(), 42.0);
        for bad in [
            "{{ value | float }}",
            "{{ value_json.a * 1000 }}",
            "value_json.a",
            "{{ value_json. }}",
            "{{ value_json['a }}",
            "{% if value %}1{% endif %}",
            "{{ states('sensor.x') }}",
        ] {
            assert!(matches!(ValueTemplate::parse(bad), Err(Problem::UnsupportedTemplate(_))), "{bad}");
        }
    }

    #[test]
    fn reverse_flow_words() {
        for yes in
            ["Grid export", "smartmeter_total_out", "energy_returned_tariff_1", "Feed-in", "BatteryDischarge"]
        {
            assert!(names_reverse_flow(yes), "{yes}");
        }
        for no in ["Grid import", "smartmeter_total_in", "energy_delivered", "output_power_total", "without"]
        {
            assert!(!names_reverse_flow(no), "{no}");
        }
    }

    #[test]
    fn base_topic() {
        assert_eq!(expand_base("~/state", Some("dev/x")).unwrap(), "dev/x/state");
        assert_eq!(expand_base("state/~", Some("x")).unwrap(), "state/x");
        assert_eq!(expand_base("~/state", None), None);
        assert_eq!(expand_base("plain", None).unwrap(), "plain");
    }
}
