//! The protocol between the edge agent (`gridmesh-agent`) and the central service.
//!
//! * [`topics`]: the versioned MQTT topic layout per site.
//! * [`Message`]: telemetry batches, setpoint commands, acknowledgements and agent status.
//! * [`encode`] / [`decode`]: one canonical binary encoding, wrapped in a signed envelope
//!   (ed25519). The same message always encodes to the same bytes, decoding accepts only bytes
//!   that encoding could have produced, and any change to a signed message makes [`decode`] fail.
//!
//! The byte layout is specified in `docs/protocol.md` at the repository root, with an example of
//! every message.
#![warn(missing_docs)]

mod codec;
mod error;
mod keys;
mod message;
pub mod topics;

pub use error::WireError;
pub use keys::{KeyError, KeyPair, PublicKey};
pub use message::{
    AGENT_VERSION_MAX_BYTES, Ack, AgentState, AgentStatus, MAX_READINGS_PER_BATCH, MAX_SEQ, Message,
    MessageKind, REASON_MAX_BYTES, SetpointOutcome, SetpointResult, TelemetryBatch, TelemetryCommitted,
};

/// The protocol version this build writes and the only one it reads.
pub const PROTOCOL_VERSION: u8 = 1;

/// The first two bytes of every message.
pub const MAGIC: [u8; 2] = *b"GM";

/// Largest encoded message, envelope included, that [`decode`] accepts.
pub const MAX_MESSAGE_BYTES: usize = 512 * 1024;

/// Bytes before the body: magic, version, kind, signer public key, body length.
pub const HEADER_BYTES: usize = 2 + 1 + 1 + 32 + 4;

/// Length of the trailing ed25519 signature.
pub const SIGNATURE_BYTES: usize = 64;

/// A decoded message together with the key that signed it.
///
/// [`decode`] has checked that `signer` made the signature; whether `signer` is a key to trust
/// (enrolled for that agent, the server's key) is the receiver's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The public key whose signature was verified.
    pub signer: PublicKey,
    /// The message.
    pub message: Message,
}

/// Encodes `message` canonically and signs it with `key`.
///
/// Timestamps travel with millisecond precision; finer parts are dropped.
///
/// # Errors
/// When the message breaks a rule that [`decode`] enforces (see [`Message::validate`]): a
/// message that encodes always decodes.
pub fn encode(message: &Message, key: &KeyPair) -> Result<Vec<u8>, WireError> {
    message.validate()?;
    let body = message.encode_body();
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len() + SIGNATURE_BYTES);
    out.extend_from_slice(&MAGIC);
    out.push(PROTOCOL_VERSION);
    out.push(message.kind() as u8);
    out.extend_from_slice(key.public().as_bytes());
    // Bodies are bounded far below u32::MAX by MAX_READINGS_PER_BATCH and text limits.
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    let signature = key.sign(&out);
    out.extend_from_slice(&signature);
    Ok(out)
}

/// Checks the envelope and the signature, then decodes the body.
///
/// The signature is verified before the body is parsed, so nothing unauthenticated is
/// interpreted beyond the fixed header.
///
/// # Errors
/// A [`WireError`] saying what was wrong: too large, truncated, wrong magic, unknown version or
/// kind, bad signature, or a body that is not the canonical encoding of a valid message.
pub fn decode(bytes: &[u8]) -> Result<Signed, WireError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::Oversized { len: bytes.len(), max: MAX_MESSAGE_BYTES });
    }
    if bytes.len() < HEADER_BYTES + SIGNATURE_BYTES {
        return Err(WireError::TooShort { len: bytes.len(), min: HEADER_BYTES + SIGNATURE_BYTES });
    }
    let magic = [bytes[0], bytes[1]];
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    if bytes[2] != PROTOCOL_VERSION {
        return Err(WireError::UnsupportedVersion { got: bytes[2], supported: PROTOCOL_VERSION });
    }
    let kind = MessageKind::try_from(bytes[3])?;
    let mut signer = [0_u8; 32];
    signer.copy_from_slice(&bytes[4..36]);
    let signer = PublicKey::from_bytes(signer);
    let declared = u32::from_be_bytes([bytes[36], bytes[37], bytes[38], bytes[39]]) as usize;
    let actual = bytes.len() - HEADER_BYTES - SIGNATURE_BYTES;
    if declared != actual {
        return Err(WireError::LengthMismatch { declared, actual });
    }
    let (signed_part, signature) = bytes.split_at(HEADER_BYTES + declared);
    signer.verify(signed_part, signature)?;
    let message = Message::decode_body(kind, &signed_part[HEADER_BYTES..])?;
    Ok(Signed { signer, message })
}

/// Decodes a body of `kind` without any envelope or signature: for fuzzing the body parser,
/// which otherwise only sees signed input.
///
/// # Errors
/// As [`decode`] for the body part.
#[cfg(feature = "fuzzing")]
pub fn decode_body_unverified(kind: u8, body: &[u8]) -> Result<Message, WireError> {
    Message::decode_body(MessageKind::try_from(kind)?, body)
}
