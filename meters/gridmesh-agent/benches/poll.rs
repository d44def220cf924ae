//! One agent polling 50 simulated SunSpec devices every second: its resident memory and its
//! share of one core, measured from /proc while it runs against a real Mosquitto, with a
//! stand-in for ingest acknowledging every batch (as the service does).
//!
//! ```sh
//! cargo build --release -p gridmesh-sim -p gridmesh-agent
//! cargo bench -p gridmesh-agent --bench poll          # DEVICES=50 MEASURE_SECS=60 by default
//! ```

#![allow(clippy::unwrap_used, clippy::print_stdout, reason = "a benchmark binary")]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gridmesh_core::{AgentId, SiteId};
use gridmesh_testkit::Mosquitto;
use gridmesh_wire::topics::{self, Channel};
use gridmesh_wire::{Ack, KeyPair, Message, TelemetryCommitted};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

fn release_bin(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release").join(name);
    assert!(
        p.exists(),
        "{} is missing: cargo build --release -p gridmesh-sim -p gridmesh-agent",
        p.display()
    );
    p
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may contain spaces): utime is the 12th, stime the 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn free_base(n: u16) -> u16 {
    'search: for base in (20_000_u16..60_000).step_by(97) {
        for k in 0..n {
            if std::net::TcpListener::bind(("127.0.0.1", base + k)).is_err() {
                continue 'search;
            }
        }
        return base;
    }
    panic!("no {n} free ports");
}

fn acknowledge(port: u16, site: SiteId, server: KeyPair) {
    let mut opts = MqttOptions::new("bench-ingest", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(10));
    let (client, mut events) = AsyncClient::new(opts, 1_000);
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client
                        .subscribe(topics::topic(site, Channel::Telemetry), QoS::AtLeastOnce)
                        .await
                        .unwrap();
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let Ok(signed) = gridmesh_wire::decode(&p.payload) else { continue };
                    let Message::Telemetry(b) = signed.message else { continue };
                    let ack = Message::Ack(Ack::TelemetryCommitted(TelemetryCommitted {
                        agent: b.agent,
                        site: b.site,
                        first_seq: b.first_seq,
                        last_seq: b.last_seq(),
                    }));
                    let bytes = gridmesh_wire::encode(&ack, &server).unwrap();
                    let _ = client
                        .publish(topics::topic(site, Channel::TelemetryAck), QoS::AtLeastOnce, false, bytes)
                        .await;
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
}

#[tokio::main]
async fn main() {
    let devices: u16 = std::env::var("DEVICES").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
    let seconds: u64 = std::env::var("MEASURE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let broker = Mosquitto::start().await;
    let base = free_base(devices);
    let mut sim = std::process::Command::new(release_bin("gridmesh-sim"))
        .args(["--homes", &devices.to_string(), "--port", &base.to_string()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let dir = std::env::temp_dir().join(format!("gridmesh-agent-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (site, agent) = (SiteId::new_random(), AgentId::new_random());
    let server = KeyPair::from_seed([3; 32]);
    let mut cfg = format!(
        "site = \"{site}\"\nagent = \"{agent}\"\nkey_file = \"{d}/agent.key\"\npoll_ms = 1000\nbatch_readings = 10\n\
         [buffer]\ndir = \"{d}/buffer\"\n[central]\nurl = \"mqtt://127.0.0.1:{port}\"\nallow_plain = true\nserver_key = \"{key}\"\n",
        d = dir.display(),
        port = broker.port,
        key = server.public(),
    );
    for k in 0..devices {
        cfg.push_str(&format!("[[sunspec]]\nname = \"home {k}\"\naddress = \"127.0.0.1:{}\"\n", base + k));
    }
    let cfg_path = dir.join("agent.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    acknowledge(broker.port, site, server);
    let mut agent_proc = std::process::Command::new(release_bin("gridmesh-agent"))
        .args(["--config", cfg_path.to_str().unwrap(), "run"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = agent_proc.id();
    // Warm up: first connections and discovery of every device.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let hz = 100.0; // USER_HZ on Linux
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (elapsed, c1) = (t0.elapsed().as_secs_f64(), cpu_ticks(pid));
    let rss = status_kb(pid, "VmRSS:");
    let peak = status_kb(pid, "VmHWM:");
    let cpu = (c1 - c0) as f64 / hz / elapsed * 100.0;
    let buffered = std::fs::read_dir(dir.join("buffer")).map(|d| d.count()).unwrap_or(0);
    println!(
        "agent polling {devices} SunSpec devices every 1 s for {elapsed:.0} s: CPU {cpu:.2} % of one core, RSS {:.1} MB (peak {:.1} MB), {buffered} buffer files",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    let _ = agent_proc.kill();
    let _ = agent_proc.wait();
    let _ = sim.kill();
    let _ = sim.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
