//! `/v1/dispatch` over real HTTP and a real PostgreSQL: utility requests (every refusal with its
//! own problem), a plan made by the dispatch loop's planning step and read back with its input
//! hash, who may see what.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on a broken set-up")]

mod common;

use chrono::{Duration, Utc};
use common::{Method, Server, mqtt_url, user};
use gridmesh_core::{
    BatterySpec, GridConnection, GridNode, GridNodeId, GridNodeKind, Role, Site, SiteId, WattHours, Watts,
};
use gridmesh_optimizer::grid::PlanSettings;
use gridmesh_server::jobs::dispatch::{DispatchSettings, plan_once};
use serde_json::{Value, json};
use sqlx::PgPool;

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn requests_plans_and_setpoints(pool: PgPool) {
    let feeder = GridNodeId::new_random();
    gridmesh_db::insert_grid_node(
        &pool,
        &GridNode {
            id: feeder,
            kind: GridNodeKind::Feeder,
            parent: None,
            name: "feeder".into(),
            import_limit: Watts(50_000),
            export_limit: Watts(30_000),
        },
    )
    .await
    .unwrap();
    let (home_id, homeowner) = user(&pool, "home", Role::Homeowner).await;
    let (_, utility) = user(&pool, "grid co", Role::Utility).await;
    let (_, regulator) = user(&pool, "audit", Role::Regulator).await;
    let site = SiteId::new_random();
    gridmesh_db::insert_site(
        &pool,
        &Site {
            id: site,
            owner: home_id,
            feeder: Some(feeder),
            name: "home".into(),
            location: None,
            rated_pv: Watts(6_000),
            pv_orientation: None,
            battery: Some(BatterySpec {
                capacity: WattHours(10_000),
                max_charge: Watts(4_000),
                max_discharge: Watts(4_000),
            }),
            grid: GridConnection { import_limit: Watts(16_000), export_limit: Watts(6_000) },
        },
    )
    .await
    .unwrap();
    let server = Server::start(pool.clone(), &mqtt_url()).await;
    let client = server.client();
    let a = &client;
    let now = Utc::now();
    let body = |node: Value, kind: &str, from: i64, to: i64, price: i64| {
        json!({
            "node": node, "kind": kind, "power_w": 20_000,
            "starts_at": (now + Duration::minutes(from)).to_rfc3339(),
            "ends_at": (now + Duration::minutes(to)).to_rfc3339(),
            "price_minor_per_kwh": price,
        })
    };
    let expect = |(status, body): (u16, Value), want: u16, text: &str| {
        assert_eq!(status, want, "{body}");
        assert_eq!(body["status"], want, "problem JSON: {body}");
        assert!(body["detail"].as_str().unwrap().contains(text), "wanted {text:?} in {body}");
    };
    let post = |b: Value, auth: String| async move {
        a.call(Method::POST, "/v1/dispatch/requests", &auth, Some(b)).await
    };

    // Refusals, each named.
    expect(
        post(body(json!(feeder), "cap", 10, 5, 100), utility.clone()).await,
        422,
        "ends_at: must be after starts_at",
    );
    expect(
        post(body(json!(feeder), "cap", -20, -10, 100), utility.clone()).await,
        422,
        "ends_at: is in the past",
    );
    expect(
        post(body(json!(feeder), "cap", 0, 60 * 24 * 40, 100), utility.clone()).await,
        422,
        "at most 31 days",
    );
    expect(post(body(json!(feeder), "cap", 0, 60, -1), utility.clone()).await, 422, "price_minor_per_kwh");
    expect(
        post(body(json!(GridNodeId::new_random()), "cap", 0, 60, 100), utility.clone()).await,
        422,
        "node: no such grid node",
    );
    expect(
        post(body(json!(feeder), "limit", 0, 60, 100), utility.clone()).await,
        422,
        "unknown variant `limit`",
    );
    expect(post(body(json!(feeder), "cap", 0, 60, 100), homeowner.clone()).await, 403, "needs the role");

    // A cap on the feeder, and one on the whole area.
    let (s, created) = post(body(json!(feeder), "cap", 0, 60, 500), utility.clone()).await;
    assert_eq!(s, 201, "{created}");
    assert_eq!((created["kind"].as_str(), created["power_w"].as_i64()), (Some("cap"), Some(20_000)));
    let (s, area) = post(body(Value::Null, "floor", 0, 30, 100), utility.clone()).await;
    assert_eq!(s, 201, "{area}");
    let (_, list) = a.call(Method::GET, "/v1/dispatch/requests", &regulator, None).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let id = area["id"].as_str().unwrap().to_owned();
    assert_eq!(a.call(Method::DELETE, &format!("/v1/dispatch/requests/{id}"), &utility, None).await.0, 204);
    let (s, e) = a.call(Method::DELETE, &format!("/v1/dispatch/requests/{id}"), &utility, None).await;
    assert_eq!((s, e["status"].as_i64()), (404, Some(404)));

    // A plan: stored with its input hash and summary, the whole body readable.
    let settings = DispatchSettings {
        plan: PlanSettings { steps: 8, ..PlanSettings::default() },
        ..DispatchSettings::default()
    };
    let made = plan_once(&pool, &settings, Utc::now(), "test").await.unwrap();
    assert_eq!(made.instance.sites.len(), 1);
    assert_eq!(made.instance.requests.len(), 1, "the withdrawn request is not planned around");
    let (s, plans) = a.call(Method::GET, "/v1/dispatch/plans", &utility, None).await;
    assert_eq!(s, 200, "{plans}");
    assert_eq!(plans[0]["input_hash"].as_str().unwrap(), hex::encode(made.instance.input_hash()));
    assert_eq!(plans[0]["summary"]["sites"], 1);
    let (s, plan) = a.call(Method::GET, &format!("/v1/dispatch/plans/{}", made.id), &regulator, None).await;
    assert_eq!(s, 200);
    assert_eq!(plan["sites"][0]["id"], site.to_string());
    assert_eq!(plan["steps"], 8);
    expect(a.call(Method::GET, "/v1/dispatch/plans", &homeowner, None).await, 403, "needs the role");
    expect(
        a.call(Method::GET, "/v1/dispatch/plans?limit=0", &utility, None).await,
        422,
        "limit: must be 1 to 1000",
    );

    // Setpoints: homeowners see their own site's only.
    expect(
        a.call(Method::GET, "/v1/dispatch/setpoints", &homeowner, None).await,
        422,
        "site: name one of your sites",
    );
    let (s, mine) =
        a.call(Method::GET, &format!("/v1/dispatch/setpoints?site={site}"), &homeowner, None).await;
    assert_eq!((s, mine.as_array().map(Vec::len)), (200, Some(0)));
    let other = SiteId::new_random();
    assert_eq!(
        a.call(Method::GET, &format!("/v1/dispatch/setpoints?site={other}"), &homeowner, None).await.0,
        404
    );
    server.stop().await;
}
