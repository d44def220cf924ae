//! Big-endian primitives shared by every message body.

use chrono::{DateTime, Utc};
use gridmesh_core::Timestamp;

use crate::WireError;

/// Appends fields to a body.
#[derive(Default)]
pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn id(&mut self, bytes: &[u8; 16]) {
        self.0.extend_from_slice(bytes);
    }
    /// Milliseconds since the Unix epoch; sub-millisecond precision is dropped.
    pub(crate) fn time(&mut self, t: Timestamp) {
        self.i64(t.timestamp_millis());
    }
    /// A length-prefixed UTF-8 string; callers bound the length before writing.
    pub(crate) fn text(&mut self, s: &str) {
        let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
        self.u16(len);
        self.0.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
    }
}

/// Reads fields from a body, naming the field in every error.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let end = self.pos.checked_add(N).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(WireError::Truncated { field, offset: self.pos });
        };
        let mut out = [0_u8; N];
        out.copy_from_slice(&self.buf[self.pos..end]);
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.take::<1>(field)?[0])
    }
    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        self.take(field).map(u16::from_be_bytes)
    }
    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        self.take(field).map(u32::from_be_bytes)
    }
    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        self.take(field).map(u64::from_be_bytes)
    }
    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, WireError> {
        self.take(field).map(i64::from_be_bytes)
    }
    pub(crate) fn id(&mut self, field: &'static str) -> Result<[u8; 16], WireError> {
        self.take(field)
    }
    pub(crate) fn time(&mut self, field: &'static str) -> Result<Timestamp, WireError> {
        let millis = self.i64(field)?;
        check_time(field, millis)
    }
    pub(crate) fn text(&mut self, field: &'static str, max: usize) -> Result<String, WireError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(WireError::TextTooLong { field, len, max });
        }
        let end = self.pos + len;
        if end > self.buf.len() {
            return Err(WireError::Truncated { field, offset: self.pos });
        }
        let text = std::str::from_utf8(&self.buf[self.pos..end]).map_err(|_| WireError::BadUtf8 { field })?;
        self.pos = end;
        Ok(text.to_owned())
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails unless every byte was consumed: a canonical body has no slack.
    pub(crate) fn finish(self, kind: &'static str) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(WireError::TrailingBytes { kind, count }),
        }
    }
}

/// Times the protocol carries: 1970-01-01 up to (not including) 2200-01-01, in milliseconds.
/// Anything else is a broken clock or a crafted message, and refusing it here keeps period
/// arithmetic downstream far from the limits of the time types.
pub(crate) const TIME_RANGE_MS: std::ops::Range<i64> = 0..7_258_118_400_000;

pub(crate) fn check_time(field: &'static str, millis: i64) -> Result<Timestamp, WireError> {
    if !TIME_RANGE_MS.contains(&millis) {
        return Err(WireError::BadTimestamp { field, millis });
    }
    DateTime::<Utc>::from_timestamp_millis(millis).ok_or(WireError::BadTimestamp { field, millis })
}

/// Reads a presence bitmask and refuses bits beyond the `known` ones.
pub(crate) fn mask(
    r: &mut Reader<'_>,
    field: &'static str,
    known: u16,
    wide: bool,
) -> Result<u16, WireError> {
    let bits = if wide { r.u16(field)? } else { u16::from(r.u8(field)?) };
    if bits & !known != 0 {
        return Err(WireError::UnknownBits { field, bits: bits & !known });
    }
    Ok(bits)
}
