//! A simulated neighbourhood in the database: one transformer, feeders of up to 25 homes,
//! an owner, sites, agents and their enrolled keys. Ids and keys derive from the
//! neighbourhood's name and the home's number, so provisioning again finds the same homes.

use gridmesh_core::{
    AgentId, BatterySpec, GeoPoint, GridConnection, GridNode, GridNodeId, GridNodeKind, Role, Site, SiteId,
    UserId, WattHours, Watts,
};
use gridmesh_db::Pool;
use gridmesh_market::strategy::Strategy;
use gridmesh_wire::KeyPair;
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

/// The standing strategies a simulated home trades with: homes with a battery sell what it
/// holds above 30 % from 19 to 23 minor units per kWh and buy to charge below 12 to 15; homes
/// without one sell their PV surplus from 9 to 13 and buy their shortfall up to 22 to 29.
#[must_use]
pub fn strategies_for(home: &SimHome) -> Vec<Strategy> {
    let s = (home.home.seed % 5) as i64;
    if home.home.battery.is_some() {
        vec![
            Strategy::SellFromBattery { min_price: 19 + s, reserve_soc_pct: 30 },
            Strategy::BuyToCharge { max_price: 12 + s.min(3), target_soc_pct: 90 },
        ]
    } else {
        vec![
            Strategy::SellSurplus { min_price: 9 + s },
            Strategy::BuyShortfall { max_price: 22 + (home.home.seed % 8) as i64 },
        ]
    }
}

/// Gives every home its strategies (see [`strategies_for`]) unless it has some already, so the
/// neighbourhood trades on the market by itself. Returns the number created.
///
/// # Errors
/// Database errors.
pub async fn enable_trading(pool: &Pool, name: &str, homes: &[SimHome]) -> anyhow::Result<usize> {
    let owner = UserId::from_bytes(id16(name, "owner", 0));
    let mut created = 0;
    for home in homes {
        if !gridmesh_db::list_strategies(pool, None, Some(home.site)).await?.is_empty() {
            continue;
        }
        for strategy in strategies_for(home) {
            gridmesh_db::create_strategy(pool, home.site, &strategy, owner).await?;
            created += 1;
        }
    }
    Ok(created)
}

/// Sends the residents' token rewards to `address` (0x and 40 hex digits).
///
/// # Errors
/// A malformed address; database errors.
pub async fn set_reward_address(pool: &Pool, name: &str, address: &str) -> anyhow::Result<()> {
    let mut bytes = [0_u8; 20];
    hex::decode_to_slice(address.trim_start_matches("0x"), &mut bytes)
        .map_err(|_| anyhow::anyhow!("--reward-address must be 0x and 40 hex digits, got {address:?}"))?;
    gridmesh_db::set_reward_address(pool, UserId::from_bytes(id16(name, "owner", 0)), bytes).await?;
    Ok(())
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

/// Creates (or finds) `homes` homes of the neighbourhood `name` around `centre`.
///
/// # Errors
/// Database errors.
pub async fn provision(
    pool: &Pool,
    name: &str,
    homes: usize,
    centre: GeoPoint,
) -> anyhow::Result<Vec<SimHome>> {
    provision_for(pool, name, homes, centre, Speaker::Loadgen).await
}

/// As [`provision`], with the agents enrolled for `speaker`.
///
/// # Errors
/// Database errors.
pub async fn provision_for(
    pool: &Pool,
    name: &str,
    homes: usize,
    centre: GeoPoint,
    speaker: Speaker,
) -> anyhow::Result<Vec<SimHome>> {
    let owner = UserId::from_bytes(id16(name, "owner", 0));
    gridmesh_db::ensure_user(pool, owner, &format!("{name} residents"), Role::Prosumer).await?;
    let transformer = GridNodeId::from_bytes(id16(name, "transformer", 0));
    gridmesh_db::ensure_grid_node(
        pool,
        &GridNode {
            id: transformer,
            kind: GridNodeKind::Transformer,
            parent: None,
            name: format!("{name} substation"),
            import_limit: Watts(400_000 * (homes as i64 / 100 + 1)),
            export_limit: Watts(250_000 * (homes as i64 / 100 + 1)),
        },
    )
    .await?;
    let mut out = Vec::with_capacity(homes);
    for i in 0..homes {
        let n = i as u64;
        let feeder_no = (i / HOMES_PER_FEEDER) as u64;
        let feeder = feeder_id(name, feeder_no);
        if i % HOMES_PER_FEEDER == 0 {
            gridmesh_db::ensure_grid_node(
                pool,
                &GridNode {
                    id: feeder,
                    kind: GridNodeKind::Feeder,
                    parent: Some(transformer),
                    name: format!("{name} feeder {}", feeder_no + 1),
                    import_limit: Watts(150_000),
                    export_limit: Watts(100_000),
                },
            )
            .await?;
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
            feeder,
            name: format!("{name} home {}", i + 1),
            location: Some(location),
            rated_pv,
            battery,
            grid: GridConnection { import_limit: Watts(17_000), export_limit: Watts(rated_pv.get()) },
        };
        gridmesh_db::ensure_site(pool, &site).await?;
        let who = speaker.prefix();
        let key = KeyPair::from_seed(derive(name, &format!("{who}key"), n));
        let agent = AgentId::from_bytes(id16(name, &format!("{who}agent"), n));
        let next_seq = gridmesh_db::ensure_agent(
            pool,
            agent,
            site.id,
            &format!("sim {who}agent {}", i + 1),
            *key.public().as_bytes(),
        )
        .await?;
        let mut home = Home::new(rated_pv, battery, location, seed);
        if let Some(last) = gridmesh_db::latest_reading(pool, site.id).await? {
            home.resume_from(&last.reading);
        }
        out.push(SimHome { site: site.id, agent, key, next_seq, home });
    }
    Ok(out)
}
