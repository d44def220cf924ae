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

use common::{Client, database_url};

const BIN: &str = env!("CARGO_BIN_EXE_gridmesh");

/// The jobs both processes are asked to run: the ones that need no chain and no broker traffic
/// to make progress, so each shows a successful round.
const JOBS: [&str; 4] = ["market", "settlement", "partitions", "retention"];

/// Starts `gridmesh serve` with its own key and data folder; returns it and its address.
async fn serve(pool: &PgPool, dir: &std::path::Path, name: &str) -> (Child, SocketAddr) {
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
            &database_url(pool),
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
    let (mut first, a) = serve(&pool, &dir, "lease-a").await;
    let (_second, b) = serve(&pool, &dir, "lease-b").await;

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
    let (mut first, a) = serve(&pool, &dir, "kill-a").await;
    let (_second, b) = serve(&pool, &dir, "kill-b").await;
    settled(&[a, b]).await;
    // No goodbye: the database notices the dead session and frees its advisory locks.
    first.kill().await.unwrap();
    let owners = settled(&[b]).await;
    assert!(owners.iter().all(|&i| i == 0));
    let _ = std::fs::remove_dir_all(&dir);
}
