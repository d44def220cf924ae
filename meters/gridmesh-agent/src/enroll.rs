//! Enrolment: registers the device key with the service for the configured site (the owner's
//! or an operator's API token), and fetches the key the server signs with.

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
    let body = serde_json::json!({ "name": name, "public_key": key.public().to_string() }).to_string();
    let resp = http
        .post(&url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let text = resp.text().await.with_context(|| format!("reading the answer of {url}"))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{url} answered {status}: {text}"))?;
    if !status.is_success() {
        let detail = json["detail"].as_str().unwrap_or(&text);
        anyhow::bail!("{url} refused the enrolment ({status}): {detail}");
    }
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
