//! The disk buffer: nothing appended is lost or corrupted by a crash at any instant (a real
//! `kill -9` of a writing process, and torn writes at every byte), acknowledgements survive a
//! restart, drain order is oldest first, and a full buffer drops its oldest batches, counted.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use gridmesh_agent::buffer::Buffer;
use proptest::prelude::*;

fn dir(name: &str) -> PathBuf {
    let d =
        std::env::temp_dir().join(format!("gridmesh-buffer-{name}-{}-{}", std::process::id(), rand_suffix()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

fn payload(seq: u64) -> Vec<u8> {
    format!("batch {seq} ").repeat(1 + (seq % 7) as usize).into_bytes()
}

#[test]
fn batches_drain_oldest_first_and_acks_survive_a_restart() {
    let d = dir("acks");
    let (mut b, rec) = Buffer::open(&d, 1 << 30).unwrap();
    assert_eq!(rec.pending, 0);
    for seq in 1..=10 {
        b.append(seq, &payload(seq)).unwrap();
    }
    assert!(b.append(10, b"again").is_err(), "sequence numbers only grow");
    let first = b.pending(3).unwrap();
    assert_eq!(first.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(first[1].1, payload(2));
    // Out-of-order acknowledgements.
    for seq in [2, 1, 5, 3] {
        b.ack(seq).unwrap();
    }
    assert_eq!(b.len(), 6);
    drop(b);
    let (b, rec) = Buffer::open(&d, 1 << 30).unwrap();
    // 1..=3 are below the watermark; 5 was acknowledged above it and is sent again after a
    // restart, which the service stores once.
    assert_eq!(rec.pending, 7);
    assert_eq!(b.pending(100).unwrap().iter().map(|p| p.0).collect::<Vec<_>>(), vec![4, 5, 6, 7, 8, 9, 10]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_full_buffer_drops_its_oldest_batches_and_counts_them() {
    let d = dir("full");
    let (mut b, _) = Buffer::open_with(&d, 4_000, 1_000).unwrap();
    for seq in 1..=100 {
        b.append(seq, &[seq as u8; 100]).unwrap();
    }
    assert!(b.bytes() <= 4_000 + 1_000, "{}", b.bytes());
    assert!(b.dropped() > 0);
    let pending: Vec<u64> = b.pending(1_000).unwrap().iter().map(|p| p.0).collect();
    assert_eq!(*pending.last().unwrap(), 100, "the newest are kept");
    assert_eq!(pending.len() as u64 + b.dropped(), 100);
    assert!(pending.windows(2).all(|w| w[1] == w[0] + 1), "what is kept is contiguous");
    std::fs::remove_dir_all(&d).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_torn_write_at_any_byte_loses_only_that_batch(n in 1_u64..40, cut in any::<usize>(), acked in 0_u64..40) {
        let d = dir("torn");
        let (mut b, _) = Buffer::open_with(&d, 1 << 30, 2_000).unwrap();
        for seq in 1..=n {
            b.append(seq, &payload(seq)).unwrap();
        }
        let acked = acked.min(n);
        for seq in 1..=acked {
            b.ack(seq).unwrap();
        }
        drop(b);
        // A crash while appending batch n + 1: part of its record reached the disk.
        let newest = std::fs::read_dir(&d).unwrap().filter_map(Result::ok).map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log")).max().unwrap();
        let mut record = vec![0xB1];
        let p = payload(n + 1);
        record.extend_from_slice(&(p.len() as u32).to_be_bytes());
        record.extend_from_slice(&(n + 1).to_be_bytes());
        record.extend_from_slice(&[0, 0, 0, 0]);
        record.extend_from_slice(&p);
        let torn = &record[..cut % record.len()];
        std::fs::OpenOptions::new().append(true).open(&newest).unwrap().write_all(torn).unwrap();
        let (b, rec) = Buffer::open_with(&d, 1 << 30, 2_000).unwrap();
        prop_assert_eq!(rec.truncated_bytes, torn.len() as u64);
        let pending: Vec<u64> = b.pending(1_000).unwrap().iter().map(|p| p.0).collect();
        prop_assert_eq!(pending, ((acked + 1)..=n).collect::<Vec<_>>());
        std::fs::remove_dir_all(&d).unwrap();
    }
}

/// The writer run in a child process: appends batches as fast as it can and prints each
/// sequence number once its append returned.
#[test]
fn child_writer() {
    let Ok(target) = std::env::var("GRIDMESH_BUFFER_CHILD") else { return };
    let (mut b, _) = Buffer::open_with(std::path::Path::new(&target), 1 << 30, 64 * 1024).unwrap();
    let mut seq = b.last_seq().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    loop {
        seq += 1;
        b.append(seq, &payload(seq)).unwrap();
        if seq % 3 == 0 {
            b.ack(seq - 2).unwrap();
        }
        writeln!(out, "{seq}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn kill_9_while_buffering_loses_and_corrupts_nothing() {
    let d = dir("kill");
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_writer", "--nocapture", "--test-threads", "1"])
            .env("GRIDMESH_BUFFER_CHILD", &d)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300 + 150 * round));
        child.kill().unwrap(); // SIGKILL
        let out = child.wait_with_output().unwrap();
        let confirmed: Vec<u64> =
            String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect();
        assert!(!confirmed.is_empty(), "the writer wrote nothing in round {round}");
        let last_confirmed = *confirmed.last().unwrap();
        let (b, _) = Buffer::open_with(&d, 1 << 30, 64 * 1024).unwrap();
        let pending = b.pending(usize::MAX).unwrap();
        // Every pending batch is intact, in order, and every confirmed batch is either pending
        // or was acknowledged by the writer.
        for (seq, p) in &pending {
            assert_eq!(p, &payload(*seq), "batch {seq} corrupted");
        }
        assert!(pending.windows(2).all(|w| w[0].0 < w[1].0));
        let max_pending = pending.last().map_or(0, |p| p.0);
        assert!(max_pending >= last_confirmed || pending.is_empty(), "batch {last_confirmed} was lost");
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn the_example_configuration_is_valid_and_bad_ones_name_the_field() {
    use gridmesh_agent::config::AgentConfig;
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.example.toml");
    let cfg = AgentConfig::load(&example).unwrap();
    assert_eq!(cfg.sunspec[0].meter_unit, Some(200));
    assert_eq!(cfg.mqtt_device.len(), 2);
    assert!(cfg.broker().unwrap().tls);
    let text = std::fs::read_to_string(&example).unwrap();
    let bad = |from: &str, to: &str| {
        AgentConfig::parse(std::path::Path::new("agent.toml"), &text.replace(from, to))
            .unwrap_err()
            .to_string()
    };
    assert!(bad("poll_ms = 1000", "poll_ms = 5").contains("poll_ms: must be 100 to 3600000"));
    assert!(
        bad("mqtts://mqtt.gridmesh.example:8883", "mqtt://x:1883")
            .contains("central.url: mqtt:// sends readings unencrypted")
    );
    assert!(bad("batch_readings = 10", "batch_readings = 0").contains("batch_readings"));
    assert!(bad("unit = 1\n", "unit = 1\ncolour = \"red\"\n").contains("unknown field `colour`"));
    assert!(bad("192.168.1.20:502", "not an address").contains("invalid socket address"));
    assert!(bad("energy = \"grid\"", "energy = \"moon\"").contains("unknown variant"));
}

#[test]
fn a_week_of_one_second_readings_fits_the_default_buffer() {
    use gridmesh_core::{AgentId, Reading, SiteId, StateOfCharge, WattHours, Watts};
    use gridmesh_wire::{KeyPair, Message, TelemetryBatch};
    let cfg = gridmesh_agent::config::BufferConfig::default();
    let at = chrono::Utc::now();
    // Every field present, large values: the biggest a reading gets.
    let reading = Reading {
        at,
        grid_power: Some(Watts(-17_345)),
        pv_power: Some(Watts(9_876)),
        battery_power: Some(Watts(-4_321)),
        battery_soc: StateOfCharge::from_basis_points(9_999),
        grid_import: Some(WattHours(123_456_789_012)),
        grid_export: Some(WattHours(98_765_432_109)),
        pv_energy: Some(WattHours(87_654_321_098)),
        battery_charged: Some(WattHours(7_654_321_098)),
        battery_discharged: Some(WattHours(6_543_210_987)),
    };
    let batch = TelemetryBatch {
        agent: AgentId::new_random(),
        site: SiteId::new_random(),
        first_seq: 1 << 40,
        readings: vec![reading; 10],
    };
    let bytes = gridmesh_wire::encode(&Message::Telemetry(batch), &KeyPair::from_seed([1; 32])).unwrap();
    let week = 7 * 24 * 3_600_u64;
    let per_week = |readings_per_second: u64| {
        week * readings_per_second / 10 * gridmesh_agent::buffer::record_bytes(bytes.len())
    };
    let limit = cfg.max_mib * 1024 * 1024;
    // One merged reading a second (what the agent does), and five a second as an upper bound.
    assert!(per_week(1) * 9 < limit, "{} bytes a week", per_week(1));
    assert!(per_week(5) < limit, "{} bytes a week at five readings a second", per_week(5));
}
