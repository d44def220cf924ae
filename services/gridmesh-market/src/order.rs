//! Orders, market rules and the zones they trade across.

use std::collections::BTreeMap;

use gridmesh_core::{GridNodeId, GridNodeKind, OrderId, SiteId, Timestamp, Topology, WattHours};
use serde::{Deserialize, Serialize};

use crate::ClearingError;

/// Buy (a bid) or sell (an offer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// A bid: buy up to `energy` at up to `price`.
    Buy,
    /// An offer: sell up to `energy` at `price` or more.
    Sell,
}

impl Side {
    /// `"buy"` or `"sell"`, as stored and shown.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }

    /// Parses `"buy"` or `"sell"`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "buy" => Some(Side::Buy),
            "sell" => Some(Side::Sell),
            _ => None,
        }
    }
}

/// A limit order for one delivery period. Orders are divisible: any part of `energy` may fill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The order's id; the last tie-breaker.
    pub id: OrderId,
    /// The site that delivers (sell) or takes (buy) the energy.
    pub site: SiteId,
    /// The zone (the site's feeder) where the energy enters or leaves the grid.
    pub zone: GridNodeId,
    /// Buy or sell.
    pub side: Side,
    /// Limit price in minor currency units per kWh: the most a buyer pays, the least a seller
    /// takes.
    pub price: i64,
    /// Energy in the period, in Wh; more than zero.
    pub energy: WattHours,
    /// When the order (or its last replacement) was placed: earlier orders fill first at equal
    /// prices.
    pub submitted_at: Timestamp,
}

/// How trades are priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pricing {
    /// Uniform price per zone: every buyer pays, and every seller receives, its zone's clearing
    /// price. Differences between zones are congestion rent for the network.
    #[default]
    PayAsClear,
    /// Every buyer pays its own limit price and every seller receives its own limit price; the
    /// spread is the market's surplus.
    PayAsBid,
}

impl Pricing {
    /// `"pay_as_clear"` or `"pay_as_bid"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Pricing::PayAsClear => "pay_as_clear",
            Pricing::PayAsBid => "pay_as_bid",
        }
    }
}

/// The rules a period clears under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// Pay-as-clear (default) or pay-as-bid.
    pub pricing: Pricing,
    /// Highest accepted limit price, minor units per kWh (lowest is 0).
    pub max_price: i64,
}

impl Default for Rules {
    fn default() -> Self {
        Self { pricing: Pricing::PayAsClear, max_price: 10_000 }
    }
}

/// A market zone: a feeder or transformer, with what it may pass to its parent in one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    /// The grid node.
    pub id: GridNodeId,
    /// The zone upstream; `None` for a root. Roots are separate markets.
    pub parent: Option<GridNodeId>,
    /// Most energy the zone may draw from its parent in one period.
    pub import_limit: WattHours,
    /// Most energy the zone may push to its parent in one period.
    pub export_limit: WattHours,
    /// Network fee in minor units per kWh for every trade whose path runs through this zone.
    pub fee_per_kwh: i64,
}

/// Network fees per kind of zone, minor units per kWh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GridFees {
    /// For each feeder a trade's path touches.
    pub feeder: i64,
    /// For each transformer a trade's path crosses.
    pub transformer: i64,
}

/// The zones of a market, validated: a forest with non-negative limits and fees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub(crate) zones: Vec<Zone>,
    pub(crate) index: BTreeMap<GridNodeId, usize>,
    pub(crate) parent: Vec<Option<usize>>,
    pub(crate) children: Vec<Vec<usize>>,
    /// Parents before children, roots by id.
    pub(crate) top_down: Vec<usize>,
}

impl Network {
    /// Validates and indexes zones.
    ///
    /// # Errors
    /// A duplicate zone, an unknown parent, a cycle, or a negative limit or fee.
    pub fn new(zones: impl IntoIterator<Item = Zone>) -> Result<Self, ClearingError> {
        let mut zones: Vec<Zone> = zones.into_iter().collect();
        zones.sort_by_key(|z| z.id);
        let mut index = BTreeMap::new();
        for (i, z) in zones.iter().enumerate() {
            for (field, value) in [
                ("import_limit", z.import_limit.get()),
                ("export_limit", z.export_limit.get()),
                ("fee_per_kwh", z.fee_per_kwh),
            ] {
                if value < 0 {
                    return Err(ClearingError::NegativeZoneValue { zone: z.id, field, value });
                }
            }
            if index.insert(z.id, i).is_some() {
                return Err(ClearingError::DuplicateZone(z.id));
            }
        }
        let mut parent = vec![None; zones.len()];
        let mut children = vec![Vec::new(); zones.len()];
        for (i, z) in zones.iter().enumerate() {
            if let Some(p) = z.parent {
                let pi = *index.get(&p).ok_or(ClearingError::UnknownParent { zone: z.id, parent: p })?;
                parent[i] = Some(pi);
                children[pi].push(i);
            }
        }
        let mut top_down: Vec<usize> = (0..zones.len()).filter(|&i| parent[i].is_none()).collect();
        let mut k = 0;
        while k < top_down.len() {
            top_down.extend_from_slice(&children[top_down[k]]);
            k += 1;
        }
        if top_down.len() != zones.len() {
            // Zones never reached from a root sit on a cycle (or hang below one).
            let reached: std::collections::BTreeSet<usize> = top_down.iter().copied().collect();
            let stuck = (0..zones.len()).find(|i| !reached.contains(i)).map_or(zones[0].id, |i| zones[i].id);
            return Err(ClearingError::Cycle(stuck));
        }
        Ok(Self { zones, index, parent, children, top_down })
    }

    /// The market zones of a grid: every node, with its power limits held for one 15-minute
    /// period (W / 4, rounded down) and the fee of its kind.
    ///
    /// # Errors
    /// A negative fee.
    pub fn from_topology(topology: &Topology, fees: GridFees) -> Result<Self, ClearingError> {
        Self::new(topology.nodes().map(|n| Zone {
            id: n.id,
            parent: n.parent,
            import_limit: WattHours(n.import_limit.get() / 4),
            export_limit: WattHours(n.export_limit.get() / 4),
            fee_per_kwh: match n.kind {
                GridNodeKind::Feeder => fees.feeder,
                GridNodeKind::Transformer => fees.transformer,
            },
        }))
    }

    /// The zones, ordered by id.
    #[must_use]
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// The zone with this id.
    #[must_use]
    pub fn zone(&self, id: GridNodeId) -> Option<&Zone> {
        self.index.get(&id).map(|&i| &self.zones[i])
    }
}
