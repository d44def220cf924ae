//! Enrolment: registers the device key with the service, either with a one-time code from the
//! home's owner ([`enroll_with_code`]: the service names the site and the agent) or for the
//! configured site with the owner's or an operator's API token ([`enroll`]), and fetches the
//! key the server signs with.

use anyhow::Context;
use gridmesh_core::{AgentId, SiteId};
use gridmesh_wire::{KeyPair, PublicKey};

/// What the service answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enrolment {
    /// The agent id to put in the configuration.
    pub agent: AgentId,
    /// The server's key, for `central.server_key`.
    pub server_key: PublicKey,
}

/// Registers `key` for `site` at `api_url` (e.g. `https://gridmesh.example`).
///
/// # Errors
/// The service is unreachable or refuses (its problem detail is shown), or answers nonsense.
pub async fn enroll(
    api_url: &str,
    token: &str,
    site: SiteId,
    key: &KeyPair,
    name: &str,
) -> anyhow::Result<Enrolment> {
    let base = api_url.trim_end_matches('/');
    let http = reqwest::Client::new();
    let url = format!("{base}/v1/sites/{site}/agents");
    let body = serde_json::json!({ "name": name, "public_key": key.public().to_string() });
    let (json, text) = post(&http, &url, Some(token), &body).await?;
    let agent: AgentId = json["agent_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{url} answered without an agent id: {text}"))?;
    let key_url = format!("{base}/v1/server-key");
    let server: serde_json::Value = http
        .get(&key_url)
        .send()
        .await
        .with_context(|| format!("cannot reach {key_url}"))?
        .json_text()
        .await?;
    let server_key = server["public_key"]
        .as_str()
        .and_then(|k| PublicKey::from_hex(k).ok())
        .with_context(|| format!("{key_url} answered without a key: {server}"))?;
    Ok(Enrolment { agent, server_key })
}

/// Posts `body` as JSON; the answer's JSON and text, or the service's problem detail as the
/// error.
async fn post(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> anyhow::Result<(serde_json::Value, String)> {
    let mut req = http.post(url).header("content-type", "application/json").body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let text = resp.text().await.with_context(|| format!("reading the answer of {url}"))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{url} answered {status}: {text}"))?;
    if !status.is_success() {
        let detail = json["detail"].as_str().unwrap_or(&text);
        anyhow::bail!("{url} refused the enrolment ({status}): {detail}");
    }
    Ok((json, text))
}

/// Enrols `key` with the one-time `code` the home's owner got for this home, at `api_url`;
/// the answer names the site, the agent, the server's key and maybe the broker.
///
/// # Errors
/// The service is unreachable or refuses the code (its problem detail is shown: mistyped,
/// used or expired), or answers without what an agent needs.
pub async fn enroll_with_code(
    api_url: &str,
    code: &str,
    key: &KeyPair,
    name: &str,
) -> anyhow::Result<crate::config::Enrolled> {
    let url = format!("{}/v1/enrol", api_url.trim_end_matches('/'));
    let body = serde_json::json!({ "code": code, "public_key": key.public().to_string(), "name": name });
    let (json, text) = post(&reqwest::Client::new(), &url, None, &body).await?;
    let site: SiteId = json["site_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{url} answered without a site: {text}"))?;
    let agent: AgentId = json["agent_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{url} answered without an agent id: {text}"))?;
    let server_key = json["server_key"]
        .as_str()
        .and_then(|k| PublicKey::from_hex(k).ok())
        .with_context(|| format!("{url} answered without the server's key: {text}"))?;
    Ok(crate::config::Enrolled {
        site,
        agent,
        server_key: server_key.to_string(),
        broker_url: json["broker_url"].as_str().map(str::to_owned),
    })
}

trait JsonText {
    async fn json_text(self) -> anyhow::Result<serde_json::Value>;
}

impl JsonText for reqwest::Response {
    async fn json_text(self) -> anyhow::Result<serde_json::Value> {
        let url = self.url().to_string();
        let text = self.text().await.with_context(|| format!("reading {url}"))?;
        serde_json::from_str(&text).with_context(|| format!("{url} did not answer JSON: {text}"))
    }
}
