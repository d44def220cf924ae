//! The agent end to end, over real TCP: it reads the simulator's SunSpec device, signs
//! batches, keeps them on disk, and sends them to a real Mosquitto where a stand-in for ingest
//! acknowledges them (signed, as ingest does). The broker goes down and comes back: the buffer
//! grows and drains in order. The agent is killed with SIGKILL and restarted: every sequence
//! number arrives, none with two different contents.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridmesh_core::{AgentId, BatterySpec, GeoPoint, SiteId, WattHours, Watts};
use gridmesh_sim::device::{Profile, SimDevice};
use gridmesh_sim::home::Home;
use gridmesh_sim::server::{Running, spawn};
use gridmesh_testkit::Mosquitto;
use gridmesh_wire::topics::{self, Channel};
use gridmesh_wire::{Ack, KeyPair, Message, TelemetryCommitted};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

async fn sim() -> Running {
    let battery =
        BatterySpec { capacity: WattHours(10_000), max_charge: Watts(4_000), max_discharge: Watts(4_000) };
    let home = Home::new(Watts(8_000), Some(battery), GeoPoint { lat: 52.5, lon: 13.4 }, 9);
    let device = SimDevice::new(home, Profile::IntScale, 1, "SIM-E2E").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn(listener, device, Duration::from_millis(100)).unwrap()
}

/// What the stand-in for ingest received: sequence number → the reading's bytes, and the
/// order batches first arrived in.
#[derive(Default)]
struct Received {
    readings: BTreeMap<u64, String>,
    conflicts: Vec<u64>,
    first_arrivals: Vec<u64>,
}

/// Subscribes to the site's telemetry and acknowledges each batch, signed by `server`.
fn ingest(
    port: u16,
    site: SiteId,
    agent_key: gridmesh_wire::PublicKey,
    server: KeyPair,
) -> Arc<Mutex<Received>> {
    let received = Arc::new(Mutex::new(Received::default()));
    let state = Arc::clone(&received);
    let mut opts = MqttOptions::new(format!("fake-ingest-{}", uuid_like()), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
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
                    assert_eq!(signed.signer, agent_key, "signed by the agent's key");
                    let Message::Telemetry(batch) = signed.message else { continue };
                    {
                        let mut s = state.lock().unwrap();
                        if !s.readings.contains_key(&batch.first_seq) {
                            s.first_arrivals.push(batch.first_seq);
                        }
                        for (seq, r) in batch.sequenced() {
                            let text = format!("{r:?}");
                            match s.readings.get(&seq) {
                                Some(old) if *old != text => s.conflicts.push(seq),
                                _ => {
                                    s.readings.insert(seq, text);
                                }
                            }
                        }
                    }
                    let ack = Message::Ack(Ack::TelemetryCommitted(TelemetryCommitted {
                        agent: batch.agent,
                        site: batch.site,
                        first_seq: batch.first_seq,
                        last_seq: batch.last_seq(),
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
    received
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("gridmesh-agent-{name}-{}", uuid_like()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(
    dir: &std::path::Path,
    site: SiteId,
    agent: AgentId,
    broker: u16,
    device: std::net::SocketAddr,
    server: &KeyPair,
) -> String {
    format!(
        r#"site = "{site}"
agent = "{agent}"
key_file = "{dir}/agent.key"
poll_ms = 100
batch_readings = 5

[buffer]
dir = "{dir}/buffer"

[central]
url = "mqtt://127.0.0.1:{broker}"
allow_plain = true
server_key = "{server_key}"

[[sunspec]]
name = "sim home"
address = "{device}"
"#,
        dir = dir.display(),
        server_key = server.public(),
    )
}

async fn wait_until(within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "condition not met within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn contiguous(r: &Received) -> Option<u64> {
    let keys: Vec<u64> = r.readings.keys().copied().collect();
    (keys.first() == Some(&0) && keys.windows(2).all(|w| w[1] == w[0] + 1))
        .then(|| *keys.last().unwrap_or(&0))
}

#[tokio::test]
async fn a_broker_outage_fills_the_buffer_which_drains_in_order() {
    let mut broker = Mosquitto::start().await;
    let device = sim().await;
    let (site, agent) = (SiteId::new_random(), AgentId::new_random());
    let dir = temp_dir("outage");
    let server = KeyPair::from_seed([7; 32]);
    let cfg_path = dir.join("agent.toml");
    std::fs::write(&cfg_path, config(&dir, site, agent, broker.port, device.addr, &server)).unwrap();
    let cfg = gridmesh_agent::config::AgentConfig::load(&cfg_path).unwrap();
    let key = gridmesh_agent::key::load_or_create(&cfg.key_file).unwrap();
    let received = ingest(broker.port, site, key.public(), server);
    let seen = presence(broker.port, site);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(gridmesh_agent::run::run(cfg, key, stop_rx));

    wait_until(Duration::from_secs(15), || received.lock().unwrap().readings.len() >= 10).await;
    broker.stop().await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let during: usize = std::fs::read_dir(dir.join("buffer")).unwrap().count();
    assert!(during >= 1, "batches kept on disk while the broker is down");
    let before = received.lock().unwrap().readings.len();
    broker.restart().await;
    wait_until(Duration::from_secs(20), || received.lock().unwrap().readings.len() >= before + 30).await;
    let _ = stop.send(true);
    run.await.unwrap().unwrap();
    // A clean stop announces itself.
    wait_until(Duration::from_secs(5), || {
        seen.lock().unwrap().last() == Some(&gridmesh_wire::AgentState::Offline)
    })
    .await;

    let r = received.lock().unwrap();
    assert!(r.conflicts.is_empty(), "{:?}", r.conflicts);
    assert!(
        contiguous(&r).is_some(),
        "no sequence number missing: {:?}",
        r.readings.keys().collect::<Vec<_>>()
    );
    let mut sorted = r.first_arrivals.clone();
    sorted.sort_unstable();
    assert_eq!(r.first_arrivals, sorted, "the buffer drains oldest first");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The agent's presence as the broker delivers it: the latest state seen.
fn presence(port: u16, site: SiteId) -> Arc<Mutex<Vec<gridmesh_wire::AgentState>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = Arc::clone(&seen);
    let mut opts = MqttOptions::new(format!("presence-{}", uuid_like()), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(opts, 100);
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client.subscribe(topics::topic(site, Channel::Status), QoS::AtLeastOnce).await.unwrap();
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Ok(signed) = gridmesh_wire::decode(&p.payload)
                        && let Message::Status(s) = signed.message
                    {
                        state.lock().unwrap().push(s.state);
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    seen
}

#[tokio::test]
async fn kill_9_of_the_agent_loses_no_reading() {
    let broker = Mosquitto::start().await;
    let device = sim().await;
    let (site, agent) = (SiteId::new_random(), AgentId::new_random());
    let dir = temp_dir("kill");
    let server = KeyPair::from_seed([8; 32]);
    let cfg_path = dir.join("agent.toml");
    std::fs::write(&cfg_path, config(&dir, site, agent, broker.port, device.addr, &server)).unwrap();
    let agent_key = {
        let cfg = gridmesh_agent::config::AgentConfig::load(&cfg_path).unwrap();
        gridmesh_agent::key::load_or_create(&cfg.key_file).unwrap().public()
    };
    let received = ingest(broker.port, site, agent_key, server);
    let seen = presence(broker.port, site);
    let last_state = || seen.lock().unwrap().last().copied();
    let start = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_gridmesh-agent"))
            .args(["--config", cfg_path.to_str().unwrap(), "run"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let mut first = start();
    wait_until(Duration::from_secs(15), || received.lock().unwrap().readings.len() >= 15).await;
    assert_eq!(last_state(), Some(gridmesh_wire::AgentState::Online));
    first.kill().await.unwrap(); // SIGKILL, mid-stream
    // The broker announces the agent gone (its last will).
    wait_until(Duration::from_secs(10), || last_state() == Some(gridmesh_wire::AgentState::Offline)).await;
    let seen = received.lock().unwrap().readings.len();
    let mut second = start();
    wait_until(Duration::from_secs(20), || received.lock().unwrap().readings.len() >= seen + 20).await;
    second.kill().await.unwrap();

    let r = received.lock().unwrap();
    assert!(r.conflicts.is_empty(), "a sequence number reused with other content: {:?}", r.conflicts);
    assert!(contiguous(&r).is_some(), "a reading was lost: {:?}", r.readings.keys().collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Publishes setpoints on the site's topic and collects the agent's answers.
fn commander(port: u16, site: SiteId) -> (AsyncClient, Arc<Mutex<Vec<gridmesh_wire::SetpointResult>>>) {
    let answers = Arc::new(Mutex::new(Vec::new()));
    let state = Arc::clone(&answers);
    let mut opts = MqttOptions::new(format!("commander-{}", uuid_like()), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(opts, 100);
    let sub = client.clone();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    sub.subscribe(topics::topic(site, Channel::SetpointAck), QoS::AtLeastOnce).await.unwrap();
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Ok(signed) = gridmesh_wire::decode(&p.payload)
                        && let Message::Ack(Ack::Setpoint(r)) = signed.message
                    {
                        state.lock().unwrap().push(r);
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    (client, answers)
}

#[tokio::test]
async fn setpoints_are_checked_clamped_applied_and_revert() {
    use gridmesh_core::{CommandId, Setpoint};
    use gridmesh_wire::SetpointOutcome;
    let broker = Mosquitto::start().await;
    let device = sim().await;
    let (site, agent) = (SiteId::new_random(), AgentId::new_random());
    let dir = temp_dir("setpoints");
    let server = KeyPair::from_seed([9; 32]);
    let cfg_path = dir.join("agent.toml");
    std::fs::write(&cfg_path, config(&dir, site, agent, broker.port, device.addr, &server)).unwrap();
    let cfg = gridmesh_agent::config::AgentConfig::load(&cfg_path).unwrap();
    let key = gridmesh_agent::key::load_or_create(&cfg.key_file).unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(gridmesh_agent::run::run(cfg, key, stop_rx));
    let (client, answers) = commander(broker.port, site);
    tokio::time::sleep(Duration::from_millis(1_000)).await;

    let now = chrono::Utc::now();
    let setpoint = |battery: Option<i64>, import: Option<i64>, until_secs: i64| Setpoint {
        command: CommandId::new_random(),
        site,
        issued_at: now,
        valid_from: now - chrono::Duration::seconds(1),
        valid_until: now + chrono::Duration::seconds(until_secs),
        revert_after_secs: 2,
        battery_power: battery.map(Watts),
        pv_limit: None,
        import_limit: import.map(Watts),
        export_limit: None,
    };
    let send = |sp: Setpoint, by: &KeyPair| {
        let bytes = gridmesh_wire::encode(&Message::Setpoint(sp), by).unwrap();
        let client = client.clone();
        async move {
            client
                .publish(topics::topic(site, Channel::Setpoints), QoS::AtLeastOnce, false, bytes)
                .await
                .unwrap()
        }
    };
    let answer_for = |command: CommandId| {
        let answers = Arc::clone(&answers);
        async move {
            wait_until(Duration::from_secs(10), || {
                answers.lock().unwrap().iter().any(|a| a.command == command)
            })
            .await;
            answers.lock().unwrap().iter().find(|a| a.command == command).unwrap().clone()
        }
    };

    // Charge at 2 kW for 2 s: applied, the device charges, then hands control back.
    let charge = setpoint(Some(2_000), None, 60);
    send(charge, &server).await;
    let a = answer_for(charge.command).await;
    assert_eq!((a.outcome, a.battery_power), (SetpointOutcome::Applied, Some(Watts(2_000))), "{a:?}");
    assert_eq!(device.device.lock().unwrap().home().battery_command(chrono::Utc::now()), Some(Watts(2_000)));
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    assert_eq!(device.device.lock().unwrap().home().battery_command(chrono::Utc::now()), None, "reverted");

    // 10 kW is beyond the battery's 4 kW: clamped, and the answer says what was applied.
    let big = setpoint(Some(10_000), None, 60);
    send(big, &server).await;
    let a = answer_for(big.command).await;
    assert_eq!((a.outcome, a.battery_power), (SetpointOutcome::Clamped, Some(Watts(4_000))), "{a:?}");

    // Refusals: another signer, an expired window, a control the device does not have.
    let forged = setpoint(Some(1_000), None, 60);
    send(forged, &KeyPair::from_seed([66; 32])).await;
    let a = answer_for(forged.command).await;
    assert_eq!(a.outcome, SetpointOutcome::Refused);
    assert!(a.reason.contains("not signed by the server"), "{}", a.reason);
    let mut late = setpoint(Some(1_000), None, 60);
    late.valid_from = now - chrono::Duration::seconds(120);
    late.valid_until = now - chrono::Duration::seconds(60);
    send(late, &server).await;
    assert_eq!(answer_for(late.command).await.outcome, SetpointOutcome::Expired);
    let import = setpoint(None, Some(3_000), 60);
    send(import, &server).await;
    let a = answer_for(import.command).await;
    assert_eq!(a.outcome, SetpointOutcome::Refused);
    assert!(a.reason.contains("not supported"), "{}", a.reason);

    let _ = stop.send(true);
    run.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn mqtt_devices_on_the_home_broker_feed_the_readings() {
    let broker = Mosquitto::start().await;
    let (site, agent) = (SiteId::new_random(), AgentId::new_random());
    let dir = temp_dir("home");
    let server = KeyPair::from_seed([10; 32]);
    let cfg = format!(
        r#"site = "{site}"
agent = "{agent}"
key_file = "{d}/agent.key"
poll_ms = 100
batch_readings = 2

[buffer]
dir = "{d}/buffer"

[central]
url = "mqtt://127.0.0.1:{port}"
allow_plain = true
server_key = "{key}"

[home_broker]
address = "127.0.0.1:{port}"

[[mqtt_device]]
name = "grid meter"
family = {{ tasmota = {{ sensor_topic = "tele/meter/SENSOR", energy = "grid" }} }}
"#,
        d = dir.display(),
        port = broker.port,
        key = server.public(),
    );
    let cfg_path = dir.join("agent.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let cfg = gridmesh_agent::config::AgentConfig::load(&cfg_path).unwrap();
    let key = gridmesh_agent::key::load_or_create(&cfg.key_file).unwrap();
    let received = ingest(broker.port, site, key.public(), server);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(gridmesh_agent::run::run(cfg, key, stop_rx));
    let mut opts = MqttOptions::new("tasmota-plug", "127.0.0.1", broker.port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (plug, mut events) = AsyncClient::new(opts, 10);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    tokio::time::sleep(Duration::from_millis(800)).await;
    let good = r#"{"Time":"2026-12-01T10:00:00","ENERGY":{"Total":12.3511,"Power":187.4}}"#;
    plug.publish("tele/meter/SENSOR", QoS::AtLeastOnce, false, good.as_bytes().to_vec()).await.unwrap();
    let has = |needle: &'static str| {
        let received = Arc::clone(&received);
        move || received.lock().unwrap().readings.values().any(|r| r.contains(needle))
    };
    wait_until(Duration::from_secs(10), has("grid_power: Some(187 W)")).await;
    wait_until(Duration::from_secs(10), has("grid_import: Some(12351 Wh)")).await;
    // A broken payload is skipped; the last good state stays.
    plug.publish("tele/meter/SENSOR", QoS::AtLeastOnce, false, b"{\"ENERGY\":".to_vec()).await.unwrap();
    let before = received.lock().unwrap().readings.len();
    wait_until(Duration::from_secs(10), || received.lock().unwrap().readings.len() >= before + 6).await;
    let last = received.lock().unwrap().readings.values().last().unwrap().clone();
    assert!(last.contains("grid_power: Some(187 W)"), "{last}");
    let _ = stop.send(true);
    run.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_pv_limit_goes_to_the_dtu_limit_topic_and_is_handed_back() {
    use gridmesh_core::{CommandId, Setpoint};
    use gridmesh_wire::SetpointOutcome;
    let broker = Mosquitto::start().await;
    let (site, agent) = (SiteId::new_random(), AgentId::new_random());
    let dir = temp_dir("dtu");
    let server = KeyPair::from_seed([11; 32]);
    let limit_topic = "solar/114182912345/cmd/limit_nonpersistent_absolute";
    let cfg = format!(
        r#"site = "{site}"
agent = "{agent}"
key_file = "{d}/agent.key"
poll_ms = 100

[buffer]
dir = "{d}/buffer"

[central]
url = "mqtt://127.0.0.1:{port}"
allow_plain = true
server_key = "{key}"

[home_broker]
address = "127.0.0.1:{port}"

[[mqtt_device]]
name = "balcony inverter"
family = {{ dtu = {{ base_topic = "solar/114182912345/0", values = {{ power = {{ field = "pv_power", unit = "W" }} }}, limit = {{ topic = "{limit_topic}", format = "watts", rated_w = 800 }} }} }}
"#,
        d = dir.display(),
        port = broker.port,
        key = server.public(),
    );
    let cfg_path = dir.join("agent.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let cfg = gridmesh_agent::config::AgentConfig::load(&cfg_path).unwrap();
    let key = gridmesh_agent::key::load_or_create(&cfg.key_file).unwrap();
    // The DTU: what arrives on its limit topic.
    let limits = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let limits = Arc::clone(&limits);
        let mut opts = MqttOptions::new(format!("opendtu-{}", uuid_like()), "127.0.0.1", broker.port);
        opts.set_keep_alive(Duration::from_secs(5));
        let (dtu, mut events) = AsyncClient::new(opts, 10);
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        dtu.subscribe(limit_topic, QoS::AtLeastOnce).await.unwrap();
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        limits.lock().unwrap().push(String::from_utf8_lossy(&p.payload).into_owned());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
    }
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(gridmesh_agent::run::run(cfg, key, stop_rx));
    let (client, answers) = commander(broker.port, site);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let now = chrono::Utc::now();
    let setpoint = |pv: Option<i64>, battery: Option<i64>| Setpoint {
        command: CommandId::new_random(),
        site,
        issued_at: now,
        valid_from: now - chrono::Duration::seconds(1),
        valid_until: now + chrono::Duration::seconds(60),
        revert_after_secs: 2,
        battery_power: battery.map(Watts),
        pv_limit: pv.map(Watts),
        import_limit: None,
        export_limit: None,
    };
    let send = |sp: Setpoint| {
        let bytes = gridmesh_wire::encode(&Message::Setpoint(sp), &server).unwrap();
        let client = client.clone();
        async move {
            client
                .publish(topics::topic(site, Channel::Setpoints), QoS::AtLeastOnce, false, bytes)
                .await
                .unwrap()
        }
    };
    let answer_for = |command: CommandId| {
        let answers = Arc::clone(&answers);
        async move {
            wait_until(Duration::from_secs(10), || {
                answers.lock().unwrap().iter().any(|a| a.command == command)
            })
            .await;
            answers.lock().unwrap().iter().find(|a| a.command == command).unwrap().clone()
        }
    };

    // 300 W: sent to the DTU as it takes it, then handed back (full power) after 2 s.
    let limit = setpoint(Some(300), None);
    send(limit).await;
    let a = answer_for(limit.command).await;
    assert_eq!((a.outcome, a.pv_limit), (SetpointOutcome::Applied, Some(Watts(300))), "{a:?}");
    wait_until(Duration::from_secs(5), || limits.lock().unwrap().first().map(String::as_str) == Some("300"))
        .await;
    wait_until(Duration::from_secs(6), || limits.lock().unwrap().get(1).map(String::as_str) == Some("800"))
        .await;

    // Beyond the inverter's rating: clamped.
    let big = setpoint(Some(5_000), None);
    send(big).await;
    let a = answer_for(big.command).await;
    assert_eq!((a.outcome, a.pv_limit), (SetpointOutcome::Clamped, Some(Watts(800))), "{a:?}");

    // A microinverter has no battery control.
    let battery = setpoint(None, Some(1_000));
    send(battery).await;
    let a = answer_for(battery.command).await;
    assert_eq!(a.outcome, SetpointOutcome::Refused);
    assert!(a.reason.contains("model 124"), "{}", a.reason);

    // A limit still in force when the agent stops is handed back first.
    let held = setpoint(Some(100), None);
    send(held).await;
    answer_for(held.command).await;
    wait_until(Duration::from_secs(5), || limits.lock().unwrap().iter().any(|p| p == "100")).await;
    let _ = stop.send(true);
    run.await.unwrap().unwrap();
    wait_until(Duration::from_secs(5), || limits.lock().unwrap().last().map(String::as_str) == Some("800"))
        .await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `check` listens to the MQTT devices: a device that published shows its values, one that
/// sent something broken shows why, and a silent one says on which topic nothing arrived.
#[tokio::test]
async fn check_listens_to_the_mqtt_devices_and_says_what_arrived() {
    use gridmesh_devices::DeviceConfig;
    let broker = Mosquitto::start().await;
    let configs: Vec<DeviceConfig> = toml::from_str::<std::collections::BTreeMap<String, Vec<DeviceConfig>>>(
        r#"
[[d]]
name = "grid meter"
family = { tasmota = { sensor_topic = "tele/meter/SENSOR", energy = "grid" } }
[[d]]
name = "pv plug"
family = { tasmota = { sensor_topic = "tele/pv/SENSOR", energy = "pv" } }
[[d]]
name = "heat pump"
family = { tasmota = { sensor_topic = "tele/heat/SENSOR", energy = "grid" } }
"#,
    )
    .unwrap()
    .remove("d")
    .unwrap();
    let devices = gridmesh_agent::home::devices(&configs).unwrap();
    let (client, events) = gridmesh_agent::home::connect("127.0.0.1".into(), broker.port, None);
    let listening =
        tokio::spawn(gridmesh_agent::home::listen(client, events, devices, Duration::from_secs(3)));
    let mut opts = MqttOptions::new("tasmota-plugs", "127.0.0.1", broker.port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (plug, mut plug_events) = AsyncClient::new(opts, 10);
    tokio::spawn(async move { while plug_events.poll().await.is_ok() {} });
    tokio::time::sleep(Duration::from_millis(800)).await;
    let good = r#"{"ENERGY":{"Total":12.3511,"Power":187.4}}"#;
    plug.publish("tele/meter/SENSOR", QoS::AtLeastOnce, false, good.as_bytes().to_vec()).await.unwrap();
    plug.publish("tele/pv/SENSOR", QoS::AtLeastOnce, false, b"{\"ENERGY\":".to_vec()).await.unwrap();
    let heard = listening.await.unwrap().unwrap();
    assert_eq!(heard.len(), 3);
    assert_eq!((heard[0].name.as_str(), heard[0].messages), ("grid meter", 1));
    assert_eq!(heard[0].state.grid_power_w, Some(187));
    assert_eq!(heard[1].messages, 0);
    assert!(heard[1].last_refusal.as_deref().is_some_and(|r| r.contains("tele/pv/SENSOR")), "{:?}", heard[1]);
    assert_eq!((heard[2].messages, heard[2].topics.clone()), (0, vec!["tele/heat/SENSOR".to_owned()]));
    assert!(heard[2].last_refusal.is_none());

    // No broker at all: said plainly, within the listening time.
    let (client, events) = gridmesh_agent::home::connect("127.0.0.1".into(), 9, None);
    let devices = gridmesh_agent::home::devices(&configs).unwrap();
    let err =
        gridmesh_agent::home::listen(client, events, devices, Duration::from_secs(1)).await.unwrap_err();
    assert!(err.to_string().contains("did not answer within 1 s"), "{err:#}");
}
