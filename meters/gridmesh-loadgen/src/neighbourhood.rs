//! A simulated neighbourhood as a plan, without IO: one transformer, feeders of up to 25 homes,
//! an owner, sites, agents and their device keys. Ids and keys derive from the neighbourhood's
//! name and the home's number, so provisioning again finds the same homes.
//!
//! [`crate::provision`] creates a plan through the HTTP API, as an operator and the residents
//! would; central tests store the same plan directly (`gridmesh_db::ensure_neighbourhood`).

use gridmesh_core::{
    AgentId, BatterySpec, GeoPoint, GridConnection, GridNode, GridNodeId, GridNodeKind, Reading, Role, Site,
    SiteId, UserId, WattHours, Watts,
};
use gridmesh_wire::KeyPair;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::home::Home;

/// Homes per feeder.
pub const HOMES_PER_FEEDER: usize = 25;

/// One provisioned home: who it is, its key, and where its sequence numbers continue.
#[derive(Debug)]
pub struct SimHome {
    /// The site.
    pub site: SiteId,
    /// The agent.
    pub agent: AgentId,
    /// The agent's device key.
    pub key: KeyPair,
    /// The next sequence number to use.
    pub next_seq: u64,
    /// Its physics.
    pub home: Home,
}

/// A neighbourhood to provision: everything the service must know, in the order it must learn
/// it (owner, then nodes with parents first, then sites, then agents).
#[derive(Debug)]
pub struct Plan {
    /// The account that owns every home (the residents, as one prosumer).
    pub owner: UserId,
    /// The owner's name.
    pub owner_name: String,
    /// The owner's role.
    pub owner_role: Role,
    /// The transformer, then its feeders.
    pub nodes: Vec<GridNode>,
    /// The homes.
    pub homes: Vec<PlannedHome>,
}

/// One home of a [`Plan`].
#[derive(Debug)]
pub struct PlannedHome {
    /// The site as the service stores it.
    pub site: Site,
    /// The agent that speaks for it.
    pub agent: AgentId,
    /// The agent's name.
    pub agent_name: String,
    /// The agent's device key.
    pub key: KeyPair,
    /// Its physics, from the start.
    pub home: Home,
}

impl PlannedHome {
    /// The home, provisioned: its agent continues at `next_seq` (what the service answered) and
    /// its physics from the last reading the service stored for the site, so counters never run
    /// backwards and the battery keeps its charge across restarts.
    #[must_use]
    pub fn start(self, next_seq: u64, last: Option<&Reading>) -> SimHome {
        let mut home = self.home;
        if let Some(last) = last {
            home.resume_from(last);
        }
        SimHome { site: self.site.id, agent: self.agent, key: self.key, next_seq, home }
    }
}

fn derive(name: &str, what: &str, n: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"gridmesh-sim\0");
    h.update(name.as_bytes());
    h.update([0]);
    h.update(what.as_bytes());
    h.update(n.to_be_bytes());
    h.finalize().into()
}

fn id16(name: &str, what: &str, n: u64) -> [u8; 16] {
    let b = derive(name, what, n);
    let mut out = [0_u8; 16];
    out.copy_from_slice(&b[..16]);
    // Mark as a version 4 (random) UUID so the ids look like any other.
    out[6] = (out[6] & 0x0f) | 0x40;
    out[8] = (out[8] & 0x3f) | 0x80;
    out
}

/// A standing market strategy, as `POST /v1/market/strategies` takes it. The market's own type
/// is central; the edge only sends its JSON, like any other API client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Strategy {
    /// Sell the PV surplus at `min_price` or more (minor units per kWh).
    SellSurplus {
        /// Lowest price.
        min_price: i64,
    },
    /// Buy to charge the battery towards `target_soc_pct` at `max_price` or less.
    BuyToCharge {
        /// Highest price.
        max_price: i64,
        /// State of charge to charge towards, percent.
        target_soc_pct: u8,
    },
    /// Buy the shortfall at `max_price` or less.
    BuyShortfall {
        /// Highest price.
        max_price: i64,
    },
    /// Sell stored energy above `reserve_soc_pct` at `min_price` or more.
    SellFromBattery {
        /// Lowest price.
        min_price: i64,
        /// State of charge kept for the home, percent.
        reserve_soc_pct: u8,
    },
}

/// The standing strategies a simulated home trades with: homes with a battery sell what it
/// holds above 30 % from 19 to 23 minor units per kWh and buy to charge below 12 to 15; homes
/// without one sell their PV surplus from 9 to 13 and buy their shortfall up to 22 to 29.
#[must_use]
pub fn strategies_for(home: &Home) -> Vec<Strategy> {
    let s = (home.seed % 5) as i64;
    if home.battery.is_some() {
        vec![
            Strategy::SellFromBattery { min_price: 19 + s, reserve_soc_pct: 30 },
            Strategy::BuyToCharge { max_price: 12 + s.min(3), target_soc_pct: 90 },
        ]
    } else {
        vec![
            Strategy::SellSurplus { min_price: 9 + s },
            Strategy::BuyShortfall { max_price: 22 + (home.seed % 8) as i64 },
        ]
    }
}

/// The owner of the neighbourhood `name`.
#[must_use]
pub fn owner_id(name: &str) -> UserId {
    UserId::from_bytes(id16(name, "owner", 0))
}

/// The id of feeder `n` (from 0) of the neighbourhood `name`.
#[must_use]
pub fn feeder_id(name: &str, n: u64) -> GridNodeId {
    GridNodeId::from_bytes(id16(name, "feeder", n))
}

/// Who speaks for the simulated homes: the load generator itself, or one edge agent per home
/// (`gridmesh-agent` reading a `gridmesh-sim` device). Each has its own agent ids and keys, so
/// their sequence numbers never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    /// `gridmesh-loadgen` publishes for every home.
    Loadgen,
    /// A `gridmesh-agent` per home.
    EdgeAgent,
}

impl Speaker {
    fn prefix(self) -> &'static str {
        match self {
            Self::Loadgen => "",
            Self::EdgeAgent => "edge-",
        }
    }
}

/// The plan of `homes` homes of the neighbourhood `name` around `centre`, with agents for
/// `speaker`. The same arguments give the same plan.
#[must_use]
pub fn plan(name: &str, homes: usize, centre: GeoPoint, speaker: Speaker) -> Plan {
    let owner = owner_id(name);
    let transformer = GridNodeId::from_bytes(id16(name, "transformer", 0));
    let mut nodes = vec![GridNode {
        id: transformer,
        kind: GridNodeKind::Transformer,
        parent: None,
        name: format!("{name} substation"),
        import_limit: Watts(400_000 * (homes as i64 / 100 + 1)),
        export_limit: Watts(250_000 * (homes as i64 / 100 + 1)),
    }];
    let mut planned = Vec::with_capacity(homes);
    for i in 0..homes {
        let n = i as u64;
        let feeder_no = (i / HOMES_PER_FEEDER) as u64;
        let feeder = feeder_id(name, feeder_no);
        if i % HOMES_PER_FEEDER == 0 {
            nodes.push(GridNode {
                id: feeder,
                kind: GridNodeKind::Feeder,
                parent: Some(transformer),
                name: format!("{name} feeder {}", feeder_no + 1),
                import_limit: Watts(150_000),
                export_limit: Watts(100_000),
            });
        }
        let seed = u64::from_be_bytes(derive(name, "seed", n)[..8].try_into().unwrap_or_default());
        let rated_pv = Watts(4_000 + (seed % 7) as i64 * 1_000);
        let battery = (seed % 3 != 0).then(|| BatterySpec {
            capacity: WattHours(5_000 + (seed % 9) as i64 * 1_000),
            max_charge: Watts(3_000 + (seed % 3) as i64 * 1_000),
            max_discharge: Watts(3_000 + (seed % 3) as i64 * 1_000),
        });
        // Homes on a grid of streets, about 100 m apart.
        let location = GeoPoint {
            lat: centre.lat + (i / 20) as f64 * 0.001,
            lon: centre.lon + (i % 20) as f64 * 0.0015,
        };
        let site = Site {
            id: SiteId::from_bytes(id16(name, "site", n)),
            owner,
            feeder: Some(feeder),
            name: format!("{name} home {}", i + 1),
            location: Some(location),
            rated_pv,
            pv_orientation: None,
            battery,
            grid: GridConnection { import_limit: Watts(17_000), export_limit: Watts(rated_pv.get()) },
        };
        let who = speaker.prefix();
        planned.push(PlannedHome {
            site,
            agent: AgentId::from_bytes(id16(name, &format!("{who}agent"), n)),
            agent_name: format!("sim {who}agent {}", i + 1),
            key: KeyPair::from_seed(derive(name, &format!("{who}key"), n)),
            home: Home::new(rated_pv, battery, location, seed),
        });
    }
    Plan { owner, owner_name: format!("{name} residents"), owner_role: Role::Prosumer, nodes, homes: planned }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CENTRE: GeoPoint = GeoPoint { lat: 52.52, lon: 13.40 };

    #[test]
    fn the_same_name_gives_the_same_homes_and_speakers_do_not_share_agents() {
        let a = plan("Sunny Hill", 30, CENTRE, Speaker::Loadgen);
        let b = plan("Sunny Hill", 30, CENTRE, Speaker::Loadgen);
        let edge = plan("Sunny Hill", 30, CENTRE, Speaker::EdgeAgent);
        let other = plan("Shady Vale", 30, CENTRE, Speaker::Loadgen);
        assert_eq!(a.owner, b.owner);
        assert_eq!(a.nodes, b.nodes);
        for ((x, y), (e, o)) in a.homes.iter().zip(&b.homes).zip(edge.homes.iter().zip(&other.homes)) {
            assert_eq!((&x.site, x.agent, x.key.public()), (&y.site, y.agent, y.key.public()));
            assert_eq!(x.site, e.site, "both speakers speak for the same sites");
            assert_ne!((x.agent, x.key.public()), (e.agent, e.key.public()));
            assert_ne!(x.site.id, o.site.id);
        }
    }

    #[test]
    fn parents_come_first_and_every_site_is_valid_on_a_planned_feeder() {
        let p = plan("Sunny Hill", 60, CENTRE, Speaker::Loadgen);
        assert_eq!(p.nodes.len(), 1 + 3, "a transformer and three feeders of up to 25 homes");
        for (i, node) in p.nodes.iter().enumerate() {
            if let Some(parent) = node.parent {
                assert!(p.nodes[..i].iter().any(|n| n.id == parent), "parent of {} comes first", node.name);
            }
        }
        for h in &p.homes {
            h.site.validate().expect("a valid site");
            let feeder = p.nodes.iter().find(|n| Some(n.id) == h.site.feeder).expect("a planned feeder");
            assert_eq!(feeder.kind, GridNodeKind::Feeder);
            assert_eq!(h.site.owner, p.owner);
        }
        assert_eq!(p.nodes[1].id, feeder_id("Sunny Hill", 0));
    }

    #[test]
    fn a_started_home_continues_from_its_last_reading() {
        let p = plan("Sunny Hill", 1, CENTRE, Speaker::Loadgen);
        let last = Reading { grid_import: Some(WattHours(123_456)), ..Reading::default() };
        let mut home = p.homes.into_iter().next().expect("one home").start(42, Some(&last));
        assert_eq!(home.next_seq, 42);
        let r = home.home.read(chrono::Utc::now());
        assert!(r.grid_import.is_some_and(|wh| wh.get() >= 123_456), "{r:?}");
    }
}
