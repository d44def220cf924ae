//! The gridmesh edge agent (in progress): device protocols first.
//!
//! * [`sunspec`]: SunSpec over Modbus TCP: discovery (marker at 40000, 0 or 50000, the model
//!   chain), reading whole models in one request each (so scale factors come with their values),
//!   and writing controls.
#![warn(missing_docs)]

pub mod sunspec;
