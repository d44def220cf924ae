//! A simulated neighbourhood stored directly in the test's database: the load generator's pure
//! plan (ids and keys derived from the name), put in place with the data layer's
//! `ensure_neighbourhood`, each home resuming from its site's latest reading. Central tests may
//! write to the database; the load generator itself goes through the API.

use gridmesh_core::{GeoPoint, Site};
use gridmesh_db::{AgentEnrolment, DbError, Neighbourhood};
use gridmesh_loadgen::neighbourhood::{SimHome, Speaker, plan};
use sqlx::PgPool;

/// Creates (or finds) `homes` homes of the neighbourhood `name` around `centre`, published for
/// by the load generator itself.
pub async fn provision(
    pool: &PgPool,
    name: &str,
    homes: usize,
    centre: GeoPoint,
) -> Result<Vec<SimHome>, DbError> {
    let plan = plan(name, homes, centre, Speaker::Loadgen);
    let sites: Vec<Site> = plan.homes.iter().map(|h| h.site.clone()).collect();
    let agents: Vec<AgentEnrolment<'_>> = plan
        .homes
        .iter()
        .map(|h| AgentEnrolment {
            id: h.agent,
            site: h.site.id,
            name: &h.agent_name,
            public_key: *h.key.public().as_bytes(),
        })
        .collect();
    let next_seqs = gridmesh_db::ensure_neighbourhood(
        pool,
        &Neighbourhood {
            owner: plan.owner,
            owner_name: &plan.owner_name,
            owner_role: plan.owner_role,
            nodes: &plan.nodes,
            sites: &sites,
            agents: &agents,
        },
    )
    .await?;
    let mut out = Vec::with_capacity(homes);
    for (home, next_seq) in plan.homes.into_iter().zip(next_seqs) {
        let last = gridmesh_db::latest_reading(pool, home.site.id).await?;
        out.push(home.start(next_seq, last.as_ref().map(|l| &l.reading)));
    }
    Ok(out)
}
