//! Creates a [`Plan`] through the HTTP API, as an operator and the residents would: the
//! operator ensures the owner, grid nodes, sites and agents (the provisioning `PUT`s, which
//! leave existing ones as they are), and the residents, with a short-lived token the operator
//! issues them, set their strategies and reward address.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use gridmesh_core::{GridNode, Reading, Site, SiteId, StateOfCharge, UserId, WattHours, Watts};
use gridmesh_wire::PublicKey;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::neighbourhood::{HOMES_PER_FEEDER, Plan, PlannedHome, SimHome, strategies_for};

/// Homes provisioned at once: enough to hide the round trips, few enough not to crowd a small
/// service.
const IN_FLIGHT: usize = 8;

/// A client of the gridmesh API with one caller's token.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of logs.
        f.debug_struct("Api").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Api {
    /// A client of `base_url` (e.g. `http://127.0.0.1:8080`) calling with `token`.
    ///
    /// # Errors
    /// The HTTP client cannot be built (no TLS roots, say).
    pub fn new(base_url: &str, token: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        Ok(Self { http, base: base_url.trim_end_matches('/').to_owned(), token: token.trim().to_owned() })
    }

    /// The same service, called as someone else.
    #[must_use]
    pub fn with_token(&self, token: &str) -> Self {
        Self { http: self.http.clone(), base: self.base.clone(), token: token.trim().to_owned() }
    }

    /// Waits until the service answers `/healthz`, for at most `within` (it may be starting).
    ///
    /// # Errors
    /// It did not answer in time.
    pub async fn wait_until_up(&self, within: Duration) -> anyhow::Result<()> {
        let url = format!("{}/healthz", self.base);
        let deadline = Instant::now() + within;
        loop {
            match self.http.get(&url).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if Instant::now() >= deadline => anyhow::bail!("{url} answers {}", r.status()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(e)
                        .with_context(|| format!("cannot reach {url} (GRIDMESH_API_URL / --api-url)"));
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// Sends a request; answers the status and the JSON body (`Null` when empty), or an error
    /// with the service's own words (the problem `detail`) for anything but a success or one
    /// of the `expected` statuses.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        expected: &[StatusCode],
    ) -> anyhow::Result<(StatusCode, Value)> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        let text = resp.text().await.with_context(|| format!("reading the answer of {method} {url}"))?;
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("{method} {url} answered {status}: {text}"))?
        };
        if !status.is_success() && !expected.contains(&status) {
            let detail = json["detail"].as_str().unwrap_or(&text);
            anyhow::bail!("{method} {url} refused ({status}): {detail}");
        }
        Ok((status, json))
    }

    /// A call whose successful answer is a `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<T> {
        let (_, json) = self.send(method.clone(), path, body, &[]).await?;
        serde_json::from_value(json.clone())
            .with_context(|| format!("{method} {path} answered something unexpected: {json}"))
    }

    /// The key the service signs acknowledgements with (`GET /v1/server-key`).
    ///
    /// # Errors
    /// The service is unreachable, has no key, or answers nonsense.
    pub async fn server_key(&self) -> anyhow::Result<PublicKey> {
        #[derive(Deserialize)]
        struct Answer {
            public_key: String,
        }
        let a: Answer = self.call(Method::GET, "/v1/server-key", None).await?;
        PublicKey::from_hex(&a.public_key).with_context(|| format!("the server key {:?}", a.public_key))
    }
}

fn node_body(n: &GridNode) -> Value {
    json!({
        "kind": n.kind,
        "parent": n.parent,
        "name": n.name,
        "import_limit_w": n.import_limit.get(),
        "export_limit_w": n.export_limit.get(),
    })
}

fn site_body(s: &Site) -> Value {
    json!({
        "owner": s.owner,
        "feeder": s.feeder,
        "name": s.name,
        "location": s.location.map(|l| json!({ "lat": l.lat, "lon": l.lon })),
        "rated_pv_w": s.rated_pv.get(),
        "battery": s.battery.map(|b| json!({
            "capacity_wh": b.capacity.get(),
            "max_charge_w": b.max_charge.get(),
            "max_discharge_w": b.max_discharge.get(),
        })),
        "grid": { "import_limit_w": s.grid.import_limit.get(), "export_limit_w": s.grid.export_limit.get() },
    })
}

/// `GET /v1/sites/{id}/latest`, the fields a home resumes from.
#[derive(Debug, Deserialize)]
struct Latest {
    measured_at: DateTime<Utc>,
    grid_power_w: Option<i64>,
    pv_power_w: Option<i64>,
    battery_power_w: Option<i64>,
    battery_soc_pct: Option<f64>,
    grid_import_wh: Option<i64>,
    grid_export_wh: Option<i64>,
    pv_energy_wh: Option<i64>,
    battery_charged_wh: Option<i64>,
    battery_discharged_wh: Option<i64>,
}

impl From<Latest> for Reading {
    fn from(l: Latest) -> Self {
        Reading {
            at: l.measured_at,
            grid_power: l.grid_power_w.map(Watts),
            pv_power: l.pv_power_w.map(Watts),
            battery_power: l.battery_power_w.map(Watts),
            // The API shows basis points as a percentage with two decimals.
            battery_soc: l.battery_soc_pct.and_then(|p| {
                StateOfCharge::from_basis_points((p * 100.0).round().clamp(0.0, 10_000.0) as u16)
            }),
            grid_import: l.grid_import_wh.map(WattHours),
            grid_export: l.grid_export_wh.map(WattHours),
            pv_energy: l.pv_energy_wh.map(WattHours),
            battery_charged: l.battery_charged_wh.map(WattHours),
            battery_discharged: l.battery_discharged_wh.map(WattHours),
        }
    }
}

/// Ensures one home (site and agent) and starts it where the service left it.
async fn provision_home(api: &Api, home: PlannedHome) -> anyhow::Result<SimHome> {
    #[derive(Deserialize)]
    struct Agent {
        next_seq: u64,
    }
    let site = home.site.id;
    api.send(Method::PUT, &format!("/v1/sites/{site}"), Some(&site_body(&home.site)), &[])
        .await
        .with_context(|| format!("creating site {site} ({})", home.site.name))?;
    let agent: Agent = api
        .call(
            Method::PUT,
            &format!("/v1/sites/{site}/agents/{}", home.agent),
            Some(&json!({ "name": home.agent_name, "public_key": home.key.public().to_string() })),
        )
        .await
        .with_context(|| format!("enrolling agent {} of site {site}", home.agent))?;
    let (status, latest) =
        api.send(Method::GET, &format!("/v1/sites/{site}/latest"), None, &[StatusCode::NOT_FOUND]).await?;
    let last: Option<Reading> = if status == StatusCode::NOT_FOUND {
        None
    } else {
        let l: Latest = serde_json::from_value(latest.clone())
            .with_context(|| format!("the latest reading of site {site}: {latest}"))?;
        Some(l.into())
    };
    Ok(home.start(agent.next_seq, last.as_ref()))
}

/// Creates (or finds) the plan's owner, grid nodes, sites and agents through the API (as the
/// operator `api` calls with), and starts each home where the service left it: the next
/// sequence number its agent should use, the counters and charge of its latest reading.
///
/// # Errors
/// The service is unreachable or refuses (its reason is in the error).
pub async fn provision(api: &Api, plan: Plan) -> anyhow::Result<Vec<SimHome>> {
    api.send(
        Method::PUT,
        &format!("/v1/users/{}", plan.owner),
        Some(&json!({ "name": plan.owner_name, "role": plan.owner_role })),
        &[],
    )
    .await
    .context("creating the residents' account")?;
    for node in &plan.nodes {
        api.send(Method::PUT, &format!("/v1/grid/nodes/{}", node.id), Some(&node_body(node)), &[])
            .await
            .with_context(|| format!("creating grid node {} ({})", node.id, node.name))?;
    }
    let mut homes: Vec<Option<SimHome>> = std::iter::repeat_with(|| None).take(plan.homes.len()).collect();
    let mut todo = plan.homes.into_iter().enumerate();
    let mut running = JoinSet::new();
    loop {
        while running.len() < IN_FLIGHT
            && let Some((i, home)) = todo.next()
        {
            let api = api.clone();
            running.spawn(async move { (i, provision_home(&api, home).await) });
        }
        let Some(done) = running.join_next().await else { break };
        let (i, home) = done.context("a provisioning task failed")?;
        homes[i] = Some(home?);
    }
    Ok(homes.into_iter().flatten().collect())
}

/// Acts as the residents: the operator issues them a token that expires within the hour, `f`
/// runs with it, and the token is revoked again whatever `f` answered.
///
/// # Errors
/// The token cannot be issued, or `f` fails.
pub async fn as_owner<T>(
    operator: &Api,
    owner: UserId,
    f: impl AsyncFnOnce(&Api) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    #[derive(Deserialize)]
    struct Issued {
        id: String,
        token: String,
    }
    let expires_at = Utc::now() + chrono::Duration::hours(1);
    let issued: Issued = operator
        .call(
            Method::POST,
            &format!("/v1/users/{owner}/tokens"),
            Some(&json!({ "label": "gridmesh-loadgen", "expires_at": expires_at })),
        )
        .await
        .context("issuing the residents a token")?;
    let result = f(&operator.with_token(&issued.token)).await;
    if let Err(e) = operator.send(Method::DELETE, &format!("/v1/tokens/{}", issued.id), None, &[]).await {
        tracing::warn!(
            error = format!("{e:#}"),
            "the residents' token was not revoked; it expires within the hour"
        );
    }
    result
}

/// Gives every home its strategies (see [`strategies_for`]) unless it has some already, so the
/// neighbourhood trades on the market by itself; `owner` calls as the homes' owner. Returns the
/// number created.
///
/// # Errors
/// The service is unreachable or refuses.
pub async fn enable_trading(owner: &Api, homes: &[(SiteId, &crate::home::Home)]) -> anyhow::Result<usize> {
    let mut created = 0;
    for &(site, home) in homes {
        let existing: Vec<Value> =
            owner.call(Method::GET, &format!("/v1/market/strategies?site={site}"), None).await?;
        if !existing.is_empty() {
            continue;
        }
        for strategy in strategies_for(home) {
            owner
                .send(
                    Method::POST,
                    "/v1/market/strategies",
                    Some(&json!({ "site": site, "strategy": strategy })),
                    &[],
                )
                .await
                .with_context(|| format!("giving site {site} a strategy"))?;
            created += 1;
        }
    }
    Ok(created)
}

/// Sends the residents' token rewards to `address` (0x and 40 hex digits); `owner` calls as the
/// homes' owner.
///
/// # Errors
/// The service refuses the address, or is unreachable.
pub async fn set_reward_address(owner: &Api, address: &str) -> anyhow::Result<()> {
    owner
        .send(Method::PUT, "/v1/me/reward-address", Some(&json!({ "address": address })), &[])
        .await
        .with_context(|| format!("setting the reward address {address}"))?;
    Ok(())
}

/// One home of the demo onboarded as people do it: its site, and a one-time code when its agent
/// has yet to enrol.
#[derive(Debug)]
pub struct Onboarded {
    /// The site the service gave the home.
    pub site: SiteId,
    /// The feeder it is on.
    pub feeder: String,
    /// A code for `gridmesh-agent enroll --code`, when asked for.
    pub code: Option<String>,
}

/// Onboards the plan's homes the way their owner and the utility would, through the API: the
/// residents' account (as the operator), each home registered by its owner (found again by
/// name on a later run), each pending home assigned to a feeder of the imported grid (a fixed
/// number of homes per feeder, in code order), and a one-time code for every home whose agent
/// still has to enrol (`needs_code`). `api` calls as an operator.
///
/// # Errors
/// No feeder in the grid (import one first), or the service refuses (its reason is in the error).
pub async fn onboard(
    api: &Api,
    plan: &Plan,
    needs_code: impl Fn(usize) -> bool,
) -> anyhow::Result<Vec<Onboarded>> {
    #[derive(Deserialize)]
    struct Node {
        id: String,
        code: Option<String>,
        kind: String,
    }
    #[derive(Deserialize)]
    struct Nodes {
        items: Vec<Node>,
    }
    #[derive(Deserialize)]
    struct Home {
        id: SiteId,
        name: Option<String>,
        status: String,
    }
    #[derive(Deserialize)]
    struct Homes {
        items: Vec<Home>,
    }
    #[derive(Deserialize)]
    struct Code {
        code: String,
    }
    api.send(
        Method::PUT,
        &format!("/v1/users/{}", plan.owner),
        Some(&json!({ "name": plan.owner_name, "role": plan.owner_role })),
        &[],
    )
    .await
    .context("creating the residents' account")?;
    let nodes: Nodes = api.call(Method::GET, "/v1/grid/nodes", None).await.context("reading the grid")?;
    let mut feeders: Vec<Node> = nodes.items.into_iter().filter(|n| n.kind == "feeder").collect();
    feeders.sort_by(|a, b| (a.code.is_none(), &a.code, &a.id).cmp(&(b.code.is_none(), &b.code, &b.id)));
    anyhow::ensure!(
        !feeders.is_empty(),
        "the grid has no feeder: import one first (gridmesh grid import FILE)"
    );
    // The owner registers what is missing; an earlier run's homes (pending or active, not
    // decommissioned) are found by name.
    let homes = as_owner(api, plan.owner, async |owner: &Api| {
        let mut homes: Homes = owner.call(Method::GET, "/v1/sites?limit=1000", None).await?;
        homes.items.retain(|h| h.status != "decommissioned");
        let known: std::collections::HashSet<String> =
            homes.items.iter().filter_map(|h| h.name.clone()).collect();
        for home in plan.homes.iter().filter(|h| !known.contains(&h.site.name)) {
            let mut body = site_body(&home.site);
            if let Some(b) = body.as_object_mut() {
                b.remove("owner");
                b.remove("feeder");
            }
            let registered: Home = owner
                .call(Method::POST, "/v1/sites", Some(&body))
                .await
                .with_context(|| format!("registering {}", home.site.name))?;
            homes.items.push(registered);
        }
        Ok(homes)
    })
    .await?;
    let mut out = Vec::with_capacity(plan.homes.len());
    for (i, home) in plan.homes.iter().enumerate() {
        let feeder = &feeders[(i / HOMES_PER_FEEDER) % feeders.len()];
        let found = homes
            .items
            .iter()
            .find(|h| h.name.as_deref() == Some(home.site.name.as_str()))
            .with_context(|| format!("{} was not registered", home.site.name))?;
        let site = found.id;
        if found.status == "pending" {
            api.send(
                Method::POST,
                &format!("/v1/sites/{site}/assign"),
                Some(&json!({ "feeder": feeder.id })),
                &[],
            )
            .await
            .with_context(|| format!("assigning {} to its feeder", home.site.name))?;
        }
        out.push(Onboarded { site, feeder: feeder.id.clone(), code: None });
    }
    as_owner(api, plan.owner, async |owner: &Api| {
        for (i, o) in out.iter_mut().enumerate() {
            if needs_code(i) {
                let code: Code = owner
                    .call(Method::POST, &format!("/v1/sites/{}/enrolment-codes", o.site), Some(&json!({})))
                    .await
                    .with_context(|| format!("an enrolment code for site {}", o.site))?;
                o.code = Some(code.code);
            }
        }
        Ok(())
    })
    .await?;
    Ok(out)
}
