//! The gridmesh edge agent (in progress).
//!
//! * [`config`]: one TOML file, refused with the field named when wrong.
//! * [`enroll`]: registers the device key with the service.
//! * [`home`]: MQTT devices on the home broker, parsed by `gridmesh-devices`.
//! * [`key`]: the device key, created on first start (mode 0600).
//! * [`buffer`]: the disk buffer that neither a `kill -9` nor an outage makes lose a batch.
//! * [`uplink`]: QoS 1 to the central broker (TLS), a batch leaves the buffer only when its
//!   signed commit acknowledgement arrives.
//! * [`sunspec`]: SunSpec over Modbus TCP: discovery (marker at 40000, 0 or 50000, the model
//!   chain), reading whole models in one request each (so scale factors come with their values),
//!   and writing controls.
//! * [`setpoints`]: commands checked, clamped, turned into SunSpec writes with revert timers.
//! * [`run`]: the poll loop that ties them together.
#![warn(missing_docs)]

pub mod buffer;
pub mod config;
pub mod enroll;
pub mod home;
pub mod key;
pub mod run;
pub mod setpoints;
pub mod sunspec;
pub mod uplink;
