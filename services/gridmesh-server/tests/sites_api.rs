//! Homes and grid nodes read and changed over real HTTP: owners list their own homes,
//! operators and regulators every home, utilities none (they get aggregates); utilities and
//! operators rename, move and re-limit grid nodes, and the tree stays a tree.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on a broken set-up")]

mod common;

use common::{Method, Server, mqtt_url, user};
use gridmesh_core::{GridConnection, Role, Site, SiteId, UserId, Watts};
use serde_json::json;
use sqlx::PgPool;

const GRID: &str = "code,kind,parent,name,import_limit_kw,export_limit_kw
T1,transformer,,Substation,400,250
F1,feeder,T1,Feeder 1,150,100
F2,feeder,T1,Feeder 2,80,60
";

async fn home(pool: &PgPool, owner: UserId, feeder: gridmesh_core::GridNodeId) -> SiteId {
    let site = Site {
        id: SiteId::new_random(),
        owner,
        feeder: Some(feeder),
        name: "home".into(),
        location: None,
        rated_pv: Watts(4_000),
        pv_orientation: None,
        battery: None,
        grid: GridConnection { import_limit: Watts(10_000), export_limit: Watts(4_000) },
    };
    gridmesh_db::insert_site(pool, &site).await.unwrap();
    site.id
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn homes_are_listed_by_role_and_grid_nodes_change_within_a_tree(pool: PgPool) {
    let server = Server::start(pool.clone(), &mqtt_url()).await;
    let api = server.client();
    let (_, utility) = user(&pool, "grid co", Role::Utility).await;
    let (_, operator) = user(&pool, "ops", Role::Operator).await;
    let (_, regulator) = user(&pool, "audit", Role::Regulator).await;
    let (ada_id, ada) = user(&pool, "ada", Role::Homeowner).await;
    let (bob_id, bob) = user(&pool, "bob", Role::Prosumer).await;
    let (_, carol) = user(&pool, "carol", Role::Prosumer).await;
    let imported =
        api.post("/v1/grid/import").auth(&utility).header("Content-Type", "text/csv").body(GRID).await;
    assert_eq!(imported.status, 200, "{}", imported.body);
    let stored = gridmesh_db::stored_grid(&pool).await.unwrap();
    let id = |code: &str| stored.iter().find(|s| s.code.as_deref() == Some(code)).unwrap().node.id;
    let ada_home = home(&pool, ada_id, id("F1")).await;
    home(&pool, bob_id, id("F2")).await;

    // Homes by role.
    let list = |auth: &str| {
        let api = api.clone();
        let auth = auth.to_owned();
        async move { api.call(Method::GET, "/v1/sites", &auth, None).await }
    };
    let (status, own) = list(&ada).await;
    assert_eq!(status, 200);
    assert_eq!(own["items"].as_array().unwrap().len(), 1);
    assert_eq!(own["items"][0]["id"], ada_home.to_string());
    assert_eq!(list(&carol).await.1["items"].as_array().unwrap().len(), 0);
    assert_eq!(list(&operator).await.1["items"].as_array().unwrap().len(), 2);
    assert_eq!(list(&regulator).await.1["items"].as_array().unwrap().len(), 2);
    assert_eq!(list(&utility).await.0, 403);
    let (status, page) = api.call(Method::GET, "/v1/sites?limit=1", &operator, None).await;
    assert_eq!((status, page["items"].as_array().unwrap().len()), (200, 1));
    let next = page["next_after"].as_str().unwrap().to_owned();
    let (_, rest) = api.call(Method::GET, &format!("/v1/sites?limit=1&after={next}"), &operator, None).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(api.call(Method::GET, "/v1/sites?limit=0", &operator, None).await.0, 422);
    let one = format!("/v1/sites/{ada_home}");
    assert_eq!(api.call(Method::GET, &one, &ada, None).await.0, 200);
    assert_eq!(api.call(Method::GET, &one, &bob, None).await.0, 404);

    // Grid nodes: listed with their homes.
    let (status, nodes) = api.call(Method::GET, "/v1/grid/nodes", &regulator, None).await;
    assert_eq!(status, 200);
    let f1 = nodes["items"].as_array().unwrap().iter().find(|n| n["code"] == "F1").unwrap().clone();
    assert_eq!((f1["homes"].as_u64(), f1["import_limit_w"].as_i64()), (Some(1), Some(150_000)));
    assert_eq!(api.call(Method::GET, "/v1/grid/nodes", &ada, None).await.0, 403);

    // Changed by utilities and operators: a new limit, a new name, a move.
    let node = format!("/v1/grid/nodes/{}", id("F2"));
    assert_eq!(api.call(Method::PATCH, &node, &bob, Some(json!({ "import_limit_w": 1 }))).await.0, 403);
    let (status, changed) = api
        .call(
            Method::PATCH,
            &node,
            &utility,
            Some(json!({ "import_limit_w": 90_000, "name": "Feeder 2, east" })),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        (changed["import_limit_w"].as_i64(), changed["export_limit_w"].as_i64()),
        (Some(90_000), Some(60_000))
    );
    assert_eq!(changed["name"], "Feeder 2, east");
    let (status, bad) =
        api.call(Method::PATCH, &node, &operator, Some(json!({ "export_limit_w": -1 }))).await;
    assert_eq!(status, 422);
    assert!(bad["detail"].as_str().unwrap().contains("export_limit_w"), "{bad}");
    // The transformer under its own feeder would close a loop; an unknown parent is named.
    let root = format!("/v1/grid/nodes/{}", id("T1"));
    let (status, looped) =
        api.call(Method::PATCH, &root, &utility, Some(json!({ "parent": id("F1") }))).await;
    assert_eq!(status, 422, "{looped}");
    assert!(looped["detail"].as_str().unwrap().contains("own ancestor"), "{looped}");
    let (status, unknown) =
        api.call(Method::PATCH, &node, &utility, Some(json!({ "parent": uuid::Uuid::new_v4() }))).await;
    assert_eq!(status, 422, "{unknown}");
    assert!(unknown["detail"].as_str().unwrap().contains("no such grid node"), "{unknown}");
    let (status, root_now) = api.call(Method::PATCH, &node, &utility, Some(json!({ "parent": null }))).await;
    assert_eq!((status, root_now["parent"].is_null()), (200, true), "{root_now}");
    let missing = format!("/v1/grid/nodes/{}", uuid::Uuid::new_v4());
    assert_eq!(api.call(Method::PATCH, &missing, &utility, Some(json!({ "name": "x" }))).await.0, 404);
    // A limit for a while (an outage): the plan's steps and the market's periods it covers use it.
    let limits = format!("/v1/grid/nodes/{}/limits", id("F1"));
    let now = chrono::Utc::now();
    let window = json!({ "from": now, "until": now + chrono::Duration::hours(2), "import_limit_w": 20_000, "reason": "cable repair" });
    assert_eq!(api.call(Method::POST, &limits, &bob, Some(window.clone())).await.0, 403);
    let (status, added) = api.call(Method::POST, &limits, &utility, Some(window)).await;
    assert_eq!(status, 201, "{added}");
    assert_eq!((added["import_limit_w"].as_i64(), added["export_limit_w"].is_null()), (Some(20_000), true));
    let (status, bad) = api
        .call(
            Method::POST,
            &limits,
            &utility,
            Some(json!({ "from": now, "until": now, "import_limit_w": 1 })),
        )
        .await;
    assert_eq!(status, 422);
    assert!(bad["detail"].as_str().unwrap().contains("until"), "{bad}");
    let none = json!({ "from": now, "until": now + chrono::Duration::hours(1) });
    assert_eq!(api.call(Method::POST, &limits, &utility, Some(none)).await.0, 422);
    let elsewhere = format!("/v1/grid/nodes/{}/limits", uuid::Uuid::new_v4());
    let somewhere = json!({ "from": now, "until": now + chrono::Duration::hours(1), "export_limit_w": 0 });
    assert_eq!(api.call(Method::POST, &elsewhere, &utility, Some(somewhere)).await.0, 404);
    let (_, listed) = api.call(Method::GET, &limits, &regulator, None).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let settings = gridmesh_optimizer::grid::PlanSettings { steps: 8, ..Default::default() };
    let inputs = gridmesh_server::jobs::dispatch::load_inputs(&pool, &settings, now).await.unwrap();
    let instance = gridmesh_optimizer::grid::build_instance(&inputs, &settings);
    let f1 = instance.nodes.iter().find(|n| n.id == id("F1").to_string()).unwrap();
    assert_eq!(f1.import_limit_at(0), Some(20.0), "the window's 20 kW, not the feeder's 150 kW");
    let withdraw = format!("/v1/grid/limits/{}", added["id"].as_str().unwrap());
    assert_eq!(api.call(Method::DELETE, &withdraw, &utility, None).await.0, 204);
    assert_eq!(api.call(Method::DELETE, &withdraw, &utility, None).await.0, 404);

    // Retiring: not while homes or nodes hang off a node; a retired node leaves the grid (its
    // code free again), its history stays.
    let retire = |node: gridmesh_core::GridNodeId| format!("/v1/grid/nodes/{node}/retire");
    let (status, busy) = api.call(Method::POST, &retire(id("F1")), &utility, None).await;
    assert_eq!(status, 409, "{busy}");
    assert!(busy["detail"].as_str().unwrap().contains("home(s) are on this node"), "{busy}");
    let (status, parent) = api.call(Method::POST, &retire(id("T1")), &operator, None).await;
    assert_eq!(status, 409);
    assert!(parent["detail"].as_str().unwrap().contains("hang off this node"), "{parent}");
    let spare = "code,kind,parent,name,import_limit_kw,export_limit_kw\nF9,feeder,T1,Spare,10,10\n";
    api.post("/v1/grid/import").auth(&utility).header("Content-Type", "text/csv").body(spare).await;
    let f9 = gridmesh_db::stored_grid(&pool)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.code.as_deref() == Some("F9"))
        .unwrap()
        .node
        .id;
    assert_eq!(api.call(Method::POST, &retire(f9), &bob, None).await.0, 403);
    assert_eq!(api.call(Method::POST, &retire(f9), &utility, None).await.0, 204);
    assert_eq!(api.call(Method::POST, &retire(f9), &utility, None).await.0, 404);
    let (_, nodes) = api.call(Method::GET, "/v1/grid/nodes", &utility, None).await;
    assert!(nodes["items"].as_array().unwrap().iter().all(|n| n["code"] != "F9"), "{nodes}");
    let again = api
        .post("/v1/grid/import")
        .auth(&utility)
        .header("Content-Type", "text/csv")
        .body(spare)
        .await
        .json();
    assert_eq!(again["created"].as_u64(), Some(1), "the code is free again: {again}");

    // The export shows the changes and imports back unchanged.
    let exported = api.get("/v1/grid/export").auth(&operator).await.body;
    assert!(exported.contains("F2,feeder,,\"Feeder 2, east\",90,60"), "{exported}");
    assert_eq!(exported.matches("F9,").count(), 1, "the retired F9 is not exported: {exported}");
    server.stop().await;
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn a_home_is_registered_assigned_edited_and_decommissioned(pool: PgPool) {
    let mut state = gridmesh_server::AppState::new(
        pool.clone(),
        gridmesh_server::broker::BrokerLink::spawn(&mqtt_url(), "sites-test").unwrap(),
    );
    state.server_key = Some(gridmesh_wire::KeyPair::from_seed([29; 32]).public());
    let server = Server::with_state(state).await;
    let api = server.client();
    let (_, utility) = user(&pool, "grid co", Role::Utility).await;
    let (_, operator) = user(&pool, "ops", Role::Operator).await;
    let (ada_id, ada) = user(&pool, "ada", Role::Homeowner).await;
    let (bob_id, bob) = user(&pool, "bob", Role::Prosumer).await;
    api.post("/v1/grid/import").auth(&utility).header("Content-Type", "text/csv").body(GRID).await;
    let stored = gridmesh_db::stored_grid(&pool).await.unwrap();
    let id = |code: &str| stored.iter().find(|s| s.code.as_deref() == Some(code)).unwrap().node.id;

    // Ada registers her home: pending, seen by her and operators; a utility sees what
    // assignment needs, not who lives there.
    let home = json!({
        "name": "Ada's house", "address": "3 Oak Lane", "location": { "lat": 52.5, "lon": 13.4 },
        "rated_pv_w": 6000, "battery": { "capacity_wh": 10000, "max_charge_w": 4000, "max_discharge_w": 4000 },
        "grid": { "import_limit_w": 17000, "export_limit_w": 6000 }
    });
    let (status, pending) = api.call(Method::POST, "/v1/sites", &ada, Some(home.clone())).await;
    assert_eq!(status, 201, "{pending}");
    assert_eq!(
        (pending["status"].as_str(), pending["owner"].as_str()),
        (Some("pending"), Some(ada_id.to_string().as_str()))
    );
    let site = pending["id"].as_str().unwrap().to_owned();
    let mut for_bob = home.clone();
    for_bob["owner"] = json!(bob_id);
    assert_eq!(api.call(Method::POST, "/v1/sites", &ada, Some(for_bob)).await.0, 403);
    let mut bad = home.clone();
    bad["rated_pv_w"] = json!(-1);
    let (status, refused) = api.call(Method::POST, "/v1/sites", &ada, Some(bad)).await;
    assert_eq!(status, 422);
    assert!(refused["detail"].as_str().unwrap().contains("rated_pv_w"), "{refused}");
    assert_eq!(
        api.call(Method::GET, "/v1/sites/pending", &bob, None).await.1["items"].as_array().unwrap().len(),
        0
    );
    let (_, seen) = api.call(Method::GET, "/v1/sites/pending", &operator, None).await;
    assert_eq!(seen["items"][0]["address"], "3 Oak Lane");
    let (_, seen) = api.call(Method::GET, "/v1/sites/pending", &utility, None).await;
    let item = &seen["items"][0];
    assert!(
        item["owner"].is_null() && item["address"].is_null() && item["grid"]["import_limit_w"] == 17000,
        "{item}"
    );
    // Not planned while pending, but its owner sees it among her homes and may enrol its agent.
    assert!(gridmesh_db::load_topology(&pool).await.unwrap().sites_on(id("F1")).is_empty());
    let (_, mine) = api.call(Method::GET, "/v1/sites", &ada, None).await;
    assert_eq!(
        (
            mine["items"][0]["status"].as_str(),
            &mine["items"][0]["feeder"],
            mine["items"][0]["address"].as_str()
        ),
        (Some("pending"), &serde_json::Value::Null, Some("3 Oak Lane")),
        "{mine}"
    );
    let (status, code) =
        api.call(Method::POST, &format!("/v1/sites/{site}/enrolment-codes"), &ada, Some(json!({}))).await;
    assert_eq!(status, 201, "{code}");
    let mut turned = home.clone();
    turned["pv_orientation"] = json!({ "azimuth_deg": 400, "tilt_deg": 30 });
    let (status, refused) = api.call(Method::POST, "/v1/sites", &ada, Some(turned)).await;
    assert_eq!(status, 422);
    assert!(refused["detail"].as_str().unwrap().contains("pv_orientation.azimuth_deg"), "{refused}");

    // Assigned by the utility: a transformer is refused and the home stays pending.
    let assign = format!("/v1/sites/{site}/assign");
    assert_eq!(api.call(Method::POST, &assign, &ada, Some(json!({ "feeder": id("F1") }))).await.0, 403);
    let (status, wrong) =
        api.call(Method::POST, &assign, &utility, Some(json!({ "feeder": id("T1") }))).await;
    assert_eq!(status, 422, "{wrong}");
    assert_eq!(
        api.call(Method::GET, "/v1/sites/pending", &ada, None).await.1["items"].as_array().unwrap().len(),
        1
    );
    let (status, assigned) =
        api.call(Method::POST, &assign, &utility, Some(json!({ "feeder": id("F1") }))).await;
    assert_eq!(status, 200, "{assigned}");
    assert_eq!(assigned["feeder"], id("F1").to_string());
    assert_eq!(api.call(Method::GET, "/v1/sites/pending", &ada, None).await.1["items"], json!([]));
    let (status, again) =
        api.call(Method::POST, &assign, &utility, Some(json!({ "feeder": id("F1") }))).await;
    assert_eq!(status, 409, "{again}");
    assert!(again["detail"].as_str().unwrap().contains("is on feeder"), "{again}");
    let nobody = format!("/v1/sites/{}/assign", SiteId::new_random());
    assert_eq!(api.call(Method::POST, &nobody, &utility, Some(json!({ "feeder": id("F1") }))).await.0, 404);
    let site_id: SiteId = site.parse().unwrap();
    assert_eq!(gridmesh_db::load_topology(&pool).await.unwrap().sites_on(id("F1")), &[site_id]);
    let one = format!("/v1/sites/{site}");
    assert_eq!(api.call(Method::GET, &one, &ada, None).await.1["name"], "Ada's house");

    // Edited by its owner.
    let (status, edited) = api
        .call(
            Method::PATCH,
            &one,
            &ada,
            Some(json!({ "rated_pv_w": 8000, "battery": null, "pv_orientation": { "azimuth_deg": 135, "tilt_deg": 20 } })),
        )
        .await;
    assert_eq!(status, 200, "{edited}");
    assert!(edited["battery"].is_null() && edited["rated_pv_w"] == 8000, "{edited}");
    assert_eq!(edited["pv_orientation"], json!({ "azimuth_deg": 135, "tilt_deg": 20 }), "{edited}");
    assert_eq!(edited["status"], "active", "{edited}");
    // The ratings it replaced are kept for readings measured before; a new name changes none.
    let current = gridmesh_db::get_site(&pool, site_id).await.unwrap().unwrap();
    let history = gridmesh_db::rating_history(&pool, &current).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].1.rated_pv, history[0].1.battery.map(|b| b.capacity)),
        (Watts(6_000), Some(gridmesh_core::WattHours(10_000)))
    );
    assert_eq!(api.call(Method::PATCH, &one, &ada, Some(json!({ "name": "Ada's home" }))).await.0, 200);
    assert_eq!(gridmesh_db::rating_history(&pool, &current).await.unwrap().len(), 1);
    assert_eq!(api.call(Method::PATCH, &one, &bob, Some(json!({ "name": "mine" }))).await.0, 404);
    let (status, bad) = api
        .call(
            Method::PATCH,
            &one,
            &ada,
            Some(json!({ "grid": { "import_limit_w": -5, "export_limit_w": 0 } })),
        )
        .await;
    assert_eq!(status, 422);
    assert!(bad["detail"].as_str().unwrap().contains("grid.import_limit_w"), "{bad}");

    // An agent, then decommissioning: agents revoked, no codes or orders, not planned.
    let key = gridmesh_wire::KeyPair::from_seed([30; 32]);
    gridmesh_db::enrol_agent(&pool, site_id, "pi", *key.public().as_bytes(), None).await.unwrap();
    let codes = format!("/v1/sites/{site}/enrolment-codes");
    let (_, early) = api.call(Method::POST, &codes, &ada, Some(json!({}))).await;
    let early = early["code"].as_str().unwrap().to_owned();
    let decommission = format!("/v1/sites/{site}/decommission");
    let (status, done) = api.call(Method::POST, &decommission, &ada, None).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["keys_revoked"].as_u64(), Some(1));
    assert!(gridmesh_db::find_active_key(&pool, key.public().as_bytes()).await.unwrap().is_none());
    assert!(gridmesh_db::load_topology(&pool).await.unwrap().sites_on(id("F1")).is_empty());
    // Periods from now on settle without it (and do not wait for its metering).
    let next = gridmesh_core::Period::containing(chrono::Utc::now()).next();
    assert!(gridmesh_db::settlement_sites(&pool, next).await.unwrap().iter().all(|s| s.site != site_id));
    // A code handed out before is refused, saying why.
    let late_box = gridmesh_wire::KeyPair::from_seed([31; 32]);
    let enrol = json!({ "code": early, "public_key": late_box.public().to_string() });
    let (status, refused) = api.call(Method::POST, "/v1/enrol", "", Some(enrol)).await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["detail"].as_str().unwrap().contains("decommissioned"), "{refused}");
    let (status, no_code) = api.call(Method::POST, &codes, &ada, Some(json!({}))).await;
    assert_eq!(status, 409);
    assert!(no_code["detail"].as_str().unwrap().contains("decommissioned"), "{no_code}");
    assert_eq!(api.call(Method::POST, &decommission, &ada, None).await.0, 409);
    assert_eq!(api.call(Method::PATCH, &one, &ada, Some(json!({ "name": "x" }))).await.0, 409);
    // Its history stays readable.
    assert_eq!(api.call(Method::GET, &one, &ada, None).await.0, 200);
    server.stop().await;
}
