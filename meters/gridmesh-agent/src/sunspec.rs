//! SunSpec devices over Modbus TCP or Modbus RTU (serial).
//!
//! A [`Link`] is one connection (a TCP socket or a serial line) that serialises its requests and
//! reconnects by itself after a failure; several [`Device`]s (unit ids) can share one, which is
//! how a serial bus works and what inverters that accept a single Modbus client need.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gridmesh_sunspec::{BASES, Block, Chain, ModelHeader, Step, SunSpecError, decode, model};
use serde::Deserialize;
use thiserror::Error;
use tokio_modbus::client::{Context, Reader, Writer, rtu, tcp};
use tokio_modbus::slave::{Slave, SlaveContext};

/// Registers per request: the Modbus limit for reading holding registers.
pub const MAX_READ: u16 = 125;

/// Parity of a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    /// No parity bit (the usual 8N1).
    #[default]
    None,
    /// Even parity (Modbus RTU's default in the standard, 8E1).
    Even,
    /// Odd parity.
    Odd,
}

/// A serial line for Modbus RTU.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialLine {
    /// The port, e.g. `/dev/ttyUSB0`.
    pub path: PathBuf,
    /// Baud rate.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Parity.
    #[serde(default)]
    pub parity: Parity,
    /// Data bits (7 or 8).
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    /// Stop bits (1 or 2).
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
}

fn default_baud() -> u32 {
    9_600
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}

impl SerialLine {
    /// A line at `baud`, 8N1.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>, baud: u32) -> Self {
        Self { path: path.into(), baud, parity: Parity::None, data_bits: 8, stop_bits: 1 }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// Which setting is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if !(300..=4_000_000).contains(&self.baud) {
            return Err(format!("baud must be 300 to 4000000, got {}", self.baud));
        }
        if !(7..=8).contains(&self.data_bits) {
            return Err(format!("data_bits must be 7 or 8, got {}", self.data_bits));
        }
        if !(1..=2).contains(&self.stop_bits) {
            return Err(format!("stop_bits must be 1 or 2, got {}", self.stop_bits));
        }
        Ok(())
    }
}

/// Where a device is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// Modbus TCP.
    Tcp(SocketAddr),
    /// Modbus RTU on a serial line.
    Serial(SerialLine),
}

impl From<SocketAddr> for Endpoint {
    fn from(a: SocketAddr) -> Self {
        Self::Tcp(a)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "{a}"),
            Self::Serial(s) => write!(f, "{}", s.path.display()),
        }
    }
}

/// What went wrong with a device.
#[derive(Debug, Error)]
pub enum DeviceError {
    /// The device did not answer (connection refused, timeout, broken connection).
    #[error("{device} unit {unit}: {reason}")]
    Io {
        /// The device.
        device: Endpoint,
        /// Modbus unit id.
        unit: u8,
        /// What happened.
        reason: String,
    },
    /// No `SunS` marker at any standard base address.
    #[error("no SunS marker at 40000, 0 or 50000 on {device} unit {unit}")]
    NotSunSpec {
        /// The device.
        device: Endpoint,
        /// Modbus unit id.
        unit: u8,
    },
    /// The device answered with a Modbus exception.
    #[error("{device} unit {unit}: register {register}: the device refused ({code})")]
    Refused {
        /// The device.
        device: Endpoint,
        /// Modbus unit id.
        unit: u8,
        /// The first register of the request.
        register: u16,
        /// The exception.
        code: String,
    },
    /// The registers do not make sense as SunSpec.
    #[error("{device} unit {unit}: {source}")]
    SunSpec {
        /// The device.
        device: Endpoint,
        /// Modbus unit id.
        unit: u8,
        /// The decoding error.
        source: SunSpecError,
    },
    /// A control the device does not have.
    #[error("{device} unit {unit}: model {model} has no writable point {point}")]
    NoControl {
        /// The device.
        device: Endpoint,
        /// Modbus unit id.
        unit: u8,
        /// The model.
        model: u16,
        /// The point.
        point: String,
    },
}

/// One connection to a device (a TCP socket or a serial line). Requests are serialised; after
/// a failure the next request reconnects.
pub struct Link {
    endpoint: Endpoint,
    timeout: Duration,
    ctx: tokio::sync::Mutex<Option<Context>>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl Link {
    /// A link to `endpoint` (connected on first use); every request gives up after `timeout`.
    #[must_use]
    pub fn new(endpoint: Endpoint, timeout: Duration) -> Arc<Self> {
        Arc::new(Self { endpoint, timeout, ctx: tokio::sync::Mutex::new(None) })
    }

    /// Where it goes.
    #[must_use]
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    async fn connect(&self) -> Result<Context, String> {
        match &self.endpoint {
            Endpoint::Tcp(addr) => tokio::time::timeout(self.timeout, tcp::connect(*addr))
                .await
                .map_err(|_| format!("no connection within {:?}", self.timeout))?
                .map_err(|e| e.to_string()),
            Endpoint::Serial(line) => {
                let path = line.path.to_string_lossy();
                let builder = tokio_serial::new(path.as_ref(), line.baud)
                    .parity(match line.parity {
                        Parity::None => tokio_serial::Parity::None,
                        Parity::Even => tokio_serial::Parity::Even,
                        Parity::Odd => tokio_serial::Parity::Odd,
                    })
                    .data_bits(if line.data_bits == 7 {
                        tokio_serial::DataBits::Seven
                    } else {
                        tokio_serial::DataBits::Eight
                    })
                    .stop_bits(if line.stop_bits == 2 {
                        tokio_serial::StopBits::Two
                    } else {
                        tokio_serial::StopBits::One
                    });
                let port = tokio_serial::SerialStream::open(&builder)
                    .map_err(|e| format!("cannot open the serial line: {e}"))?;
                Ok(rtu::attach(port))
            }
        }
    }

    /// The link's connection (made if there is none) addressed to `unit`, held until the guard
    /// drops: requests on one link never interleave.
    async fn session(&self, unit: u8) -> Result<tokio::sync::MutexGuard<'_, Option<Context>>, String> {
        let mut guard = self.ctx.lock().await;
        if guard.is_none() {
            *guard = Some(self.connect().await?);
        }
        if let Some(ctx) = guard.as_mut() {
            ctx.set_slave(Slave(unit));
        }
        Ok(guard)
    }

    /// Reads `count` holding registers of `unit` from `register`.
    ///
    /// # Errors
    /// No connection, no answer in time, a Modbus exception, or a short answer.
    pub async fn read(&self, unit: u8, register: u16, count: u16) -> Result<Vec<u16>, DeviceError> {
        let device = self.endpoint.clone();
        let io = |reason: String| DeviceError::Io { device: device.clone(), unit, reason };
        let mut guard = self.session(unit).await.map_err(io)?;
        let Some(ctx) = guard.as_mut() else { return Err(io("not connected".into())) };
        let answer =
            match tokio::time::timeout(self.timeout, ctx.read_holding_registers(register, count)).await {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => {
                    *guard = None;
                    return Err(io(e.to_string()));
                }
                Err(_) => {
                    // A late answer would pair with the next request: start over.
                    *guard = None;
                    return Err(io(format!("no answer within {:?}", self.timeout)));
                }
            };
        let words = answer.map_err(|code| DeviceError::Refused {
            device: device.clone(),
            unit,
            register,
            code: format!("{code:?}"),
        })?;
        if words.len() != usize::from(count) {
            return Err(io(format!("asked for {count} registers, got {}", words.len())));
        }
        Ok(words)
    }

    /// Writes registers of `unit` from `register`.
    ///
    /// # Errors
    /// No connection, no answer in time, or a Modbus exception.
    pub async fn write(&self, unit: u8, register: u16, words: &[u16]) -> Result<(), DeviceError> {
        let device = self.endpoint.clone();
        let io = |reason: String| DeviceError::Io { device: device.clone(), unit, reason };
        let mut guard = self.session(unit).await.map_err(io)?;
        let Some(ctx) = guard.as_mut() else { return Err(io("not connected".into())) };
        match tokio::time::timeout(self.timeout, ctx.write_multiple_registers(register, words)).await {
            Ok(Ok(answer)) => answer.map_err(|code| DeviceError::Refused {
                device: device.clone(),
                unit,
                register,
                code: format!("{code:?}"),
            }),
            Ok(Err(e)) => {
                *guard = None;
                Err(io(e.to_string()))
            }
            Err(_) => {
                *guard = None;
                Err(io(format!("no answer within {:?}", self.timeout)))
            }
        }
    }
}

/// One unit of a SunSpec device, on a [`Link`] it may share with other units.
pub struct Device {
    link: Arc<Link>,
    unit: u8,
    models: Vec<ModelHeader>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("endpoint", &self.link.endpoint)
            .field("unit", &self.unit)
            .field("models", &self.models)
            .finish()
    }
}

impl Device {
    /// Connects to `endpoint` (its own link), unit `unit`, and walks its model chain.
    ///
    /// # Errors
    /// No connection, no `SunS` marker, or a broken chain, each naming the device.
    pub async fn discover(
        endpoint: impl Into<Endpoint>,
        unit: u8,
        timeout: Duration,
    ) -> Result<Self, DeviceError> {
        Self::discover_on(Link::new(endpoint.into(), timeout), unit).await
    }

    /// Walks the model chain of unit `unit` on an existing link.
    ///
    /// # Errors
    /// As [`Device::discover`].
    pub async fn discover_on(link: Arc<Link>, unit: u8) -> Result<Self, DeviceError> {
        let mut dev = Self { link, unit, models: Vec::new() };
        for base in BASES {
            // A device without registers at a base answers with an exception: try the next.
            let marker = match dev.read(base, 2).await {
                Ok(m) => m,
                Err(e @ DeviceError::Io { .. }) => return Err(e),
                Err(_) => continue,
            };
            let Some(mut chain) = Chain::start(base, [marker[0], marker[1]]) else { continue };
            while let Step::ReadHeader(at) = chain.step().map_err(|e| dev.sunspec(e))? {
                let h = dev.read(at, 2).await?;
                chain.feed([h[0], h[1]]).map_err(|e| dev.sunspec(e))?;
            }
            dev.models = chain.models().to_vec();
            return Ok(dev);
        }
        Err(DeviceError::NotSunSpec { device: dev.link.endpoint.clone(), unit })
    }

    fn sunspec(&self, source: SunSpecError) -> DeviceError {
        DeviceError::SunSpec { device: self.link.endpoint.clone(), unit: self.unit, source }
    }

    async fn read(&self, register: u16, count: u16) -> Result<Vec<u16>, DeviceError> {
        self.link.read(self.unit, register, count).await
    }

    /// The unit id.
    #[must_use]
    pub fn unit(&self) -> u8 {
        self.unit
    }

    /// The link it talks over.
    #[must_use]
    pub fn link(&self) -> &Arc<Link> {
        &self.link
    }
    /// The models found, in chain order.
    #[must_use]
    pub fn models(&self) -> &[ModelHeader] {
        &self.models
    }

    /// Reads and decodes every known model (one request per model when it fits, so its scale
    /// factors come with its values); unknown models are skipped.
    ///
    /// # Errors
    /// A failed read, or registers that do not decode.
    pub async fn read_models(&mut self) -> Result<Vec<Block>, DeviceError> {
        let mut blocks = Vec::new();
        for h in self.models.clone() {
            if model(h.id).is_none() {
                continue;
            }
            let mut regs = Vec::with_capacity(usize::from(h.total()));
            let mut at = h.address;
            let mut left = h.total();
            while left > 0 {
                let n = left.min(MAX_READ);
                regs.extend(self.read(at, n).await?);
                at += n;
                left -= n;
            }
            blocks.push(decode(&regs).map_err(|e| self.sunspec(e))?);
        }
        Ok(blocks)
    }

    /// Writes a writable point of a model (raw registers).
    ///
    /// # Errors
    /// A model or point the device does not have, or a refused write.
    pub async fn write_point(
        &mut self,
        model_id: u16,
        point: &str,
        words: &[u16],
    ) -> Result<(), DeviceError> {
        let no = || DeviceError::NoControl {
            device: self.link.endpoint.clone(),
            unit: self.unit,
            model: model_id,
            point: point.to_owned(),
        };
        let header = self.models.iter().find(|h| h.id == model_id).copied().ok_or_else(no)?;
        let p = model(model_id).and_then(|m| m.point(point)).filter(|p| p.writable).ok_or_else(no)?;
        self.link.write(self.unit, header.address + p.offset, words).await
    }
}
