//! The peer-to-peer energy market of gridmesh, free of IO.
//!
//! * [`clear`]: one 15-minute period's double auction over a tree of zones (feeders and
//!   transformers) with transfer limits, welfare-maximising, exact and deterministic.
//! * [`strategy`]: standing automatic trading strategies that size orders from a site's
//!   forecast and battery state.
//!
//! Prices are integer minor currency units per kWh, energy integer Wh. The service
//! (`gridmesh-server`) stores orders and results and runs the clearing at gate closure.
#![warn(missing_docs)]

mod clearing;
mod curve;
mod order;
pub mod strategy;

pub use clearing::{Clearing, Fill, MAX_ORDER_WH, MAX_PRICE_LIMIT, Trade, ZoneOutcome, clear, clear_hashed};
pub use order::{GridFees, Network, Order, Pricing, Rules, Side, Zone};

use gridmesh_core::{GridNodeId, OrderId, WattHours};
use thiserror::Error;

/// Why a book or a network was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClearingError {
    /// Two zones share an id.
    #[error("zone {0} appears twice")]
    DuplicateZone(GridNodeId),
    /// A zone names a parent that is not a zone.
    #[error("zone {zone} names unknown parent {parent}")]
    UnknownParent {
        /// The zone.
        zone: GridNodeId,
        /// The missing parent.
        parent: GridNodeId,
    },
    /// The zones do not form a forest.
    #[error("zone {0} is part of a cycle; zones must form a tree")]
    Cycle(GridNodeId),
    /// A limit or fee is negative.
    #[error("zone {zone}: {field} must not be negative, got {value}")]
    NegativeZoneValue {
        /// The zone.
        zone: GridNodeId,
        /// The field.
        field: &'static str,
        /// The value.
        value: i64,
    },
    /// The rules themselves are out of bounds.
    #[error("invalid rules: {0}")]
    BadRules(String),
    /// An order names a zone that is not in the network.
    #[error("order {order} is in unknown zone {zone}")]
    UnknownZone {
        /// The order.
        order: OrderId,
        /// The zone it names.
        zone: GridNodeId,
    },
    /// Two orders share an id.
    #[error("order {0} appears twice")]
    DuplicateOrder(OrderId),
    /// Energy must be 1 Wh to [`MAX_ORDER_WH`].
    #[error("order {order}: energy must be 1 to {MAX_ORDER_WH} Wh, got {energy}")]
    BadEnergy {
        /// The order.
        order: OrderId,
        /// The energy given.
        energy: WattHours,
    },
    /// Price must be 0 to the rules' maximum.
    #[error("order {order}: price must be 0 to {max} minor units per kWh, got {price}")]
    BadPrice {
        /// The order.
        order: OrderId,
        /// The price given.
        price: i64,
        /// The highest price allowed.
        max: i64,
    },
    /// An internal check failed; a bug, reported rather than a wrong result.
    #[error("clearing is inconsistent (a bug): {0}")]
    Inconsistent(String),
}
