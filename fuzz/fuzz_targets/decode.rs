//! Arbitrary bytes for the wire decoder. The envelope path must never panic; the body parser
//! (reached directly, since the fuzzer cannot forge signatures) must never panic and must accept
//! only canonical bodies: whatever it accepts re-encodes to exactly the same bytes and
//! re-validates.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gridmesh_wire::decode(data);
    if let Some((&kind, body)) = data.split_first()
        && let Ok(message) = gridmesh_wire::decode_body_unverified(kind % 5, body)
    {
        assert_eq!(message.encode_body(), body, "accepted a non-canonical body");
        assert!(message.validate().is_ok(), "accepted a body that does not validate");
    }
});
