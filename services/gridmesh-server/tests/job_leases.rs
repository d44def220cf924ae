//! Two `gridmesh serve` processes against one database never run the same job at once: each
//! job runs in the process holding its lease, the other stands by, and when the holder stops
//! the standby takes the job over. Seen from outside, through `/readyz` and `/metrics`.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on a broken set-up; helpers outside #[test] fns unwrap too"
)]

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

use common::{Client, Proxy, database_url};

const BIN: &str = env!("CARGO_BIN_EXE_gridmesh");

/// The jobs both processes are asked to run: the ones that need no chain and no broker traffic
/// to make progress, so each shows a successful round.
const JOBS: [&str; 4] = ["market", "settlement", "partitions", "retention"];

/// Starts `gridmesh serve` with its own key and data folder; returns it and its address.
async fn serve(database: &str, dir: &std::path::Path, name: &str) -> (Child, SocketAddr) {
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "serve",
            "--http-bind",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--no-ingest",
            "--jobs",
            &JOBS.join(","),
            "--market-tick",
            "1",
            "--mqtt-client-id",
            name,
            "--database-url",
            database,
        ])
        .env(
            "GRIDMESH_MQTT_URL",
            std::env::var("GRIDMESH_TEST_MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into()),
        )
        .env("GRIDMESH_SERVER_KEY_FILE", dir.join(format!("{name}.key")))
        .env_remove("GRIDMESH_CHAIN_RPC_URL")
        .env_remove("GRIDMESH_JOBS")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["message"] == "gridmesh listening" {
                return v["addr"].as_str().unwrap().parse::<SocketAddr>().unwrap();
            }
        }
        panic!("{name} exited before listening");
    })
    .await
    .expect("listening within 60 s");
    // Keep reading the log so the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

/// Each job's lease state in a process, from `/readyz`.
async fn leases(addr: SocketAddr) -> serde_json::Value {
    let answer = Client::new(addr).get("/readyz").await;
    answer.json()["checks"]["jobs"].clone()
}

/// Waits until every job of [`JOBS`] runs in exactly one of `procs` and has had a successful
/// round there; returns, per job, the index of the process running it.
async fn settled(procs: &[SocketAddr]) -> Vec<usize> {
    let started = Instant::now();
    loop {
        let mut views = Vec::new();
        for addr in procs {
            views.push(leases(*addr).await);
        }
        let owners: Vec<Vec<usize>> = JOBS
            .iter()
            .map(|job| {
                (0..procs.len())
                    .filter(|&i| {
                        views[i][job]["lease"] == "running" && !views[i][job]["last_success"].is_null()
                    })
                    .collect()
            })
            .collect();
        for (job, o) in JOBS.iter().zip(&owners) {
            assert!(o.len() <= 1, "{job} runs in {} processes at once: {views:?}", o.len());
        }
        if owners.iter().all(|o| o.len() == 1) {
            return owners.into_iter().map(|o| o[0]).collect();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "jobs did not settle within 60 s: {views:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[sqlx::test(migrations = false)]
async fn two_processes_share_the_jobs_and_a_standby_takes_over(pool: PgPool) {
    let dir = std::env::temp_dir().join(format!("gridmesh-leases-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // One after the other: the first applies the migrations alone.
    let (mut first, a) = serve(&database_url(&pool), &dir, "lease-a").await;
    let (_second, b) = serve(&database_url(&pool), &dir, "lease-b").await;

    let owners = settled(&[a, b]).await;
    // The first process took every lease before the second started; the second stands by.
    assert!(owners.iter().all(|&i| i == 0), "{owners:?}");
    let standby = leases(b).await;
    for job in JOBS {
        assert_eq!(standby[job]["lease"], "standby", "{job}: {standby}");
    }
    // The metric says the same.
    let metrics = Client::new(a).get("/metrics").await.body;
    assert!(
        metrics.contains("gridmesh_job_last_success_timestamp_seconds{job=\"market\"}"),
        "no last-success metric: {metrics}"
    );

    // The holder stops (SIGTERM, a graceful stop that releases the leases); the standby takes
    // every job over and runs it.
    let pid = first.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(20), first.wait()).await.expect("stops").unwrap();
    assert!(status.success(), "{status}");
    let owners = settled(&[b]).await;
    assert!(owners.iter().all(|&i| i == 0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[sqlx::test(migrations = false)]
async fn a_killed_holder_gives_its_leases_up(pool: PgPool) {
    let dir = std::env::temp_dir().join(format!("gridmesh-leases-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut first, a) = serve(&database_url(&pool), &dir, "kill-a").await;
    let (_second, b) = serve(&database_url(&pool), &dir, "kill-b").await;
    settled(&[a, b]).await;
    // No goodbye: the database notices the dead session and frees its advisory locks.
    first.kill().await.unwrap();
    let owners = settled(&[b]).await;
    assert!(owners.iter().all(|&i| i == 0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each job's lease state in a process that may not answer `/readyz` with 200 (its database is
/// away): the jobs are reported either way.
async fn lease_states(addr: SocketAddr) -> Vec<String> {
    let jobs = leases(addr).await;
    JOBS.iter().map(|j| jobs[j]["lease"].as_str().unwrap_or("?").to_owned()).collect()
}

#[sqlx::test(migrations = false)]
async fn a_holder_cut_off_from_the_database_stands_by_and_the_other_takes_over(pool: PgPool) {
    let dir = std::env::temp_dir().join(format!("gridmesh-leases-cut-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let direct = database_url(&pool);
    let mut via = url::Url::parse(&direct).unwrap();
    let upstream = tokio::net::lookup_host((via.host_str().unwrap().to_owned(), via.port().unwrap_or(5432)))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(upstream).await;
    via.set_host(Some("127.0.0.1")).unwrap();
    via.set_port(Some(proxy.addr.port())).unwrap();
    // The first process reaches the database through the proxy, so it alone can be cut off
    // while it keeps running.
    let (_first, a) = serve(via.as_str(), &dir, "cut-a").await;
    let (_second, b) = serve(&direct, &dir, "cut-b").await;
    let owners = settled(&[a, b]).await;
    assert!(owners.iter().all(|&i| i == 0), "{owners:?}");

    proxy.cut();
    // The holder notices its lease connection is gone and stands by; the other takes over.
    let started = Instant::now();
    loop {
        let (held_a, held_b) = (lease_states(a).await, lease_states(b).await);
        if held_a.iter().all(|l| l == "standby") && held_b.iter().all(|l| l == "running") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no take-over within 60 s: {held_a:?} {held_b:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    settled(&[b]).await;

    // Back on the database, the first process stays a standby: the lease has its holder.
    proxy.restore();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(lease_states(a).await.iter().all(|l| l == "standby"));
    let owners = settled(&[a, b]).await;
    assert!(owners.iter().all(|&i| i == 1), "{owners:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
