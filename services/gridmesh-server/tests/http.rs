//! The server on a real port, against a fresh PostgreSQL database per test and the real
//! Mosquitto broker.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on a broken set-up; helpers outside #[test] fns unwrap too"
)]

mod common;

use std::time::Duration;

use common::{Proxy, Server, mqtt_url};
use gridmesh_core::Role;
use gridmesh_db::NewUser;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn health_readiness_and_metrics_answer(pool: PgPool) {
    let server = Server::start(pool, &mqtt_url()).await;
    let api = server.client();

    let health = api.get("/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");

    // The broker link comes up in the background.
    let ready = api.wait_for_status("/readyz", 200, Duration::from_secs(10)).await;
    let body = ready.json();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["database"]["ok"], true);
    assert_eq!(body["checks"]["broker"]["ok"], true);

    let metrics = api.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    assert!(
        metrics.body.contains(r#"http_requests_total{method="GET",route="/healthz",status="200"}"#),
        "{}",
        metrics.body
    );
    assert!(metrics.body.contains("http_request_duration_seconds_bucket"), "{}", metrics.body);
    assert!(metrics.body.contains("gridmesh_database_up 1"), "{}", metrics.body);
    assert!(metrics.body.contains("gridmesh_broker_connected 1"), "{}", metrics.body);
    server.stop().await;
}

/// A pool that reaches the test database through `proxy`.
async fn pool_through(proxy: &Proxy, direct: &PgPool) -> PgPool {
    let options: PgConnectOptions =
        (*direct.connect_options()).clone().host("127.0.0.1").port(proxy.addr.port());
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(1))
        .connect_with(options)
        .await
        .unwrap()
}

async fn upstream(url: &str, default_port: u16) -> std::net::SocketAddr {
    let url = url::Url::parse(url).unwrap();
    let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = url.port().unwrap_or(default_port);
    tokio::net::lookup_host((host, port)).await.unwrap().next().unwrap()
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn readyz_reports_the_database_down_and_back(pool: PgPool) {
    let proxy = Proxy::start(upstream(&std::env::var("DATABASE_URL").unwrap(), 5432).await).await;
    let server = Server::start(pool_through(&proxy, &pool).await, &mqtt_url()).await;
    let api = server.client();
    api.wait_for_status("/readyz", 200, Duration::from_secs(10)).await;

    proxy.cut();
    let down = api.wait_for_status("/readyz", 503, Duration::from_secs(10)).await;
    assert_eq!(down.header("content-type"), Some("application/problem+json"));
    let body = down.json();
    assert_eq!(body["status"], 503);
    assert_eq!(body["type"], "urn:gridmesh:problem:not-ready");
    assert_eq!(body["checks"]["database"]["ok"], false);
    assert_eq!(body["checks"]["broker"]["ok"], true);
    assert!(body["detail"].as_str().unwrap().contains("database"), "{body}");
    assert!(api.get("/metrics").await.body.contains("gridmesh_database_up 0"));
    // Liveness does not depend on the database.
    assert_eq!(api.get("/healthz").await.status, 200);

    proxy.restore();
    api.wait_for_status("/readyz", 200, Duration::from_secs(15)).await;
    server.stop().await;
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn readyz_reports_the_broker_down_and_back(pool: PgPool) {
    let broker = mqtt_url();
    let proxy = Proxy::start(upstream(&format!("mqtt://{}:{}", broker.host, broker.port), 1883).await).await;
    let via_proxy: gridmesh_server::config::MqttUrl =
        format!("mqtt://127.0.0.1:{}", proxy.addr.port()).parse().unwrap();
    let server = Server::start(pool, &via_proxy).await;
    let api = server.client();
    api.wait_for_status("/readyz", 200, Duration::from_secs(10)).await;

    proxy.cut();
    let down = api.wait_for_status("/readyz", 503, Duration::from_secs(15)).await;
    let body = down.json();
    assert_eq!(body["checks"]["broker"]["ok"], false);
    assert_eq!(body["checks"]["database"]["ok"], true);

    proxy.restore();
    api.wait_for_status("/readyz", 200, Duration::from_secs(15)).await;
    server.stop().await;
}

/// An ingest replica (`gridmesh ingest`) is ready only while its own broker session is up, and
/// reports its jobs (partitions and retention by default) beside the checks.
#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn an_ingest_replica_reports_its_own_broker_session(pool: PgPool) {
    use clap::Parser;
    use gridmesh_server::config::{Cli, Command};

    let broker = mqtt_url();
    let proxy = Proxy::start(upstream(&format!("mqtt://{}:{}", broker.host, broker.port), 1883).await).await;
    let dir = std::env::temp_dir().join(format!("gridmesh-ingest-ready-{}", std::process::id()));
    let key = dir.join("server.key");
    let (database, mqtt) = (common::database_url(&pool), format!("mqtt://127.0.0.1:{}", proxy.addr.port()));
    let client_id = format!("ingest-ready-{}", std::process::id());
    let args = [
        "gridmesh",
        "ingest",
        "--database-url",
        &database,
        "--mqtt-url",
        &mqtt,
        "--http-bind",
        "127.0.0.1:0",
        "--server-key-file",
        key.to_str().unwrap(),
        "--ingest-client-id",
        &client_id,
        "--ingest-group",
        "",
    ];
    let Command::Ingest(config) = Cli::try_parse_from(args).unwrap().command else { panic!("ingest parses") };
    let service = gridmesh_server::serve::start(&config, gridmesh_server::serve::Role::Ingest).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(service.run(
        listener,
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));
    let api = common::Client::new(addr);
    let up = api.wait_for_status("/readyz", 200, Duration::from_secs(15)).await.json();
    assert_eq!(up["checks"]["ingest"]["ok"], true, "{up}");
    let jobs = up["checks"]["jobs"].as_object().unwrap();
    assert_eq!(jobs.keys().map(String::as_str).collect::<Vec<_>>(), ["partitions", "retention"]);

    proxy.cut();
    let down = api.wait_for_status("/readyz", 503, Duration::from_secs(20)).await.json();
    assert_eq!(down["checks"]["ingest"]["ok"], false, "{down}");
    assert!(down["detail"].as_str().unwrap().contains("ingest"), "{down}");

    proxy.restore();
    api.wait_for_status("/readyz", 200, Duration::from_secs(20)).await;
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Checks the RFC 7807 shape and that `instance` is the request id of the answer.
fn assert_problem(answer: &common::Answer, status: u16, kind: &str, detail_has: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/problem+json"), "{answer:?}");
    let body = answer.json();
    assert_eq!(body["status"], status);
    assert_eq!(body["type"], format!("urn:gridmesh:problem:{kind}"));
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains(detail_has), "detail {detail:?} lacks {detail_has:?}");
    let id = answer.header("x-request-id").unwrap();
    assert_eq!(body["instance"], format!("urn:uuid:{id}"));
}

async fn operator_token(pool: &PgPool) -> String {
    let op =
        gridmesh_db::create_user(pool, &NewUser { name: "Ops".into(), email: None, role: Role::Operator })
            .await
            .unwrap();
    gridmesh_db::issue_token(pool, op.id, "test", None).await.unwrap().1
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn every_error_is_problem_json(pool: PgPool) {
    let token = operator_token(&pool).await;
    let server = Server::start(pool, &mqtt_url()).await;
    let api = server.client();
    let auth = format!("Bearer {token}");
    // The bodies below are sent exactly as written, with the Content-Type each case names.
    let post_json = |body: &str| api.post("/v1/users").auth(&auth).json_text(body);

    assert_problem(&api.get("/no/such/thing").await, 404, "not-found", "/no/such/thing");
    assert_problem(&api.delete("/healthz").await, 405, "method-not-allowed", "method");
    assert_problem(&post_json("{\"name\": ").await, 400, "malformed-body", "not valid JSON");
    assert_problem(
        &post_json(r#"{"name":"x","role":"king"}"#).await,
        422,
        "malformed-body",
        "unknown variant `king`",
    );
    assert_problem(
        &post_json(r#"{"name":"x","role":"utility","colour":"red"}"#).await,
        422,
        "malformed-body",
        "unknown field `colour`",
    );
    // No Content-Type at all.
    assert_problem(
        &api.post("/v1/users").auth(&auth).body(r#"{"name":"x","role":"utility"}"#).await,
        415,
        "unsupported-media-type",
        "Content-Type: application/json",
    );
    assert_problem(&api.get("/v1/users?limit=lots").auth(&auth).await, 400, "malformed-query", "limit");
    assert_problem(
        &api.get("/v1/users?limit=0").auth(&auth).await,
        422,
        "invalid-input",
        "limit: must be between 1 and 1000",
    );
    assert_problem(
        &api.get("/v1/users/not-a-uuid").auth(&auth).await,
        400,
        "malformed-path",
        "path parameter",
    );
    assert_problem(&post_json(r#"{"name":"   ","role":"utility"}"#).await, 422, "invalid-input", "name");
    // The server may answer before it has read the whole body, and close; the 413 still arrives.
    let big = format!(r#"{{"name":"{}","role":"utility"}}"#, "x".repeat(3 * 1024 * 1024));
    assert_problem(&post_json(&big).await, 413, "body-too-large", "");
    server.stop().await;
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn tokens_identify_callers_and_roles_are_enforced(pool: PgPool) {
    let token = operator_token(&pool).await;
    let homeowner =
        gridmesh_db::create_user(&pool, &NewUser { name: "Hana".into(), email: None, role: Role::Homeowner })
            .await
            .unwrap();
    let (_, homeowner_token) = gridmesh_db::issue_token(&pool, homeowner.id, "", None).await.unwrap();
    let server = Server::start(pool, &mqtt_url()).await;
    let api = server.client();
    let op = format!("Bearer {token}");
    let ho = format!("Bearer {homeowner_token}");

    let none = api.get("/v1/me").await;
    assert_problem(&none, 401, "unauthenticated", "missing Authorization");
    assert_eq!(none.header("www-authenticate"), Some("Bearer realm=\"gridmesh\""));
    assert_problem(&api.get("/v1/me").auth("Bearer gmt_nope").await, 401, "unauthenticated", "unknown");
    assert_problem(&api.get("/v1/me").auth("Basic abc").await, 401, "unauthenticated", "Bearer");

    let me = api.get("/v1/me").auth(&ho).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["role"], "homeowner");
    assert_eq!(me.json()["user_id"], homeowner.id.to_string());

    // A homeowner may see themselves but not manage accounts.
    let own = api.get(&format!("/v1/users/{}", homeowner.id)).auth(&ho).await;
    assert_eq!(own.status, 200);
    assert_problem(&api.get("/v1/users").auth(&ho).await, 403, "forbidden", "operator");

    let created = api
        .post("/v1/users")
        .auth(&op)
        .json_text(r#"{"name":"Grid Co","email":"ops@grid.example","role":"utility"}"#)
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let utility_id = created.json()["id"].as_str().unwrap().to_owned();
    assert_problem(
        &api.post("/v1/users")
            .auth(&op)
            .json_text(r#"{"name":"Again","email":"ops@grid.example","role":"utility"}"#)
            .await,
        409,
        "conflict",
        "email already exists",
    );

    let listed = api.get("/v1/users?role=utility").auth(&op).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json()["items"].as_array().unwrap().len(), 1);

    let issued =
        api.post(&format!("/v1/users/{utility_id}/tokens")).auth(&op).json_text(r#"{"label":"scada"}"#).await;
    assert_eq!(issued.status, 201, "{}", issued.body);
    let secret = issued.json()["token"].as_str().unwrap().to_owned();
    let token_id = issued.json()["id"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {secret}");
    let me = api.get("/v1/me").auth(&bearer).await;
    assert_eq!(me.json()["role"], "utility");

    assert_problem(
        &api.post(&format!("/v1/users/{}/tokens", uuid::Uuid::new_v4())).auth(&op).json_text("{}").await,
        404,
        "not-found",
        "user",
    );

    let revoked = api.delete(&format!("/v1/tokens/{token_id}")).auth(&op).await;
    assert_eq!(revoked.status, 204);
    assert_eq!(api.get("/v1/me").auth(&bearer).await.status, 401);
    server.stop().await;
}
