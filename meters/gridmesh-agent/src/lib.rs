//! The gridmesh edge agent (in progress): device protocols first.
//!
//! * [`buffer`]: the disk buffer that neither a `kill -9` nor an outage makes lose a batch.
//! * [`sunspec`]: SunSpec over Modbus TCP: discovery (marker at 40000, 0 or 50000, the model
//!   chain), reading whole models in one request each (so scale factors come with their values),
//!   and writing controls.
#![warn(missing_docs)]

pub mod buffer;
pub mod sunspec;
