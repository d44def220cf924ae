//! The market over real HTTP and a real PostgreSQL: placing, replacing and cancelling orders,
//! every validation error, book depth, clearing at gate closure exactly once (also with two
//! replicas at the same moment), trades, and standing strategies.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on a broken set-up")]

mod common;

use chrono::{Duration, Utc};
use common::{Method, Server, mqtt_url, user};
use gridmesh_core::{
    BatterySpec, GridConnection, GridNode, GridNodeId, GridNodeKind, Period, Role, Site, SiteId, UserId,
    WattHours, Watts,
};
use gridmesh_server::jobs::market::{MarketSettings, clear_due, run_strategies};
use serde_json::{Value, json};
use sqlx::PgPool;

struct Town {
    feeder_a: GridNodeId,
    feeder_b: GridNodeId,
    alice: (UserId, String),
    bob: (UserId, String),
    alice_site: SiteId,
    bob_site: SiteId,
    carol_site: SiteId,
    operator: String,
    utility: String,
}

async fn site(pool: &PgPool, owner: UserId, feeder: GridNodeId, battery: bool) -> SiteId {
    let s = Site {
        id: SiteId::new_random(),
        owner,
        feeder: Some(feeder),
        name: "home".into(),
        location: None,
        rated_pv: Watts(8_000),
        pv_orientation: None,
        battery: battery.then_some(BatterySpec {
            capacity: WattHours(10_000),
            max_charge: Watts(4_000),
            max_discharge: Watts(4_000),
        }),
        grid: GridConnection { import_limit: Watts(16_000), export_limit: Watts(8_000) },
    };
    gridmesh_db::insert_site(pool, &s).await.unwrap();
    s.id
}

/// A transformer with two feeders; feeder A may export only 400 W (100 Wh a period).
async fn town(pool: &PgPool) -> Town {
    let root = GridNodeId::new_random();
    let node = |id, kind, parent, imp, exp| GridNode {
        id,
        kind,
        parent,
        name: "n".into(),
        import_limit: Watts(imp),
        export_limit: Watts(exp),
    };
    gridmesh_db::insert_grid_node(pool, &node(root, GridNodeKind::Transformer, None, 0, 0)).await.unwrap();
    let (feeder_a, feeder_b) = (GridNodeId::new_random(), GridNodeId::new_random());
    gridmesh_db::insert_grid_node(pool, &node(feeder_a, GridNodeKind::Feeder, Some(root), 100_000, 400))
        .await
        .unwrap();
    gridmesh_db::insert_grid_node(pool, &node(feeder_b, GridNodeKind::Feeder, Some(root), 100_000, 100_000))
        .await
        .unwrap();
    let alice = user(pool, "alice", Role::Prosumer).await;
    let bob = user(pool, "bob", Role::Homeowner).await;
    let carol = user(pool, "carol", Role::Prosumer).await;
    let (_, operator) = user(pool, "ops", Role::Operator).await;
    let (_, utility) = user(pool, "utility", Role::Utility).await;
    Town {
        alice_site: site(pool, alice.0, feeder_a, true).await,
        bob_site: site(pool, bob.0, feeder_b, false).await,
        carol_site: site(pool, carol.0, feeder_b, false).await,
        feeder_a,
        feeder_b,
        alice,
        bob,
        operator,
        utility,
    }
}

fn order(site: SiteId, period: Period, side: &str, price: i64, wh: i64) -> Value {
    json!({"site": site, "period": period, "side": side, "price_per_kwh": price, "energy_wh": wh})
}

/// A period far enough ahead that its gate is open for the whole test.
fn open_period() -> Period {
    MarketSettings::default().latest_closed(Utc::now()).offset(2)
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn orders_clear_at_gate_closure_into_zonal_prices_and_trades(pool: PgPool) {
    let t = town(&pool).await;
    let server = Server::start(pool.clone(), &mqtt_url()).await;
    let client = server.client();
    let a = &client;
    let p = open_period();

    // Alice (feeder A) sells 500 Wh cheaply; her feeder can export only 100 Wh. Bob and Carol
    // (feeder B) buy; Carol also sells, dearer.
    let (s, sell) = a
        .call(Method::POST, "/v1/market/orders", &t.alice.1, Some(order(t.alice_site, p, "sell", 8, 500)))
        .await;
    assert_eq!(s, 201, "{sell}");
    assert_eq!(sell["status"], "open");
    assert_eq!(sell["automatic"], false);
    assert_eq!(sell["zone"], json!(t.feeder_a));
    // A bid on her own feeder takes 200 Wh locally.
    let (s, _) = a
        .call(Method::POST, "/v1/market/orders", &t.operator, Some(order(t.alice_site, p, "buy", 30, 200)))
        .await;
    assert_eq!(s, 201, "operators trade for any site");
    let (s, bob_bid) =
        a.call(Method::POST, "/v1/market/orders", &t.bob.1, Some(order(t.bob_site, p, "buy", 30, 400))).await;
    assert_eq!(s, 201, "{bob_bid}");
    let (s, carol_offer) = a
        .call(Method::POST, "/v1/market/orders", &t.operator, Some(order(t.carol_site, p, "sell", 24, 900)))
        .await;
    assert_eq!(s, 201);

    // Replace Bob's bid: 600 Wh at 28. The old order is marked replaced.
    let path = format!("/v1/market/orders/{}", bob_bid["id"].as_str().unwrap());
    let (s, bob_new) =
        a.call(Method::PUT, &path, &t.bob.1, Some(json!({"price_per_kwh": 28, "energy_wh": 600}))).await;
    assert_eq!(s, 201, "{bob_new}");
    assert_eq!(bob_new["replaces"], bob_bid["id"]);
    assert_eq!(a.call(Method::GET, &path, &t.bob.1, None).await.1["status"], "replaced");
    // A replaced order can be neither replaced nor cancelled again.
    let (s, e) =
        a.call(Method::PUT, &path, &t.bob.1, Some(json!({"price_per_kwh": 28, "energy_wh": 600}))).await;
    assert_eq!(s, 422, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("only open orders can be replaced"), "{e}");
    let (s, e) = a.call(Method::DELETE, &path, &t.bob.1, None).await;
    assert_eq!(
        (s, e["detail"].as_str().unwrap().contains("only open orders can be cancelled")),
        (422, true),
        "{e}"
    );

    // Book depth: per zone, side and price.
    let (s, depth) = a
        .call(Method::GET, &format!("/v1/market/periods/{p}/book?zone={}", t.feeder_b), &t.bob.1, None)
        .await;
    assert_eq!(s, 200, "{depth}");
    assert_eq!(
        depth,
        json!([
            {"zone": t.feeder_b, "side": "buy", "price": 28, "energy_wh": 600, "orders": 1},
            {"zone": t.feeder_b, "side": "sell", "price": 24, "energy_wh": 900, "orders": 1},
        ])
    );
    assert_eq!(
        a.call(Method::GET, &format!("/v1/market/periods/{p}"), &t.bob.1, None).await.1["status"],
        "open"
    );

    // Nothing clears before the gate; at the gate, the period clears once.
    let settings = MarketSettings::default();
    let before =
        clear_due(&pool, &settings, settings.gate_of(p) - Duration::seconds(1), "replica-1").await.unwrap();
    assert!(before.iter().all(|c| c.period != p));
    let cleared = clear_due(&pool, &settings, settings.gate_of(p), "replica-1").await.unwrap();
    let mine: Vec<_> = cleared.iter().filter(|c| c.period == p).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].order_count, 4);
    assert!(clear_due(&pool, &settings, settings.gate_of(p), "replica-2").await.unwrap().is_empty());

    let (s, result) = a.call(Method::GET, &format!("/v1/market/periods/{p}"), &t.bob.1, None).await;
    assert_eq!(s, 200, "{result}");
    assert_eq!(result["status"], "cleared");
    let zone = |id: GridNodeId| {
        result["zones"].as_array().unwrap().iter().find(|z| z["zone"] == json!(id)).unwrap().clone()
    };
    // Feeder A: 200 Wh sold locally, 100 Wh exported at its limit; its price is Alice's 8.
    assert_eq!(zone(t.feeder_a)["net_export_wh"], 100);
    assert_eq!(zone(t.feeder_a)["congested"], true);
    assert_eq!(zone(t.feeder_a)["price_per_kwh"], 8);
    // Feeder B: 100 Wh in, Carol covers the other 500 Wh of Bob's 600; price 24 to 28.
    let pb = zone(t.feeder_b)["price_per_kwh"].as_i64().unwrap();
    assert!((24..=28).contains(&pb), "{result}");
    assert_eq!(result["clearing"]["volume_wh"], 800);
    assert_eq!(result["clearing"]["cleared_by"], "replica-1");

    // Orders now show their fills.
    let (_, alice_sell) = a
        .call(Method::GET, &format!("/v1/market/orders/{}", sell["id"].as_str().unwrap()), &t.alice.1, None)
        .await;
    assert_eq!(
        (alice_sell["status"].clone(), alice_sell["filled_wh"].clone(), alice_sell["fill_price"].clone()),
        (json!("cleared"), json!(300), json!(8))
    );
    let (_, carol) = a
        .call(
            Method::GET,
            &format!("/v1/market/orders/{}", carol_offer["id"].as_str().unwrap()),
            &t.operator,
            None,
        )
        .await;
    assert_eq!(carol["filled_wh"], 500);

    // Trades: Bob sees his own; the crossing one runs feeder A → transformer → feeder B.
    let (s, trades) = a.call(Method::GET, &format!("/v1/market/trades?period={p}"), &t.bob.1, None).await;
    assert_eq!(s, 200, "{trades}");
    let items = trades["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{trades}");
    assert!(items.iter().all(|x| x["buyer_site"] == json!(t.bob_site)));
    assert_eq!(items.iter().map(|x| x["energy_wh"].as_i64().unwrap()).sum::<i64>(), 600);
    assert!(items.iter().any(|x| x["path"].as_array().unwrap().len() == 3 && x["seller_price"] == 8));
    let (s, positions) =
        a.call(Method::GET, &format!("/v1/market/periods/{p}/commitments"), &t.operator, None).await;
    assert_eq!(s, 200, "{positions}");
    let position = |site: SiteId| {
        positions.as_array().unwrap().iter().find(|c| c["site"] == json!(site)).unwrap()["net_wh"].clone()
    };
    assert_eq!(
        (position(t.alice_site), position(t.bob_site), position(t.carol_site)),
        (json!(100), json!(-600), json!(500))
    );
    assert_eq!(
        a.call(Method::GET, &format!("/v1/market/periods/{p}/commitments"), &t.bob.1, None).await.0,
        403
    );
    let (_, all) = a.call(Method::GET, "/v1/market/trades", &t.operator, None).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    assert_eq!(a.call(Method::GET, "/v1/market/trades", &t.utility, None).await.0, 403);

    // The period is closed now, for new orders and for cancelling.
    let (s, e) =
        a.call(Method::POST, "/v1/market/orders", &t.bob.1, Some(order(t.bob_site, p, "buy", 30, 100))).await;
    assert_eq!(s, 422);
    assert!(e["detail"].as_str().unwrap().contains("already cleared"), "{e}");

    // My orders: Bob sees his two, Alice hers.
    let (_, mine) = a.call(Method::GET, "/v1/market/orders", &t.bob.1, None).await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 2);
    let (_, open) = a.call(Method::GET, "/v1/market/orders?status=open", &t.operator, None).await;
    assert!(open["items"].as_array().unwrap().is_empty());
    server.stop().await;
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn every_invalid_order_gets_its_own_problem(pool: PgPool) {
    let t = town(&pool).await;
    let server = Server::start(pool.clone(), &mqtt_url()).await;
    let client = server.client();
    let a = &client;
    let p = open_period();
    let bob = &t.bob.1;
    let post = |body: Value, auth: String| async move {
        a.call(Method::POST, "/v1/market/orders", &auth, Some(body)).await
    };
    let expect = |(status, body): (u16, Value), want: u16, text: &str| {
        assert_eq!(status, want, "{body}");
        assert_eq!(body["status"], want, "problem JSON: {body}");
        assert!(body["detail"].as_str().unwrap().contains(text), "wanted {text:?} in {body}");
    };

    expect(
        post(order(t.bob_site, p, "buy", -1, 100), bob.clone()).await,
        422,
        "price_per_kwh: must be 0 to 10000",
    );
    expect(post(order(t.bob_site, p, "buy", 10_001, 100), bob.clone()).await, 422, "price_per_kwh");
    expect(post(order(t.bob_site, p, "buy", 10, 0), bob.clone()).await, 422, "energy_wh: must be 1 to");
    expect(
        post(order(t.bob_site, p, "sell", 10, 2_001), bob.clone()).await,
        422,
        "more than the site's connection can export",
    );
    let past = MarketSettings::default().latest_closed(Utc::now());
    expect(
        post(order(t.bob_site, past, "buy", 10, 100), bob.clone()).await,
        422,
        "is closed: its gate closed at",
    );
    expect(
        post(order(t.bob_site, p.offset(96 * 8), "buy", 10, 100), bob.clone()).await,
        422,
        "too far ahead",
    );
    let mut misaligned = order(t.bob_site, p, "buy", 10, 100);
    misaligned["period"] = json!((p.start() + Duration::minutes(7)).to_rfc3339());
    expect(post(misaligned, bob.clone()).await, 422, "not aligned to a 15-minute boundary");
    expect(post(order(SiteId::new_random(), p, "buy", 10, 100), bob.clone()).await, 422, "site: no site");
    expect(post(order(t.alice_site, p, "buy", 10, 100), bob.clone()).await, 403, "is not yours");
    expect(post(order(t.bob_site, p, "buy", 10, 100), t.utility.clone()).await, 403, "needs the role");
    expect(post(order(t.bob_site, p, "hold", 10, 100), bob.clone()).await, 422, "unknown variant");
    let mut extra = order(t.bob_site, p, "buy", 10, 100);
    extra["colour"] = json!("green");
    expect(post(extra, bob.clone()).await, 422, "unknown field");
    let raw = a.post("/v1/market/orders").auth(bob).json_text("{\"site\":").await;
    assert_eq!(raw.status, 400, "{}", raw.body);
    assert_eq!(
        a.call(Method::POST, "/v1/market/orders", "Bearer nope", Some(order(t.bob_site, p, "buy", 1, 1)))
            .await
            .0,
        401
    );

    // Someone else's order is invisible; an unknown one is not found.
    let (_, mine) = post(order(t.bob_site, p, "buy", 10, 100), bob.clone()).await;
    let path = format!("/v1/market/orders/{}", mine["id"].as_str().unwrap());
    expect(a.call(Method::GET, &path, &t.alice.1, None).await, 404, "order not found");
    expect(a.call(Method::DELETE, &path, &t.alice.1, None).await, 404, "order not found");
    expect(
        a.call(Method::GET, &format!("/v1/market/orders/{}", uuid::Uuid::new_v4()), bob, None).await,
        404,
        "not found",
    );
    expect(
        a.call(Method::PUT, &path, bob, Some(json!({"price_per_kwh": 10, "energy_wh": 99_999}))).await,
        422,
        "energy_wh",
    );
    let (s, cancelled) = a.call(Method::DELETE, &path, bob, None).await;
    assert_eq!((s, cancelled["status"].as_str()), (200, Some("cancelled")));
    expect(
        a.call(Method::GET, "/v1/market/periods/2026-12-01T10:07:00Z", bob, None).await,
        400,
        "not aligned",
    );
    expect(a.call(Method::GET, "/v1/market/periods/yesterday", bob, None).await, 400, "RFC 3339");
    expect(a.call(Method::GET, "/v1/market/orders?status=lost", bob, None).await, 422, "status");
    expect(a.call(Method::GET, "/v1/market/trades?after=nonsense", bob, None).await, 422, "after");
    server.stop().await;
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn two_replicas_at_the_gate_clear_a_period_exactly_once(pool: PgPool) {
    let t = town(&pool).await;
    let p = open_period();
    for (site, side, price) in [(t.bob_site, "buy", 30), (t.carol_site, "sell", 10)] {
        let o = gridmesh_db::NewOrder {
            site,
            zone: t.feeder_b,
            period: p,
            side: gridmesh_market::Side::parse(side).unwrap(),
            price,
            energy: WattHours(500),
            placed_by: t.bob.0,
            strategy: None,
        };
        gridmesh_db::place_order(&pool, &o, None).await.unwrap();
    }
    // A second pool is a second replica: its own connections, the same database.
    let other = sqlx::postgres::PgPoolOptions::new().connect(&common::database_url(&pool)).await.unwrap();
    let settings = MarketSettings::default();
    let at = settings.gate_of(p);
    let (x, y) =
        tokio::join!(clear_due(&pool, &settings, at, "one"), clear_due(&other, &settings, at, "two"));
    let both: Vec<_> = x.unwrap().into_iter().chain(y.unwrap()).filter(|c| c.period == p).collect();
    assert_eq!(both.len(), 1, "{both:?}");
    let (clearings, trades): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM market_clearings WHERE period_start = $1),
                (SELECT count(*) FROM market_trades WHERE period_start = $1)",
    )
    .bind(p.start())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((clearings, trades), (1, 1));
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn strategies_trade_for_their_owners_once_per_period(pool: PgPool) {
    let t = town(&pool).await;
    let server = Server::start(pool.clone(), &mqtt_url()).await;
    let client = server.client();
    let a = &client;
    let alice = &t.alice.1;
    let strategy = |s: Value| json!({"site": t.alice_site, "strategy": s});
    let (s, created) = a
        .call(
            Method::POST,
            "/v1/market/strategies",
            alice,
            Some(strategy(json!({"kind": "sell_from_battery", "min_price": 18, "reserve_soc_pct": 20}))),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let (s, e) = a
        .call(
            Method::POST,
            "/v1/market/strategies",
            alice,
            Some(strategy(json!({"kind": "sell_from_battery", "min_price": 5, "reserve_soc_pct": 20}))),
        )
        .await;
    assert_eq!(s, 409, "{e}");
    let (s, e) = a
        .call(
            Method::POST,
            "/v1/market/strategies",
            alice,
            Some(strategy(json!({"kind": "sell_surplus", "min_price": 99_999}))),
        )
        .await;
    assert_eq!(
        (s, e["detail"].as_str().unwrap().contains("min_price must be 0 to 10000")),
        (422, true),
        "{e}"
    );
    let bob_battery = json!({"site": t.bob_site, "strategy": {"kind": "buy_to_charge", "max_price": 20, "target_soc_pct": 90}});
    let (s, e) = a.call(Method::POST, "/v1/market/strategies", &t.bob.1, Some(bob_battery)).await;
    assert_eq!((s, e["detail"].as_str().unwrap().contains("needs a battery")), (422, true), "{e}");
    let (s, e) = a
        .call(
            Method::POST,
            "/v1/market/strategies",
            &t.bob.1,
            Some(strategy(json!({"kind": "sell_surplus", "min_price": 1}))),
        )
        .await;
    assert_eq!(s, 403, "{e}");

    // Without readings, the battery is taken as half full: 5 kWh, 2 kWh reserved; 1 kWh a
    // period at most; its connection exports 2 kWh a period.
    let settings = MarketSettings::default();
    let now = Utc::now();
    let other = sqlx::postgres::PgPoolOptions::new().connect(&common::database_url(&pool)).await.unwrap();
    let (x, y) = tokio::join!(run_strategies(&pool, &settings, now), run_strategies(&other, &settings, now));
    assert_eq!(x.unwrap() + y.unwrap(), 1, "one order, however many replicas run the job");
    assert_eq!(run_strategies(&pool, &settings, now).await.unwrap(), 0);
    let (_, orders) = a.call(Method::GET, "/v1/market/orders", alice, None).await;
    let items = orders["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{orders}");
    assert_eq!(items[0]["automatic"], true);
    assert_eq!(items[0]["strategy"], created["id"]);
    assert_eq!(items[0]["side"], "sell");
    assert_eq!(items[0]["price_per_kwh"], 18);
    assert_eq!(items[0]["energy_wh"], 1_000);
    assert_eq!(items[0]["period"], json!(settings.latest_closed(now).next()));

    let (_, listed) = a.call(Method::GET, "/v1/market/strategies", alice, None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let path = format!("/v1/market/strategies/{}", created["id"].as_str().unwrap());
    assert_eq!(a.call(Method::DELETE, &path, &t.bob.1, None).await.0, 404);
    assert_eq!(a.call(Method::DELETE, &path, alice, None).await.0, 204);
    assert_eq!(a.call(Method::GET, "/v1/market/strategies", alice, None).await.1, json!([]));
    server.stop().await;
}
