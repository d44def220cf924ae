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
        feeder,
        name: "home".into(),
        location: None,
        rated_pv: Watts(4_000),
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
    // The export shows the changes and imports back unchanged.
    let exported = api.get("/v1/grid/export").auth(&operator).await.body;
    assert!(exported.contains("F2,feeder,,\"Feeder 2, east\",90,60"), "{exported}");
    server.stop().await;
}
