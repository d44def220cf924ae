//! Domain types of gridmesh, free of IO.
//!
//! Everything here is plain data and plain functions: no async runtime, no database, no network.
//! The optimizer, the market clearing, settlement, ingest and the edge agent all speak these
//! types, so the invariants of `DESIGN.md` live here once:
//!
//! * power in watts ([`Watts`]), energy in watt-hours ([`WattHours`]), money in integer minor
//!   currency units ([`MinorUnits`]), all integers;
//! * site power is positive when the site imports from the grid;
//! * time is UTC and market/settlement periods are 15-minute intervals aligned to the hour
//!   ([`Period`]).
#![warn(missing_docs)]

pub mod enrolment;
pub mod flags;
pub mod forecast;
pub mod grid_file;
pub mod ids;
pub mod period;
pub mod reading;
pub mod role;
pub mod setpoint;
pub mod site;
pub mod solar;
pub mod summary;
pub mod topology;
pub mod units;

pub use enrolment::{CodeError, EnrolmentCode};
pub use flags::ReadingFlags;
pub use ids::{AgentId, CommandId, DeviceId, GridNodeId, OrderId, SiteId, StrategyId, UserId};
pub use period::{Period, PeriodError, PeriodRange};
pub use reading::{Reading, ReadingError, StateOfCharge};
pub use role::{Role, UnknownRole};
pub use setpoint::{Setpoint, SetpointError, SetpointLimits};
pub use site::{BatterySpec, GeoPoint, GridConnection, PvOrientation, Site, SiteError};
pub use summary::{Counters, PeriodSummary, Point, summarize};
pub use topology::{GridNode, GridNodeKind, LimitWindow, Topology, TopologyError};
pub use units::{MinorUnits, WattHours, Watts};

/// A point in time. gridmesh keeps all time in UTC; local time exists only at the edges
/// (display, a utility's "17:00 to 19:00").
pub type Timestamp = chrono::DateTime<chrono::Utc>;
