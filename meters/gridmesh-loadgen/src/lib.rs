//! Simulated homes publishing signed telemetry, for the demo, the ingest benchmark and the
//! end-to-end tests. It speaks the real protocol (`gridmesh-wire`) over the real broker, and
//! creates its homes through the HTTP API like any other client (it is an edge crate: it knows
//! nothing of the service's database). With `agents` it provisions homes for `gridmesh-sim`
//! devices read by real `gridmesh-agent`s instead.

/// The home physics, shared with the SunSpec device simulator.
pub use gridmesh_sim::home;
pub mod edge;
pub mod neighbourhood;
pub mod provision;
pub mod publisher;

use chrono::Duration;
use gridmesh_core::Timestamp;
use gridmesh_wire::TelemetryBatch;

use crate::neighbourhood::SimHome;

/// Reads `count` readings from a home, one every `step`, ending at `until`, as the next batch
/// of its agent (advancing its sequence number).
pub fn next_batch(home: &mut SimHome, until: Timestamp, count: usize, step: Duration) -> TelemetryBatch {
    let first_seq = home.next_seq;
    let readings = (0..count).map(|i| home.home.read(until - step * (count - 1 - i) as i32)).collect();
    home.next_seq += count as u64;
    TelemetryBatch { agent: home.agent, site: home.site, first_seq, readings }
}
