//! Reading numbers out of payloads without trusting them.

use serde_json::{Map, Value};

use crate::error::{ParseError, Problem};

/// The payload as UTF-8 text.
pub(crate) fn text<'a>(topic: &str, payload: &'a [u8]) -> Result<&'a str, ParseError> {
    std::str::from_utf8(payload).map_err(|_| ParseError::message(topic, Problem::NotUtf8))
}

/// The payload as a JSON value.
pub(crate) fn value(topic: &str, payload: &[u8]) -> Result<Value, ParseError> {
    serde_json::from_slice(payload).map_err(|e| ParseError::message(topic, Problem::NotJson(e.to_string())))
}

/// The payload as a JSON object.
pub(crate) fn object(topic: &str, payload: &[u8]) -> Result<Map<String, Value>, ParseError> {
    match value(topic, payload)? {
        Value::Object(map) => Ok(map),
        other => Err(ParseError::message(topic, Problem::wrong_type("a JSON object", &other))),
    }
}

/// A JSON number; `null` counts as absent (Shelly sends `null` for what it does not measure).
pub(crate) fn number(v: &Value) -> Result<Option<f64>, Problem> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_f64().map(Some).ok_or(Problem::NotFinite),
        other => Err(Problem::wrong_type("a number", other)),
    }
}

/// A JSON number, or an array of numbers (one per phase or channel) which is summed.
pub(crate) fn number_or_sum(v: &Value) -> Result<Option<f64>, Problem> {
    match v {
        Value::Array(items) if !items.is_empty() => {
            let mut sum = 0.0;
            for item in items {
                sum += number(item)?.ok_or_else(|| Problem::wrong_type("an array of numbers", v))?;
            }
            Ok(Some(sum))
        }
        Value::Array(_) => Ok(None),
        other => number(other),
    }
}

/// A number written as text, surrounding whitespace (a trailing newline) tolerated.
pub(crate) fn text_number(text: &str) -> Result<f64, Problem> {
    let trimmed = text.trim();
    let value: f64 = trimmed.parse().map_err(|_| Problem::not_a_number(trimmed))?;
    if value.is_finite() { Ok(value) } else { Err(Problem::NotFinite) }
}

/// The value at a dotted path of object keys, if every step exists.
pub(crate) fn at_path<'a>(root: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut keys = path.split('.');
    let mut current = root.get(keys.next()?)?;
    for key in keys {
        current = current.as_object()?.get(key)?;
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use serde_json::json;

    use super::*;

    #[test]
    fn numbers_arrays_and_text() {
        assert_eq!(number_or_sum(&json!([8.5, 0, 1.5])).unwrap(), Some(10.0));
        assert_eq!(number_or_sum(&json!(3)).unwrap(), Some(3.0));
        assert_eq!(number_or_sum(&json!(null)).unwrap(), None);
        assert!(number_or_sum(&json!([1, "x"])).is_err());
        assert_eq!(text_number(" 123.4\n").unwrap(), 123.4);
        assert_eq!(text_number("nan").unwrap_err(), Problem::NotFinite);
        assert_eq!(text_number("").unwrap_err(), Problem::NotANumber(String::new()));
        let root = json!({"SML": {"Total_in": 1.5}});
        assert_eq!(at_path(root.as_object().unwrap(), "SML.Total_in"), Some(&json!(1.5)));
        assert_eq!(at_path(root.as_object().unwrap(), "SML.Total_in.x"), None);
    }
}
