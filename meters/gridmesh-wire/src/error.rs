use gridmesh_core::{ReadingError, SetpointError};
use thiserror::Error;

use crate::KeyError;

/// Why a message could not be decoded. Each variant names what was wrong so that a receiver
/// can log and count it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The message is larger than [`crate::MAX_MESSAGE_BYTES`].
    #[error("message of {len} bytes exceeds the maximum of {max} bytes")]
    Oversized {
        /// Bytes received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Shorter than an empty envelope.
    #[error("message of {len} bytes is shorter than the smallest possible message ({min} bytes)")]
    TooShort {
        /// Bytes received.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// The first two bytes are not `GM`.
    #[error("not a gridmesh message: starts with {0:02x?}, expected \"GM\"")]
    BadMagic([u8; 2]),
    /// A protocol version this build does not speak.
    #[error("unsupported protocol version {got} (this build speaks version {supported})")]
    UnsupportedVersion {
        /// Version in the message.
        got: u8,
        /// Version supported.
        supported: u8,
    },
    /// The message kind byte is not a known kind.
    #[error("unknown message kind {0} (expected 1 telemetry, 2 setpoint, 3 ack or 4 status)")]
    UnknownKind(u8),
    /// The body length in the header disagrees with the bytes received.
    #[error("header declares a body of {declared} bytes but {actual} bytes were received")]
    LengthMismatch {
        /// Length in the header.
        declared: usize,
        /// Length received.
        actual: usize,
    },
    /// The signer key or signature is invalid.
    #[error(transparent)]
    Signature(#[from] KeyError),
    /// The body ended while a field was being read.
    #[error("body ends while reading {field} at offset {offset}")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Offset into the body.
        offset: usize,
    },
    /// Bytes remain after the last field.
    #[error("{count} unexpected bytes after the end of the {kind} body")]
    TrailingBytes {
        /// Message kind.
        kind: &'static str,
        /// How many bytes remain.
        count: usize,
    },
    /// A presence bitmask has bits that name no field.
    #[error("{field} has unknown bits set: {bits:#06x}")]
    UnknownBits {
        /// The bitmask field.
        field: &'static str,
        /// The unknown bits.
        bits: u16,
    },
    /// A byte that selects a variant is not a known one.
    #[error("{field} has unknown value {value}")]
    UnknownVariant {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u8,
    },
    /// A millisecond timestamp outside 1970-01-01 to 2200-01-01.
    #[error("{field} = {millis} ms since 1970 is outside the supported range (1970-01-01 to 2200-01-01)")]
    BadTimestamp {
        /// The field.
        field: &'static str,
        /// Its value.
        millis: i64,
    },
    /// A batch without readings.
    #[error("telemetry batch holds no readings")]
    EmptyBatch,
    /// A batch with more readings than allowed.
    #[error("telemetry batch holds {count} readings, more than the maximum of {max}")]
    TooManyReadings {
        /// Readings declared.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The sequence range runs past 2^63 - 2, the largest sequence number storable.
    #[error("sequence range starting at {first} with {count} readings runs past 9223372036854775806")]
    SequenceOverflow {
        /// First sequence number.
        first: u64,
        /// Readings in the batch.
        count: usize,
    },
    /// A reading is not well formed.
    #[error("reading {index}: {source}")]
    BadReading {
        /// Position in the batch.
        index: usize,
        /// What is wrong with it.
        source: ReadingError,
    },
    /// A state of charge above 100 %.
    #[error("reading {index}: state of charge {bp} basis points is above 10000")]
    BadSoc {
        /// Position in the batch.
        index: usize,
        /// The value.
        bp: u16,
    },
    /// A setpoint that breaks the setpoint rules.
    #[error("invalid setpoint: {0}")]
    BadSetpoint(#[from] SetpointError),
    /// A telemetry acknowledgement whose range ends before it starts.
    #[error("acknowledged sequence range {first}..={last} ends before it starts")]
    InvertedRange {
        /// First sequence number.
        first: u64,
        /// Last sequence number.
        last: u64,
    },
    /// A text field that is not UTF-8.
    #[error("{field} is not valid UTF-8")]
    BadUtf8 {
        /// The field.
        field: &'static str,
    },
    /// A text field longer than allowed.
    #[error("{field} is {len} bytes, more than the maximum of {max}")]
    TextTooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}
