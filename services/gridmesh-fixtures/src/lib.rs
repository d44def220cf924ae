//! Fixtures for the central crates' tests and benchmarks: a simulated neighbourhood stored
//! straight into a test database. The load generator's pure plan (ids and keys derived from the
//! name) is put in place with the data layer's `ensure_neighbourhood`, each home resuming from
//! its site's latest reading. Central test code may write the database; the load generator
//! itself goes through the HTTP API.

use gridmesh_core::{GeoPoint, Site};
use gridmesh_db::{AgentEnrolment, DbError, Neighbourhood, Pool};
use gridmesh_loadgen::neighbourhood::{SimHome, Speaker, plan};

/// Creates (or finds) `homes` homes of the neighbourhood `name` around `centre`, with agents for
/// `speaker`, directly in the test's database: the load generator's plan (ids and keys derived
/// from the name), stored with `ensure_neighbourhood`, each home resuming from its site's
/// latest reading. Central test code may write the database; the load generator itself goes
/// through the API.
///
/// # Errors
/// Database errors.
pub async fn provision(
    pool: &Pool,
    name: &str,
    homes: usize,
    centre: GeoPoint,
    speaker: Speaker,
) -> Result<Vec<SimHome>, DbError> {
    let plan = plan(name, homes, centre, speaker);
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
