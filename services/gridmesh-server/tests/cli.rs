//! The `gridmesh` binary as an operator runs it: usage, configuration errors, an unreachable
//! database, `serve` on a fresh database until SIGTERM, and bootstrapping users and tokens.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on a broken set-up; helpers outside #[test] fns unwrap too"
)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gridmesh_core::Role;
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};

use common::database_url;

const BIN: &str = env!("CARGO_BIN_EXE_gridmesh");

fn run(args: &[&str]) -> std::process::Output {
    run_with(args, &[])
}

/// Runs the binary with extra environment variables.
fn run_with(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("GRIDMESH_DATABASE_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run gridmesh")
}

#[test]
fn help_explains_the_subcommands() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in ["serve", "migrate", "user", "token"] {
        assert!(text.contains(needle), "--help lacks {needle}: {text}");
    }
    let serve = String::from_utf8(run(&["serve", "--help"]).stdout).unwrap();
    for needle in ["GRIDMESH_DATABASE_URL", "GRIDMESH_MQTT_URL", "GRIDMESH_HTTP_BIND", "GRIDMESH_LOG_FORMAT"]
    {
        assert!(serve.contains(needle), "serve --help lacks {needle}");
    }
}

#[test]
fn passwords_never_reach_help_or_error_output() {
    let env =
        [("GRIDMESH_DATABASE_URL", "postgres://a:hunter2@h/d"), ("GRIDMESH_MQTT_URL", "mqtt://u:hunter2@b")];
    let help = run_with(&["serve", "--help"], &env);
    assert!(help.status.success());
    assert!(!String::from_utf8_lossy(&help.stdout).contains("hunter2"));
    let bad = run_with(&["migrate"], &[("GRIDMESH_DATABASE_URL", "mysql://u:hunter2@x/y")]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("expected postgres://") && !err.contains("hunter2"), "{err}");
}

#[test]
fn unknown_subcommands_and_flags_print_usage() {
    for args in [&["frobnicate"][..], &["serve", "--colour", "red"][..]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("Usage:"), "{args:?}: {err}");
    }
}

#[test]
fn configuration_errors_name_the_setting_and_the_expected_form() {
    // (arguments, environment, what stderr must say)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case<'_>; 4] = [
        (&["serve", "--mqtt-url", "localhost:1883"], &[], &["--mqtt-url", "expected mqtt://"]),
        (
            &["migrate"],
            &[("GRIDMESH_DATABASE_URL", "mysql://db/x")],
            &["--database-url", "expected postgres://"],
        ),
        (&["serve"], &[("GRIDMESH_HTTP_BIND", "everywhere")], &["--http-bind"]),
        (&["--log-filter", "info,[[", "migrate"], &[], &["GRIDMESH_LOG", "not a valid filter"]),
    ];
    for (args, env, needles) in cases {
        let out = run_with(args, env);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        for needle in needles {
            assert!(err.contains(needle), "{args:?} {env:?}: {err:?} lacks {needle:?}");
        }
    }
}

#[test]
fn an_unreachable_database_fails_clearly_after_a_bounded_time() {
    let started = Instant::now();
    // Port 9 (discard) on loopback: nothing listens there.
    let out =
        run(&["migrate", "--database-url", "postgres://u:sekret@127.0.0.1:9/x", "--db-connect-timeout", "2"]);
    let elapsed = started.elapsed();
    assert!(!out.status.success());
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("could not connect to the database") && err.contains("within 2 s"), "{err}");
    assert!(
        err.contains("u:***@127.0.0.1:9") && !err.contains("sekret"),
        "password leaked or URL missing: {err}"
    );
    assert!(err.contains("database not reachable yet"), "retries are logged: {err}");
}

#[sqlx::test(migrations = false)]
async fn serve_migrates_a_fresh_database_and_stops_on_sigterm(pool: PgPool) {
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "serve",
            "--http-bind",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--database-url",
            &database_url(&pool),
        ])
        .env(
            "GRIDMESH_MQTT_URL",
            std::env::var("GRIDMESH_TEST_MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into()),
        )
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|_| panic!("log line is not JSON: {line}"));
            log.push(v.clone());
            if v["message"] == "gridmesh listening" {
                return v["addr"].as_str().unwrap().parse::<std::net::SocketAddr>().unwrap();
            }
        }
        panic!("server exited before listening: {log:?}");
    })
    .await
    .expect("listening within 30 s");

    assert_eq!(common::Client::new(addr).get("/healthz").await.status, 200);
    // serve applied the migrations to the fresh database.
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE tablename IN ('sites', 'telemetry', 'agent_keys')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 3);

    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status}");
    let mut rest = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push(line);
    }
    assert!(rest.iter().any(|l| l.contains("gridmesh stopped")), "{rest:?}");
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn operators_bootstrap_users_and_tokens_from_the_command_line(pool: PgPool) {
    let url = database_url(&pool);
    let out = run(&["user", "add", "--database-url", &url, "--name", "First Operator", "--role", "operator"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let user_id = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let out = run(&["token", "issue", "--database-url", &url, "--user", &user_id, "--label", "laptop"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let caller = gridmesh_db::authenticate(&pool, &token).await.unwrap().expect("the printed token works");
    assert_eq!(caller.role, Role::Operator);
    assert_eq!(caller.user_id.to_string(), user_id);

    let out = run(&["user", "list", "--database-url", &url, "--role", "operator"]);
    assert!(String::from_utf8(out.stdout).unwrap().contains("First Operator"));

    let out = run(&["user", "add", "--database-url", &url, "--name", "x", "--role", "king"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("expected one of homeowner"));

    let out = run(&["token", "issue", "--database-url", &url, "--user", &uuid::Uuid::new_v4().to_string()]);
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr).unwrap().contains("no user with id"));
}

#[test]
fn optimize_solves_an_instance_file_and_names_what_is_wrong_with_a_bad_one() {
    let dir = std::env::temp_dir().join(format!("gridmesh-optimize-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("instance.json");
    let instance = gridmesh_optimizer::generate::neighbourhood(3, 12, 2);
    std::fs::write(&input, serde_json::to_string(&instance).unwrap()).unwrap();
    let output = dir.join("plan.json");
    let out = run(&["optimize", "--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("plan written to"), "{text}");
    let plan: gridmesh_optimizer::Plan =
        serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    assert_eq!(plan.sites.len(), 12);
    assert_eq!(plan.input_hash, hex::encode(instance.input_hash()));

    // The same instance through HiGHS gives the same cost.
    let out = run(&[
        "optimize",
        "--input",
        input.to_str().unwrap(),
        "--solver",
        "highs",
        "--output",
        dir.join("highs.json").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let highs: gridmesh_optimizer::Plan =
        serde_json::from_str(&std::fs::read_to_string(dir.join("highs.json")).unwrap()).unwrap();
    let (a, b) = (plan.objective.total, highs.objective.total);
    assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "ipm {a} vs highs {b}");

    // A negative battery capacity is refused before solving, naming the site.
    let mut bad = instance.clone();
    let site = bad.sites.iter_mut().find(|s| s.battery.is_some()).unwrap();
    site.battery.as_mut().unwrap().capacity_kwh = -1.0;
    let name = site.id.clone();
    std::fs::write(&input, serde_json::to_string(&bad).unwrap()).unwrap();
    let out = run(&["optimize", "--input", input.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("was refused") && err.contains(&name), "{err}");
    // Not JSON at all.
    std::fs::write(&input, "{ not json").unwrap();
    let out = run(&["optimize", "--input", input.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an optimizer instance"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn operators_import_show_and_export_the_grid_from_the_command_line(pool: PgPool) {
    let url = database_url(&pool);
    let dir = std::env::temp_dir().join(format!("gridmesh-grid-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("grid.csv");
    let grid = "code,kind,parent,name,import_limit_kw,export_limit_kw\nT1,transformer,,Substation,400,250\nF1,feeder,T1,Feeder 1,150,100\n";
    std::fs::write(&file, grid).unwrap();
    let path = file.to_str().unwrap();
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();

    let dry = run(&["grid", "import", "--database-url", &url, "--dry-run", path]);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    assert!(text(&dry).contains("would change 2 node(s), 0 unchanged"), "{}", text(&dry));
    assert!(gridmesh_db::stored_grid(&pool).await.unwrap().is_empty(), "a dry run writes nothing");
    let done = run(&["grid", "import", "--database-url", &url, path]);
    assert!(text(&done).contains("changed 2 node(s)"), "{}", text(&done));
    let again = run(&["grid", "import", "--database-url", &url, path]);
    assert!(text(&again).contains("changed 0 node(s), 2 unchanged"), "{}", text(&again));
    let show = text(&run(&["grid", "show", "--database-url", &url]));
    assert!(
        show.contains("transformer Substation (T1) import 400 kW")
            && show.contains("\n  feeder Feeder 1 (F1)"),
        "{show}"
    );
    assert_eq!(text(&run(&["grid", "export", "--database-url", &url])), grid);

    std::fs::write(&file, grid.replace("F1,feeder,T1", "F1,feeder,T7")).unwrap();
    let bad = run(&["grid", "import", "--database-url", &url, path]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("was refused, nothing was changed") && err.contains("parent \"T7\""), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn operators_list_show_and_assign_homes_from_the_command_line(pool: PgPool) {
    use gridmesh_core::{GeoPoint, GridConnection, SiteId, Watts};
    let url = database_url(&pool);
    let dir = std::env::temp_dir().join(format!("gridmesh-site-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("grid.csv");
    std::fs::write(&file, "code,kind,parent,name,import_limit_kw,export_limit_kw\nT1,transformer,,Sub,400,250\nF1,feeder,T1,Feeder 1,150,100\n").unwrap();
    assert!(run(&["grid", "import", "--database-url", &url, file.to_str().unwrap()]).status.success());
    let owner = gridmesh_db::create_user(
        &pool,
        &gridmesh_db::NewUser { name: "ada".into(), email: None, role: Role::Prosumer },
    )
    .await
    .unwrap();
    let id = SiteId::new_random();
    gridmesh_db::register_home(
        &pool,
        &gridmesh_core::Site {
            id,
            owner: owner.id,
            feeder: None,
            name: "Ada's house".into(),
            location: Some(GeoPoint { lat: 52.5, lon: 13.4 }),
            rated_pv: Watts(5_000),
            pv_orientation: None,
            battery: None,
            grid: GridConnection { import_limit: Watts(17_000), export_limit: Watts(5_000) },
        },
        Some("3 Oak Lane"),
    )
    .await
    .unwrap();
    let text = |o: std::process::Output| {
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let (ok, pending) = text(run(&["site", "list", "--database-url", &url, "--pending"]));
    assert!(ok && pending.contains("Ada's house") && pending.contains("3 Oak Lane"), "{pending}");
    let (ok, wrong) =
        text(run(&["site", "assign", "--database-url", &url, &id.to_string(), "--feeder", "T1"]));
    assert!(!ok && wrong.contains("T1 is a transformer, not a feeder"), "{wrong}");
    let (ok, unknown) =
        text(run(&["site", "assign", "--database-url", &url, &id.to_string(), "--feeder", "F9"]));
    assert!(!ok && unknown.contains("no grid node with code or id \"F9\""), "{unknown}");
    let (ok, assigned) =
        text(run(&["site", "assign", "--database-url", &url, &id.to_string(), "--feeder", "F1"]));
    assert!(ok && assigned.contains("is on feeder F1 (Feeder 1)"), "{assigned}");
    let (ok, listed) = text(run(&["site", "list", "--database-url", &url]));
    assert!(
        ok && listed.contains(&id.to_string()) && listed.contains("active") && listed.contains("PV 5 kW"),
        "{listed}"
    );
    let (ok, shown) = text(run(&["site", "show", "--database-url", &url, &id.to_string()]));
    assert!(ok && shown.contains("Ada's house") && shown.contains("import 17 kW"), "{shown}");
    let (ok, again) =
        text(run(&["site", "assign", "--database-url", &url, &id.to_string(), "--feeder", "F1"]));
    assert!(!ok && again.contains("is active, not pending"), "{again}");
    let _ = std::fs::remove_dir_all(&dir);
}
