//! Why a message or a configuration was refused.

use thiserror::Error;

/// Longest piece of a payload quoted back in an error: payloads come from devices on the LAN
/// and may be anything, so errors quote only their start.
const QUOTE_CHARS: usize = 40;

/// A message the device's parser refused. The device's state is unchanged when this is returned.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{topic}: {}{problem}", .field.as_deref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
pub struct ParseError {
    /// The MQTT topic the message arrived on.
    pub topic: String,
    /// The field of the payload at fault (a JSON path, a template or a topic suffix), if the
    /// problem is with one field rather than the whole message.
    pub field: Option<String>,
    /// What is wrong.
    pub problem: Problem,
}

impl ParseError {
    /// A problem with the whole message.
    pub(crate) fn message(topic: &str, problem: Problem) -> Self {
        Self { topic: topic.to_owned(), field: None, problem }
    }

    /// A problem with one field of the message.
    pub(crate) fn field(topic: &str, field: impl Into<String>, problem: Problem) -> Self {
        Self { topic: topic.to_owned(), field: Some(field.into()), problem }
    }
}

/// What is wrong with a message.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Problem {
    /// The topic is not one this device listens to.
    #[error("not a topic of this device")]
    UnexpectedTopic,
    /// The payload is not UTF-8 text.
    #[error("payload is not UTF-8")]
    NotUtf8,
    /// The payload is not JSON.
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    /// A value has the wrong JSON type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What the format has there.
        expected: &'static str,
        /// The start of what was found.
        found: String,
    },
    /// A value the format requires is absent.
    #[error("missing")]
    Missing,
    /// Text that should be a number is not one.
    #[error("not a number: {0:?}")]
    NotANumber(String),
    /// A number that is NaN or infinite.
    #[error("not a finite number")]
    NotFinite,
    /// A number outside what the field can hold (a state of charge above 100 %, a value beyond
    /// 2^53 where floating point stops counting exactly).
    #[error("{value} is out of range {range}")]
    OutOfRange {
        /// The value, in the unit of the payload.
        value: f64,
        /// The allowed range, in words.
        range: &'static str,
    },
    /// A cumulative energy counter below zero.
    #[error("energy counter is negative: {0} Wh")]
    NegativeCounter(i64),
    /// The payload carries none of the fields the device's configuration maps.
    #[error("payload carries none of the configured fields ({0})")]
    NothingMapped(String),
    /// A Home Assistant `value_template` beyond the supported forms.
    #[error(
        "unsupported value_template {0:?}: only {{{{ value }}}}, {{{{ value_json.a.b }}}} and {{{{ value_json['a'] }}}} are understood"
    )]
    UnsupportedTemplate(String),
    /// A unit of measurement this crate cannot convert for the sensor's quantity.
    #[error("unsupported unit {unit:?} for {quantity}")]
    UnsupportedUnit {
        /// The unit as announced.
        unit: String,
        /// The quantity the sensor was mapped to.
        quantity: &'static str,
    },
}

impl Problem {
    /// A wrong-type problem quoting the start of what was found.
    pub(crate) fn wrong_type(expected: &'static str, found: &serde_json::Value) -> Self {
        Self::WrongType { expected, found: quote(&found.to_string()) }
    }

    /// A not-a-number problem quoting the start of the text.
    pub(crate) fn not_a_number(text: &str) -> Self {
        Self::NotANumber(quote(text))
    }
}

/// The start of `text`, cut on a character boundary.
pub(crate) fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A device configuration that cannot be used, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("device {device:?}: `{field}`: {problem}")]
pub struct ConfigError {
    /// The device's name.
    pub device: String,
    /// The field at fault, as a dotted path in the configuration.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}
