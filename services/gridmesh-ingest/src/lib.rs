//! Telemetry ingest.
//!
//! IO-free parts, tested on their own: [`plausibility`] (which readings not to take as truth;
//! day or night comes from `gridmesh_core::solar`); the per-period counter summaries that merge in any
//! order are domain types in `gridmesh_core::summary`. The [`worker`] wraps them: it consumes signed batches from
//! MQTT, verifies and stores them in PostgreSQL, and acknowledges only after the commit.

pub mod maintenance;
pub mod plausibility;
pub mod worker;
