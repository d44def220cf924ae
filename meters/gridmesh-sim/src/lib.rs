//! `gridmesh-sim`: simulated homes for the demo and the tests.
//!
//! * [`home`]: the physics, IO-free: PV following the sun with passing clouds, a household load,
//!   a battery integrating its state of charge within its limits and efficiency, a meter that
//!   sees what is left; commands and PV limits that hold until their deadline.
//! * [`device`]: a home as a SunSpec device (an integer + scale factor profile and a float/DER
//!   profile, the meter on unit 1 or its own unit) that obeys control writes (storage 124,
//!   inverter limit 123) and their revert timers.
//! * [`server`]: the device over Modbus TCP (optionally accepting one client only, as some
//!   inverters do) or Modbus RTU on a serial line.
//! * [`neighbourhood`]: the file of homes one process serves.
#![warn(missing_docs)]

pub mod device;
pub mod home;
pub mod neighbourhood;
pub mod server;
