//! The provisioning endpoints over real HTTP and a real PostgreSQL: users, grid nodes, sites and
//! agents with caller-chosen ids. The same `PUT` twice changes nothing (201, then 200 with the
//! same answer), an existing row is answered as stored, only operators may call them, and bad
//! bodies are refused with problem JSON that names the field.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on a broken set-up")]

mod common;

use common::{Server, mqtt_url};
use gridmesh_core::{AgentId, GridNodeId, Role, SiteId, UserId};
use gridmesh_db::NewUser;
use gridmesh_wire::KeyPair;
use serde_json::{Value, json};
use sqlx::PgPool;

/// A user of `role` and an `Authorization` header value with a token of theirs.
async fn bearer(pool: &PgPool, role: Role) -> String {
    let user = gridmesh_db::create_user(pool, &NewUser { name: role.as_str().into(), email: None, role })
        .await
        .unwrap();
    format!("Bearer {}", gridmesh_db::issue_token(pool, user.id, "", None).await.unwrap().1)
}

/// Calls the server with reqwest: the status and the JSON answer (`Null` when empty).
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).header("Authorization", auth);
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b.to_owned());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let json = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
        (status, json)
    }

    async fn put(&self, path: &str, auth: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, auth, Some(&body.to_string())).await
    }
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn provisioning_is_idempotent_operator_only_and_names_bad_fields(pool: PgPool) {
    let server = Server::start(pool.clone(), &mqtt_url()).await;
    // The server is on loopback: never through an `HTTP_PROXY` of the environment.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let api = Api { http, base: format!("http://{}", server.addr) };
    let operator = bearer(&pool, Role::Operator).await;
    let prosumer = bearer(&pool, Role::Prosumer).await;

    let owner = UserId::new_random();
    let transformer = GridNodeId::new_random();
    let feeder = GridNodeId::new_random();
    let site = SiteId::new_random();
    let agent = AgentId::new_random();
    let key = KeyPair::from_seed([0x61; 32]).public().to_string();
    let user_body = json!({ "name": "Elm Row residents", "role": "prosumer" });
    let transformer_body = json!({
        "kind": "transformer", "parent": null, "name": "Elm substation",
        "import_limit_w": 400_000, "export_limit_w": 250_000,
    });
    let feeder_body = json!({
        "kind": "feeder", "parent": transformer, "name": "Elm feeder 1",
        "import_limit_w": 150_000, "export_limit_w": 100_000,
    });
    let site_body = json!({
        "owner": owner, "feeder": feeder, "name": "Elm Row 1",
        "location": { "lat": 52.5, "lon": 13.4 }, "rated_pv_w": 6_000,
        "battery": { "capacity_wh": 10_000, "max_charge_w": 4_000, "max_discharge_w": 4_000 },
        "grid": { "import_limit_w": 17_000, "export_limit_w": 6_000 },
    });
    let agent_body = json!({ "name": "sim agent 1", "public_key": key });
    let calls = [
        (format!("/v1/users/{owner}"), &user_body),
        (format!("/v1/grid/nodes/{transformer}"), &transformer_body),
        (format!("/v1/grid/nodes/{feeder}"), &feeder_body),
        (format!("/v1/sites/{site}"), &site_body),
        (format!("/v1/sites/{site}/agents/{agent}"), &agent_body),
    ];

    // Anyone but an operator is refused, before anything is written.
    for (path, body) in &calls {
        let (status, refused) = api.put(path, &prosumer, body).await;
        assert_eq!(status, 403, "{path}: {refused}");
        assert_eq!(refused["type"], "urn:gridmesh:problem:forbidden");
    }
    assert!(gridmesh_db::get_user(&pool, owner).await.unwrap().is_none());

    // Created once (201); the same PUT again changes nothing and answers the same (200).
    let mut first = Vec::new();
    for (path, body) in &calls {
        let (status, created) = api.put(path, &operator, body).await;
        assert_eq!(status, 201, "{path}: {created}");
        first.push(created);
    }
    for ((path, body), created) in calls.iter().zip(&first) {
        let (status, again) = api.put(path, &operator, body).await;
        assert_eq!(status, 200, "{path}: {again}");
        assert_eq!(&again, created, "{path}");
    }
    assert_eq!(first[0], json!({ "id": owner, "name": "Elm Row residents", "role": "prosumer" }));
    assert_eq!(first[2]["parent"], json!(transformer));
    assert_eq!(first[3]["battery"]["capacity_wh"], 10_000);
    assert_eq!(first[4], json!({ "agent_id": agent, "site_id": site, "public_key": key, "next_seq": 0 }));
    let stored = gridmesh_db::get_site(&pool, site).await.unwrap().unwrap();
    assert_eq!((stored.owner, stored.feeder, stored.name.as_str()), (owner, Some(feeder), "Elm Row 1"));
    let enrolled = gridmesh_db::find_active_key(&pool, KeyPair::from_seed([0x61; 32]).public().as_bytes())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((enrolled.agent, enrolled.site), (agent, site));
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM agent_keys WHERE agent_id = $1")
        .bind(agent.0)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(keys, 1, "the same key again is not a rotation");

    // An existing row is left as it is and answered as stored.
    let renamed = json!({ "name": "Other name", "role": "operator" });
    let (status, kept) = api.put(&format!("/v1/users/{owner}"), &operator, &renamed).await;
    assert_eq!((status, &kept), (200, &first[0]));
    // The site has no reading yet: the load generator starts its home from scratch then.
    let (status, _) =
        api.send(reqwest::Method::GET, &format!("/v1/sites/{site}/latest"), &operator, None).await;
    assert_eq!(status, 404);

    // Bad bodies: the shape (422), the syntax (400), and values, naming the field (422).
    let (status, missing) = api
        .put(
            &format!("/v1/grid/nodes/{}", GridNodeId::new_random()),
            &operator,
            &json!({
                "kind": "feeder", "name": "no limits",
            }),
        )
        .await;
    assert_eq!(status, 422, "{missing}");
    assert_eq!(missing["type"], "urn:gridmesh:problem:malformed-body");
    let (status, syntax) = api
        .send(
            reqwest::Method::PUT,
            &format!("/v1/users/{}", UserId::new_random()),
            &operator,
            Some("{\"name\":"),
        )
        .await;
    assert_eq!(status, 400, "{syntax}");
    let node = |parent: Value, import: i64| json!({ "kind": "feeder", "parent": parent, "name": "f", "import_limit_w": import, "export_limit_w": 0 });
    for (body, field) in
        [(node(Value::Null, -1), "import_limit_w"), (node(json!(GridNodeId::new_random()), 1), "parent")]
    {
        let (status, refused) =
            api.put(&format!("/v1/grid/nodes/{}", GridNodeId::new_random()), &operator, &body).await;
        assert_eq!(status, 422, "{refused}");
        assert_eq!(refused["type"], "urn:gridmesh:problem:invalid-input");
        assert!(refused["detail"].as_str().unwrap().starts_with(field), "{refused}");
    }
    let mut on_transformer = site_body.clone();
    on_transformer["feeder"] = json!(transformer);
    let mut negative = site_body.clone();
    negative["battery"]["capacity_wh"] = json!(-5);
    let mut stranger = site_body.clone();
    stranger["owner"] = json!(UserId::new_random());
    for (body, field) in [(on_transformer, "feeder"), (negative, "battery.capacity_wh"), (stranger, "owner")]
    {
        let (status, refused) =
            api.put(&format!("/v1/sites/{}", SiteId::new_random()), &operator, &body).await;
        assert_eq!(status, 422, "{refused}");
        assert!(refused["detail"].as_str().unwrap().starts_with(field), "{field}: {refused}");
    }
    let (status, bad_key) = api
        .put(
            &format!("/v1/sites/{site}/agents/{}", AgentId::new_random()),
            &operator,
            &json!({ "public_key": "not hex" }),
        )
        .await;
    assert_eq!(status, 422, "{bad_key}");
    assert!(bad_key["detail"].as_str().unwrap().starts_with("public_key"), "{bad_key}");

    // The agent belongs to its site, and its key to it: both are conflicts elsewhere.
    let other_site = SiteId::new_random();
    let mut second = site_body.clone();
    second["name"] = json!("Elm Row 2");
    assert_eq!(api.put(&format!("/v1/sites/{other_site}"), &operator, &second).await.0, 201);
    let (status, moved) =
        api.put(&format!("/v1/sites/{other_site}/agents/{agent}"), &operator, &agent_body).await;
    assert_eq!(status, 409, "{moved}");
    let (status, taken) = api
        .put(&format!("/v1/sites/{other_site}/agents/{}", AgentId::new_random()), &operator, &agent_body)
        .await;
    assert_eq!(status, 409, "{taken}");
    let (status, _) = api
        .put(
            &format!("/v1/sites/{}/agents/{}", SiteId::new_random(), AgentId::new_random()),
            &operator,
            &json!({
                "public_key": KeyPair::from_seed([0x62; 32]).public().to_string(),
            }),
        )
        .await;
    assert_eq!(status, 404, "an unknown site");

    server.stop().await;
}
