//! OpenDTU and AhoyDTU: one plain number per topic (`solar/<serial>/0/power` → `"123.4"`).
//!
//! The topic suffix after the configured base topic selects the field and unit; surrounding
//! whitespace (a trailing newline) is tolerated, anything that is not a finite number is refused.

use crate::config::DtuConfig;
use crate::error::{ParseError, Problem};
use crate::json;
use crate::state::DeviceState;

/// The update one value message carries.
pub(crate) fn parse(config: &DtuConfig, topic: &str, payload: &[u8]) -> Result<DeviceState, ParseError> {
    let mapping = topic
        .strip_prefix(config.base_topic.as_str())
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|suffix| Some((suffix, config.values.get(suffix)?)));
    let Some((suffix, mapping)) = mapping else {
        return Err(ParseError::message(topic, Problem::UnexpectedTopic));
    };
    let text = json::text(topic, payload)?;
    let mut update = DeviceState::default();
    json::text_number(text)
        .and_then(|value| update.put(*mapping, value))
        .map_err(|p| ParseError::field(topic, suffix, p))?;
    Ok(update)
}
