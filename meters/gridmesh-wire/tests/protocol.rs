//! Property tests of the wire protocol: round trips, canonical form, tamper evidence, and
//! decoding arbitrary bytes without panicking.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on a broken set-up; helpers outside #[test] fns unwrap too"
)]

use chrono::{DateTime, Utc};
use gridmesh_core::{AgentId, CommandId, Reading, Setpoint, SiteId, StateOfCharge, WattHours, Watts};
use gridmesh_wire::{
    Ack, AgentState, AgentStatus, KeyPair, MAX_MESSAGE_BYTES, Message, SetpointOutcome, SetpointResult,
    TelemetryBatch, TelemetryCommitted, WireError, decode, encode,
};
use proptest::prelude::*;

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    // 1970 to 2100, millisecond precision: what the wire carries.
    (0_i64..4_102_444_800_000).prop_map(|ms| DateTime::from_timestamp_millis(ms).unwrap())
}

fn watts() -> impl Strategy<Value = Option<Watts>> {
    proptest::option::of(any::<i64>().prop_map(Watts))
}

fn counter() -> impl Strategy<Value = Option<WattHours>> {
    proptest::option::of((0_i64..i64::MAX).prop_map(WattHours))
}

fn reading() -> impl Strategy<Value = Reading> {
    (
        time(),
        watts(),
        proptest::option::of((0_i64..i64::MAX).prop_map(Watts)),
        watts(),
        proptest::option::of((0_u16..=10_000).prop_map(|bp| StateOfCharge::from_basis_points(bp).unwrap())),
        (counter(), counter(), counter(), counter(), counter()),
    )
        .prop_map(|(at, grid_power, pv_power, battery_power, battery_soc, c)| Reading {
            at,
            grid_power,
            pv_power,
            battery_power,
            battery_soc,
            grid_import: c.0,
            grid_export: c.1,
            pv_energy: c.2,
            battery_charged: c.3,
            battery_discharged: c.4,
        })
}

fn id16() -> impl Strategy<Value = [u8; 16]> {
    any::<[u8; 16]>()
}

fn limit() -> impl Strategy<Value = Option<Watts>> {
    proptest::option::of((0_i64..10_000_000).prop_map(Watts))
}

fn setpoint() -> impl Strategy<Value = Setpoint> {
    (
        id16(),
        id16(),
        time(),
        1_i64..86_400_000,
        1_u32..=86_400,
        any::<Option<i64>>(),
        limit(),
        limit(),
        limit(),
    )
        .prop_map(|(c, s, from, len_ms, revert, battery, pv, imp, exp)| Setpoint {
            command: CommandId::from_bytes(c),
            site: SiteId::from_bytes(s),
            issued_at: from,
            valid_from: from,
            valid_until: from + chrono::Duration::milliseconds(len_ms),
            revert_after_secs: revert,
            // At least one target, so the setpoint is valid.
            battery_power: Some(Watts(battery.unwrap_or(0))),
            pv_limit: pv,
            import_limit: imp,
            export_limit: exp,
        })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (id16(), id16(), 0_u64..gridmesh_wire::MAX_SEQ - 100, proptest::collection::vec(reading(), 1..20))
            .prop_map(|(a, s, first_seq, readings)| Message::Telemetry(TelemetryBatch {
                agent: AgentId::from_bytes(a),
                site: SiteId::from_bytes(s),
                first_seq,
                readings,
            })),
        setpoint().prop_map(Message::Setpoint),
        (id16(), id16(), any::<u64>(), any::<u64>()).prop_map(|(a, s, x, y)| {
            Message::Ack(Ack::TelemetryCommitted(TelemetryCommitted {
                agent: AgentId::from_bytes(a),
                site: SiteId::from_bytes(s),
                first_seq: x.min(y),
                last_seq: x.max(y),
            }))
        }),
        (id16(), id16(), time(), 1_u8..=4, watts(), limit(), limit(), limit(), "\\PC{0,40}").prop_map(
            |(c, s, at, o, b, pv, imp, exp, reason)| Message::Ack(Ack::Setpoint(SetpointResult {
                command: CommandId::from_bytes(c),
                site: SiteId::from_bytes(s),
                at,
                outcome: [
                    SetpointOutcome::Applied,
                    SetpointOutcome::Clamped,
                    SetpointOutcome::Refused,
                    SetpointOutcome::Expired
                ][usize::from(o - 1)],
                battery_power: b,
                pv_limit: pv,
                import_limit: imp,
                export_limit: exp,
                reason,
            }))
        ),
        (id16(), id16(), time(), any::<bool>(), "[a-z0-9.+-]{0,30}").prop_map(
            |(a, s, at, online, agent_version)| Message::Status(AgentStatus {
                agent: AgentId::from_bytes(a),
                site: SiteId::from_bytes(s),
                at,
                state: if online { AgentState::Online } else { AgentState::Offline },
                agent_version,
            })
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn round_trip(message in message(), seed in any::<[u8; 32]>()) {
        let key = KeyPair::from_seed(seed);
        let bytes = encode(&message, &key).unwrap();
        let signed = decode(&bytes).unwrap();
        prop_assert_eq!(signed.signer, key.public());
        prop_assert_eq!(&signed.message, &message);
        // Canonical: re-encoding what was decoded gives the same bytes.
        prop_assert_eq!(encode(&signed.message, &key).unwrap(), bytes);
    }

    #[test]
    fn any_one_byte_change_fails_verification(
        message in message(),
        seed in any::<[u8; 32]>(),
        position in any::<prop::sample::Index>(),
        flip in 1_u8..=255,
    ) {
        let bytes = encode(&message, &KeyPair::from_seed(seed)).unwrap();
        let mut tampered = bytes.clone();
        let i = position.index(tampered.len());
        tampered[i] ^= flip;
        prop_assert!(decode(&tampered).is_err(), "byte {} changed and still decoded", i);
    }

    #[test]
    fn truncation_and_extension_fail(message in message(), cut in any::<prop::sample::Index>(), extra in 1_u8..=255) {
        let bytes = encode(&message, &KeyPair::from_seed([9; 32])).unwrap();
        let short = &bytes[..cut.index(bytes.len())];
        prop_assert!(decode(short).is_err());
        let mut long = bytes.clone();
        long.push(extra);
        prop_assert!(decode(&long).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn arbitrary_bodies_in_a_valid_envelope_never_panic(kind in 0_u8..6, body in proptest::collection::vec(any::<u8>(), 0..400)) {
        // Signed by a real key, so the body parser (not the signature check) sees the bytes.
        let key = KeyPair::from_seed([5; 32]);
        let mut bytes = b"GM\x01".to_vec();
        bytes.push(kind);
        bytes.extend_from_slice(key.public().as_bytes());
        bytes.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(&body);
        let sig = key.sign(&bytes);
        bytes.extend_from_slice(&sig);
        let _ = decode(&bytes);
    }
}

fn sample_status() -> Message {
    Message::Status(AgentStatus {
        agent: AgentId::from_bytes([1; 16]),
        site: SiteId::from_bytes([2; 16]),
        at: DateTime::from_timestamp_millis(1_764_000_000_000).unwrap(),
        state: AgentState::Online,
        agent_version: "0.1.0".into(),
    })
}

#[test]
fn unknown_versions_kinds_and_oversized_messages_get_their_own_errors() {
    let key = KeyPair::from_seed([1; 32]);
    let bytes = encode(&sample_status(), &key).unwrap();

    let mut v2 = bytes.clone();
    v2[2] = 2;
    let err = decode(&v2).unwrap_err();
    assert_eq!(err, WireError::UnsupportedVersion { got: 2, supported: 1 });
    assert_eq!(err.to_string(), "unsupported protocol version 2 (this build speaks version 1)");

    let mut kind = bytes.clone();
    kind[3] = 9;
    assert_eq!(decode(&kind).unwrap_err(), WireError::UnknownKind(9));

    let mut magic = bytes.clone();
    magic[0] = b'{';
    assert!(matches!(decode(&magic), Err(WireError::BadMagic(_))));

    let big = vec![0_u8; MAX_MESSAGE_BYTES + 1];
    assert!(matches!(decode(&big), Err(WireError::Oversized { .. })));

    assert!(matches!(decode(b"{\"json\":true}"), Err(WireError::TooShort { .. })));

    let mut sig = bytes.clone();
    let last = sig.len() - 1;
    sig[last] ^= 1;
    assert_eq!(decode(&sig).unwrap_err().to_string(), "signature does not verify against the signer's key");
}

#[test]
fn invalid_messages_are_refused_at_encoding_with_the_same_error() {
    let key = KeyPair::from_seed([1; 32]);
    let empty = Message::Telemetry(TelemetryBatch {
        agent: AgentId::from_bytes([1; 16]),
        site: SiteId::from_bytes([2; 16]),
        first_seq: 0,
        readings: vec![],
    });
    assert_eq!(encode(&empty, &key).unwrap_err(), WireError::EmptyBatch);
    let overflow = Message::Telemetry(TelemetryBatch {
        agent: AgentId::from_bytes([1; 16]),
        site: SiteId::from_bytes([2; 16]),
        first_seq: u64::MAX,
        readings: vec![Reading::default(); 2],
    });
    assert!(matches!(encode(&overflow, &key), Err(WireError::SequenceOverflow { .. })));
    let Message::Status(mut status) = sample_status() else { unreachable!() };
    status.agent_version = "x".repeat(65);
    let err = encode(&Message::Status(status), &key).unwrap_err();
    assert_eq!(err.to_string(), "status.agent_version is 65 bytes, more than the maximum of 64");
}

#[test]
fn sequence_numbers_and_times_stay_within_what_can_be_stored() {
    let key = KeyPair::from_seed([1; 32]);
    let batch = |first_seq, at| {
        Message::Telemetry(TelemetryBatch {
            agent: AgentId::from_bytes([1; 16]),
            site: SiteId::from_bytes([2; 16]),
            first_seq,
            readings: vec![Reading { at, ..Reading::default() }; 2],
        })
    };
    let now = DateTime::from_timestamp_millis(1_795_521_600_000).unwrap();
    assert!(encode(&batch(gridmesh_wire::MAX_SEQ - 1, now), &key).is_ok());
    assert!(matches!(
        encode(&batch(gridmesh_wire::MAX_SEQ, now), &key),
        Err(WireError::SequenceOverflow { .. })
    ));
    let year_2300 = DateTime::from_timestamp_millis(10_413_792_000_000).unwrap();
    let err = encode(&batch(0, year_2300), &key).unwrap_err();
    assert!(err.to_string().contains("outside the supported range"), "{err}");

    // The same limits hold when decoding a message signed by a sender that skipped them.
    let mut bytes = encode(&batch(0, now), &key).unwrap();
    let body = gridmesh_wire::HEADER_BYTES;
    bytes[body + 32..body + 40].copy_from_slice(&u64::MAX.to_be_bytes());
    let len = bytes.len() - gridmesh_wire::SIGNATURE_BYTES;
    let signature = key.sign(&bytes[..len]);
    bytes[len..].copy_from_slice(&signature);
    assert!(matches!(decode(&bytes), Err(WireError::SequenceOverflow { .. })));
}

#[test]
fn a_batch_knows_its_sequence_range() {
    let batch = TelemetryBatch {
        agent: AgentId::from_bytes([1; 16]),
        site: SiteId::from_bytes([2; 16]),
        first_seq: 41,
        readings: vec![Reading::default(); 3],
    };
    assert_eq!(batch.last_seq(), 43);
    assert_eq!(batch.sequenced().map(|(s, _)| s).collect::<Vec<_>>(), vec![41, 42, 43]);
}
