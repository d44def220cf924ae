//! Keeps the examples in `docs/protocol.md` true: each example message is built here with a
//! fixed key, encoded, and its hex dump must appear in the document between
//! `<!-- example:NAME -->` and `<!-- /example -->`. Run with `GRIDMESH_BLESS=1` to rewrite the
//! dumps after a deliberate protocol change.

#![allow(clippy::unwrap_used, reason = "test set-up")]

use chrono::DateTime;
use gridmesh_core::{AgentId, CommandId, Reading, Setpoint, SiteId, StateOfCharge, WattHours, Watts};
use gridmesh_wire::{
    Ack, AgentState, AgentStatus, KeyPair, Message, SetpointOutcome, SetpointResult, TelemetryBatch,
    TelemetryCommitted, decode, encode,
};

const AGENT: [u8; 16] = [0x0a; 16];
const SITE: [u8; 16] = [0x51; 16];
const COMMAND: [u8; 16] = [0xc0; 16];

fn at(ms: i64) -> DateTime<chrono::Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

/// 2026-11-24T12:00:00Z
const NOON: i64 = 1_795_521_600_000;

fn examples() -> Vec<(&'static str, Message)> {
    let agent = AgentId::from_bytes(AGENT);
    let site = SiteId::from_bytes(SITE);
    vec![
        (
            "telemetry",
            Message::Telemetry(TelemetryBatch {
                agent,
                site,
                first_seq: 1000,
                readings: vec![
                    Reading {
                        at: at(NOON),
                        grid_power: Some(Watts(-2_350)),
                        pv_power: Some(Watts(4_100)),
                        battery_power: Some(Watts(1_200)),
                        battery_soc: StateOfCharge::from_basis_points(6_250),
                        grid_import: Some(WattHours(1_234_567)),
                        grid_export: Some(WattHours(765_432)),
                        ..Reading::default()
                    },
                    Reading { at: at(NOON + 1_000), grid_power: Some(Watts(-2_310)), ..Reading::default() },
                ],
            }),
        ),
        (
            "setpoint",
            Message::Setpoint(Setpoint {
                command: CommandId::from_bytes(COMMAND),
                site,
                issued_at: at(NOON),
                valid_from: at(NOON + 300_000),
                valid_until: at(NOON + 1_200_000),
                revert_after_secs: 300,
                battery_power: Some(Watts(-3_000)),
                pv_limit: None,
                import_limit: None,
                export_limit: Some(Watts(5_000)),
            }),
        ),
        (
            "telemetry-ack",
            Message::Ack(Ack::TelemetryCommitted(TelemetryCommitted {
                agent,
                site,
                first_seq: 1000,
                last_seq: 1001,
            })),
        ),
        (
            "setpoint-ack",
            Message::Ack(Ack::Setpoint(SetpointResult {
                command: CommandId::from_bytes(COMMAND),
                site,
                at: at(NOON + 300_120),
                outcome: SetpointOutcome::Clamped,
                battery_power: Some(Watts(-2_500)),
                pv_limit: None,
                import_limit: None,
                export_limit: Some(Watts(5_000)),
                reason: "battery_power clamped to max discharge 2500 W".into(),
            })),
        ),
        (
            "status",
            Message::Status(AgentStatus {
                agent,
                site,
                at: at(NOON),
                state: AgentState::Offline,
                agent_version: "0.1.0".into(),
            }),
        ),
    ]
}

fn dump(bytes: &[u8]) -> String {
    let mut out = String::from("```text\n");
    for chunk in bytes.chunks(32) {
        out.push_str(&hex::encode(chunk));
        out.push('\n');
    }
    out.push_str("```\n");
    out
}

#[test]
fn the_protocol_document_shows_real_encodings() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    let mut doc = std::fs::read_to_string(path).unwrap();
    let key = KeyPair::from_seed([0x42; 32]);
    let bless = std::env::var("GRIDMESH_BLESS").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for (name, message) in examples() {
        let bytes = encode(&message, &key).unwrap();
        assert_eq!(decode(&bytes).unwrap().message, message);
        let open = format!("<!-- example:{name} -->\n");
        let close = "<!-- /example -->";
        let start = doc.find(&open).unwrap_or_else(|| panic!("docs/protocol.md lacks {open}")) + open.len();
        let end = start + doc[start..].find(close).unwrap();
        let want = format!("{} bytes:\n\n{}", bytes.len(), dump(&bytes));
        if doc[start..end] != want {
            stale.push(name);
            doc.replace_range(start..end, &want);
        }
    }
    if bless {
        std::fs::write(path, doc).unwrap();
    } else {
        assert!(
            stale.is_empty(),
            "examples {stale:?} in docs/protocol.md are stale; rerun with GRIDMESH_BLESS=1"
        );
    }
}

#[test]
fn the_example_key_is_the_documented_one() {
    let key = KeyPair::from_seed([0x42; 32]);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    let doc = std::fs::read_to_string(path).unwrap();
    assert!(
        doc.contains(&key.public().to_string()),
        "docs/protocol.md should name the example public key {}",
        key.public()
    );
}
