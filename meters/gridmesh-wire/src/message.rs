//! The four messages and their canonical body encodings.

use gridmesh_core::{
    AgentId, CommandId, Reading, Setpoint, SetpointError, SiteId, StateOfCharge, Timestamp, WattHours, Watts,
};

use crate::WireError;
use crate::codec::{Reader, Writer, check_time, mask};

/// Largest sequence number: sequence numbers are stored as PostgreSQL `bigint`, and ranges of
/// them as `int8range` with an exclusive upper bound, which must fit too.
pub const MAX_SEQ: u64 = i64::MAX as u64 - 1;

/// Most readings one telemetry batch may carry.
pub const MAX_READINGS_PER_BATCH: usize = 4096;

/// Longest refusal reason in a setpoint acknowledgement, in bytes of UTF-8.
pub const REASON_MAX_BYTES: usize = 512;

/// Longest agent version string in a status message, in bytes of UTF-8.
pub const AGENT_VERSION_MAX_BYTES: usize = 64;

/// The kind byte of the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageKind {
    /// [`TelemetryBatch`], agent to central.
    Telemetry = 1,
    /// [`Setpoint`], central to agent.
    Setpoint = 2,
    /// [`Ack`], both directions.
    Ack = 3,
    /// [`AgentStatus`], agent to central (also the MQTT last will).
    Status = 4,
}

impl MessageKind {
    fn name(self) -> &'static str {
        match self {
            MessageKind::Telemetry => "telemetry",
            MessageKind::Setpoint => "setpoint",
            MessageKind::Ack => "ack",
            MessageKind::Status => "status",
        }
    }
}

impl TryFrom<u8> for MessageKind {
    type Error = WireError;

    fn try_from(v: u8) -> Result<Self, WireError> {
        match v {
            1 => Ok(MessageKind::Telemetry),
            2 => Ok(MessageKind::Setpoint),
            3 => Ok(MessageKind::Ack),
            4 => Ok(MessageKind::Status),
            other => Err(WireError::UnknownKind(other)),
        }
    }
}

/// Readings from one agent with consecutive sequence numbers: reading `i` has sequence number
/// `first_seq + i`. Sequence numbers are per agent, start at 0 and never repeat, so the
/// receiver can store idempotently and see gaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryBatch {
    /// The reporting agent.
    pub agent: AgentId,
    /// The site the readings are from.
    pub site: SiteId,
    /// Sequence number of the first reading.
    pub first_seq: u64,
    /// The readings, in sequence order (1 to [`MAX_READINGS_PER_BATCH`]).
    pub readings: Vec<Reading>,
}

impl TelemetryBatch {
    /// Sequence number of the last reading (equal to `first_seq` for a single reading).
    #[must_use]
    pub fn last_seq(&self) -> u64 {
        self.first_seq + (self.readings.len().max(1) as u64 - 1)
    }

    /// Each reading with its sequence number.
    pub fn sequenced(&self) -> impl Iterator<Item = (u64, &Reading)> {
        let first = self.first_seq;
        self.readings.iter().enumerate().map(move |(i, r)| (first.saturating_add(i as u64), r))
    }
}

/// The central service's confirmation that a range of readings is committed to storage; the
/// agent may then drop them from its disk buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelemetryCommitted {
    /// The agent whose readings were stored.
    pub agent: AgentId,
    /// Their site.
    pub site: SiteId,
    /// First committed sequence number.
    pub first_seq: u64,
    /// Last committed sequence number (inclusive).
    pub last_seq: u64,
}

/// What the agent did with a setpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SetpointOutcome {
    /// Applied as sent.
    Applied = 1,
    /// Applied after clamping to rated limits; the ack carries the values applied.
    Clamped = 2,
    /// Not applied; the ack carries the reason.
    Refused = 3,
    /// Arrived after its validity window ended.
    Expired = 4,
}

/// The agent's answer to a setpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetpointResult {
    /// The command answered.
    pub command: CommandId,
    /// The site.
    pub site: SiteId,
    /// When the agent acted.
    pub at: Timestamp,
    /// Applied, clamped, refused or expired.
    pub outcome: SetpointOutcome,
    /// Battery power applied, charging positive.
    pub battery_power: Option<Watts>,
    /// PV limit applied.
    pub pv_limit: Option<Watts>,
    /// Import limit applied.
    pub import_limit: Option<Watts>,
    /// Export limit applied.
    pub export_limit: Option<Watts>,
    /// Why, for a refusal or a clamp; empty otherwise. At most [`REASON_MAX_BYTES`].
    pub reason: String,
}

/// An acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// Central to agent: readings committed.
    TelemetryCommitted(TelemetryCommitted),
    /// Agent to central: what happened to a setpoint.
    Setpoint(SetpointResult),
}

/// Whether an agent is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AgentState {
    /// Connected and reporting.
    Online = 1,
    /// Gone: published by the agent on a clean shutdown, or by the broker as the last will.
    Offline = 2,
}

/// An agent's presence, published retained on the status topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentStatus {
    /// The agent.
    pub agent: AgentId,
    /// Its site.
    pub site: SiteId,
    /// When the status was made (for a last will: when the agent connected).
    pub at: Timestamp,
    /// Online or offline.
    pub state: AgentState,
    /// The agent's software version. At most [`AGENT_VERSION_MAX_BYTES`].
    pub agent_version: String,
}

/// Any message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Readings, agent to central.
    Telemetry(TelemetryBatch),
    /// A command, central to agent.
    Setpoint(Setpoint),
    /// An acknowledgement, either direction.
    Ack(Ack),
    /// Agent presence.
    Status(AgentStatus),
}

impl Message {
    /// The envelope kind of this message.
    #[must_use]
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Telemetry(_) => MessageKind::Telemetry,
            Message::Setpoint(_) => MessageKind::Setpoint,
            Message::Ack(_) => MessageKind::Ack,
            Message::Status(_) => MessageKind::Status,
        }
    }

    /// The site the message is about; receivers check it against the topic.
    #[must_use]
    pub fn site(&self) -> SiteId {
        match self {
            Message::Telemetry(b) => b.site,
            Message::Setpoint(s) => s.site,
            Message::Ack(Ack::TelemetryCommitted(c)) => c.site,
            Message::Ack(Ack::Setpoint(r)) => r.site,
            Message::Status(s) => s.site,
        }
    }

    /// Checks everything [`crate::decode`] checks in a body, so that a sender finds out before
    /// the receiver does.
    ///
    /// # Errors
    /// The same [`WireError`] that decoding the message would give.
    pub fn validate(&self) -> Result<(), WireError> {
        let text = |field, value: &str, max| {
            if value.len() > max {
                Err(WireError::TextTooLong { field, len: value.len(), max })
            } else {
                Ok(())
            }
        };
        match self {
            Message::Telemetry(b) => {
                let count = b.readings.len();
                if count == 0 {
                    return Err(WireError::EmptyBatch);
                }
                if count > MAX_READINGS_PER_BATCH {
                    return Err(WireError::TooManyReadings { count, max: MAX_READINGS_PER_BATCH });
                }
                if !seq_range_ok(b.first_seq, count) {
                    return Err(WireError::SequenceOverflow { first: b.first_seq, count });
                }
                for (index, r) in b.readings.iter().enumerate() {
                    check_time("reading.at", r.at.timestamp_millis())?;
                    r.validate().map_err(|source| WireError::BadReading { index, source })?;
                }
                Ok(())
            }
            Message::Setpoint(s) => {
                check_time("setpoint.issued_at", s.issued_at.timestamp_millis())?;
                check_time("setpoint.valid_from", s.valid_from.timestamp_millis())?;
                check_time("setpoint.valid_until", s.valid_until.timestamp_millis())?;
                Ok(s.validate()?)
            }
            Message::Ack(Ack::TelemetryCommitted(c)) if c.last_seq < c.first_seq => {
                Err(WireError::InvertedRange { first: c.first_seq, last: c.last_seq })
            }
            Message::Ack(Ack::TelemetryCommitted(_)) => Ok(()),
            Message::Ack(Ack::Setpoint(r)) => {
                check_time("ack.at", r.at.timestamp_millis())?;
                text("ack.reason", &r.reason, REASON_MAX_BYTES)
            }
            Message::Status(s) => {
                check_time("status.at", s.at.timestamp_millis())?;
                text("status.agent_version", &s.agent_version, AGENT_VERSION_MAX_BYTES)
            }
        }
    }

    /// The canonical body bytes of this message (what the envelope carries between header and
    /// signature).
    #[must_use]
    pub fn encode_body(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            Message::Telemetry(b) => {
                w.id(b.agent.as_bytes());
                w.id(b.site.as_bytes());
                w.u64(b.first_seq);
                w.u32(u32::try_from(b.readings.len()).unwrap_or(u32::MAX));
                for r in &b.readings {
                    write_reading(&mut w, r);
                }
            }
            Message::Setpoint(s) => {
                w.id(s.command.as_bytes());
                w.id(s.site.as_bytes());
                w.time(s.issued_at);
                w.time(s.valid_from);
                w.time(s.valid_until);
                w.u32(s.revert_after_secs);
                write_targets(&mut w, [s.battery_power, s.pv_limit, s.import_limit, s.export_limit]);
            }
            Message::Ack(Ack::TelemetryCommitted(c)) => {
                w.u8(1);
                w.id(c.agent.as_bytes());
                w.id(c.site.as_bytes());
                w.u64(c.first_seq);
                w.u64(c.last_seq);
            }
            Message::Ack(Ack::Setpoint(r)) => {
                w.u8(2);
                w.id(r.command.as_bytes());
                w.id(r.site.as_bytes());
                w.time(r.at);
                w.u8(r.outcome as u8);
                write_targets(&mut w, [r.battery_power, r.pv_limit, r.import_limit, r.export_limit]);
                w.text(&r.reason);
            }
            Message::Status(s) => {
                w.id(s.agent.as_bytes());
                w.id(s.site.as_bytes());
                w.time(s.at);
                w.u8(s.state as u8);
                w.text(&s.agent_version);
            }
        }
        w.0
    }

    pub(crate) fn decode_body(kind: MessageKind, body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let message = match kind {
            MessageKind::Telemetry => Message::Telemetry(read_batch(&mut r)?),
            MessageKind::Setpoint => Message::Setpoint(read_setpoint(&mut r)?),
            MessageKind::Ack => Message::Ack(read_ack(&mut r)?),
            MessageKind::Status => Message::Status(AgentStatus {
                agent: AgentId::from_bytes(r.id("status.agent")?),
                site: SiteId::from_bytes(r.id("status.site")?),
                at: r.time("status.at")?,
                state: match r.u8("status.state")? {
                    1 => AgentState::Online,
                    2 => AgentState::Offline,
                    value => {
                        return Err(WireError::UnknownVariant { field: "status.state", value });
                    }
                },
                agent_version: r.text("status.agent_version", AGENT_VERSION_MAX_BYTES)?,
            }),
        };
        r.finish(kind.name())?;
        Ok(message)
    }
}

const READING_FIELDS: u16 = 0x01ff;

fn write_reading(w: &mut Writer, r: &Reading) {
    w.time(r.at);
    let watts = [r.grid_power, r.pv_power, r.battery_power];
    let counters = [r.grid_import, r.grid_export, r.pv_energy, r.battery_charged, r.battery_discharged];
    let mut bits = 0_u16;
    for (i, v) in watts.iter().enumerate() {
        bits |= u16::from(v.is_some()) << i;
    }
    bits |= u16::from(r.battery_soc.is_some()) << 3;
    for (i, v) in counters.iter().enumerate() {
        bits |= u16::from(v.is_some()) << (4 + i);
    }
    w.u16(bits);
    watts.iter().flatten().for_each(|v| w.i64(v.get()));
    if let Some(soc) = r.battery_soc {
        w.u16(soc.basis_points());
    }
    counters.iter().flatten().for_each(|v| w.i64(v.get()));
}

fn read_reading(r: &mut Reader<'_>, index: usize) -> Result<Reading, WireError> {
    let at = r.time("reading.at")?;
    let bits = mask(r, "reading.fields", READING_FIELDS, true)?;
    let has = |bit: u16| bits & (1 << bit) != 0;
    let mut watts = |bit, field| -> Result<Option<Watts>, WireError> {
        if has(bit) { r.i64(field).map(|v| Some(Watts(v))) } else { Ok(None) }
    };
    let grid_power = watts(0, "reading.grid_power")?;
    let pv_power = watts(1, "reading.pv_power")?;
    let battery_power = watts(2, "reading.battery_power")?;
    let battery_soc = if has(3) {
        let bp = r.u16("reading.battery_soc")?;
        Some(StateOfCharge::from_basis_points(bp).ok_or(WireError::BadSoc { index, bp })?)
    } else {
        None
    };
    let mut wh = |bit, field| -> Result<Option<WattHours>, WireError> {
        if has(bit) { r.i64(field).map(|v| Some(WattHours(v))) } else { Ok(None) }
    };
    let reading = Reading {
        at,
        grid_power,
        pv_power,
        battery_power,
        battery_soc,
        grid_import: wh(4, "reading.grid_import")?,
        grid_export: wh(5, "reading.grid_export")?,
        pv_energy: wh(6, "reading.pv_energy")?,
        battery_charged: wh(7, "reading.battery_charged")?,
        battery_discharged: wh(8, "reading.battery_discharged")?,
    };
    reading.validate().map_err(|source| WireError::BadReading { index, source })?;
    Ok(reading)
}

fn read_batch(r: &mut Reader<'_>) -> Result<TelemetryBatch, WireError> {
    let agent = AgentId::from_bytes(r.id("telemetry.agent")?);
    let site = SiteId::from_bytes(r.id("telemetry.site")?);
    let first_seq = r.u64("telemetry.first_seq")?;
    let count = r.u32("telemetry.count")? as usize;
    if count == 0 {
        return Err(WireError::EmptyBatch);
    }
    if count > MAX_READINGS_PER_BATCH {
        return Err(WireError::TooManyReadings { count, max: MAX_READINGS_PER_BATCH });
    }
    if !seq_range_ok(first_seq, count) {
        return Err(WireError::SequenceOverflow { first: first_seq, count });
    }
    let readings = (0..count).map(|i| read_reading(r, i)).collect::<Result<Vec<_>, _>>()?;
    Ok(TelemetryBatch { agent, site, first_seq, readings })
}

/// True when `count` readings from `first` stay within [`MAX_SEQ`].
fn seq_range_ok(first: u64, count: usize) -> bool {
    first.checked_add(count as u64 - 1).is_some_and(|last| last <= MAX_SEQ)
}

fn write_targets(w: &mut Writer, targets: [Option<Watts>; 4]) {
    let mut bits = 0_u8;
    for (i, t) in targets.iter().enumerate() {
        bits |= u8::from(t.is_some()) << i;
    }
    w.u8(bits);
    targets.iter().flatten().for_each(|v| w.i64(v.get()));
}

fn read_targets(r: &mut Reader<'_>, field: &'static str) -> Result<[Option<Watts>; 4], WireError> {
    let bits = mask(r, field, 0x0f, false)?;
    let mut out = [None; 4];
    for (i, slot) in out.iter_mut().enumerate() {
        if bits & (1 << i) != 0 {
            *slot = Some(Watts(r.i64(field)?));
        }
    }
    Ok(out)
}

fn read_setpoint(r: &mut Reader<'_>) -> Result<Setpoint, WireError> {
    let command = CommandId::from_bytes(r.id("setpoint.command")?);
    let site = SiteId::from_bytes(r.id("setpoint.site")?);
    let issued_at = r.time("setpoint.issued_at")?;
    let valid_from = r.time("setpoint.valid_from")?;
    let valid_until = r.time("setpoint.valid_until")?;
    let revert_after_secs = r.u32("setpoint.revert_after_secs")?;
    let [battery_power, pv_limit, import_limit, export_limit] = read_targets(r, "setpoint.targets")?;
    let s = Setpoint {
        command,
        site,
        issued_at,
        valid_from,
        valid_until,
        revert_after_secs,
        battery_power,
        pv_limit,
        import_limit,
        export_limit,
    };
    s.validate().map_err(|e: SetpointError| WireError::BadSetpoint(e))?;
    Ok(s)
}

fn read_ack(r: &mut Reader<'_>) -> Result<Ack, WireError> {
    match r.u8("ack.type")? {
        1 => {
            let c = TelemetryCommitted {
                agent: AgentId::from_bytes(r.id("ack.agent")?),
                site: SiteId::from_bytes(r.id("ack.site")?),
                first_seq: r.u64("ack.first_seq")?,
                last_seq: r.u64("ack.last_seq")?,
            };
            if c.last_seq < c.first_seq {
                return Err(WireError::InvertedRange { first: c.first_seq, last: c.last_seq });
            }
            Ok(Ack::TelemetryCommitted(c))
        }
        2 => {
            let command = CommandId::from_bytes(r.id("ack.command")?);
            let site = SiteId::from_bytes(r.id("ack.site")?);
            let at = r.time("ack.at")?;
            let outcome = match r.u8("ack.outcome")? {
                1 => SetpointOutcome::Applied,
                2 => SetpointOutcome::Clamped,
                3 => SetpointOutcome::Refused,
                4 => SetpointOutcome::Expired,
                value => {
                    return Err(WireError::UnknownVariant { field: "ack.outcome", value });
                }
            };
            let [battery_power, pv_limit, import_limit, export_limit] = read_targets(r, "ack.applied")?;
            let reason = r.text("ack.reason", REASON_MAX_BYTES)?;
            Ok(Ack::Setpoint(SetpointResult {
                command,
                site,
                at,
                outcome,
                battery_power,
                pv_limit,
                import_limit,
                export_limit,
                reason,
            }))
        }
        value => Err(WireError::UnknownVariant { field: "ack.type", value }),
    }
}
