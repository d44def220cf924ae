//! IO-free parsers for the MQTT messages of home-energy devices, into one normalised state per
//! device in the vocabulary of [`gridmesh_core::Reading`].
//!
//! The agent subscribes to the home broker where devices publish in their own formats; for each
//! configured device it keeps a [`Device`] and hands it every message of the device's
//! [subscriptions](Device::subscriptions) with [`Device::apply`]. Families:
//!
//! * [Tasmota](crate::config::TasmotaConfig) `tele/<topic>/SENSOR`: `ENERGY` and smart-meter
//!   (SML) objects with configured field names;
//! * [Shelly Gen2+](crate::config::ShellyConfig) energy meters: full status topics and partial
//!   `NotifyStatus` notifications;
//! * [OpenDTU / AhoyDTU](crate::config::DtuConfig): one plain number per topic;
//! * [Home Assistant discovery](crate::ha): sensors announced with long or abbreviated keys.
//!
//! Rules common to every family:
//!
//! * A message is read completely or not at all: a malformed or unexpected message never panics,
//!   returns a [`ParseError`] naming the topic, the field and the problem, and leaves the state as
//!   it was. An accepted message changes only the fields it carries.
//! * Power is in whole W (grid import positive, battery charging positive), energy counters in
//!   whole Wh and never negative, state of charge in basis points. Values in kW or kWh are
//!   scaled by 1000; every value is rounded to the nearest integer, halves away from zero.
//! * The `invert_sign` quirk negates every power value of the device; counters are mapped to
//!   import or export explicitly and are not touched.
#![warn(missing_docs)]

pub mod config;
mod device;
mod dtu;
pub mod error;
pub mod ha;
mod json;
mod shelly;
pub mod state;
mod tasmota;

pub use config::{DeviceConfig, DtuLimit, Family, LimitFormat};
pub use device::{Applied, Device};
pub use error::{ConfigError, ParseError, Problem};
pub use ha::{SensorDefinition, ValueTemplate};
pub use state::{DeviceState, Field, Mapping, MappingError, Quantity, Role, Unit};
