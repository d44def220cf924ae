//! SunSpec devices over Modbus TCP.

use std::net::SocketAddr;
use std::time::Duration;

use gridmesh_sunspec::{BASES, Block, Chain, ModelHeader, Step, SunSpecError, decode, model};
use thiserror::Error;
use tokio_modbus::client::{Context, Reader, Writer, tcp};
use tokio_modbus::slave::{Slave, SlaveContext};

/// Registers per request: the Modbus limit for reading holding registers.
pub const MAX_READ: u16 = 125;

/// What went wrong with a device.
#[derive(Debug, Error)]
pub enum DeviceError {
    /// The device did not answer (connection refused, timeout, broken connection).
    #[error("{addr} unit {unit}: {reason}")]
    Io {
        /// The device.
        addr: SocketAddr,
        /// Modbus unit id.
        unit: u8,
        /// What happened.
        reason: String,
    },
    /// No `SunS` marker at any standard base address.
    #[error("no SunS marker at 40000, 0 or 50000 on {addr} unit {unit}")]
    NotSunSpec {
        /// The device.
        addr: SocketAddr,
        /// Modbus unit id.
        unit: u8,
    },
    /// The device answered with a Modbus exception.
    #[error("{addr} unit {unit}: register {register}: the device refused ({code})")]
    Refused {
        /// The device.
        addr: SocketAddr,
        /// Modbus unit id.
        unit: u8,
        /// The first register of the request.
        register: u16,
        /// The exception.
        code: String,
    },
    /// The registers do not make sense as SunSpec.
    #[error("{addr} unit {unit}: {source}")]
    SunSpec {
        /// The device.
        addr: SocketAddr,
        /// Modbus unit id.
        unit: u8,
        /// The decoding error.
        source: SunSpecError,
    },
    /// A control the device does not have.
    #[error("{addr} unit {unit}: model {model} has no writable point {point}")]
    NoControl {
        /// The device.
        addr: SocketAddr,
        /// Modbus unit id.
        unit: u8,
        /// The model.
        model: u16,
        /// The point.
        point: String,
    },
}

/// A connection to one unit of a SunSpec device.
pub struct Device {
    ctx: Context,
    addr: SocketAddr,
    unit: u8,
    timeout: Duration,
    models: Vec<ModelHeader>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("addr", &self.addr)
            .field("unit", &self.unit)
            .field("models", &self.models)
            .finish()
    }
}

impl Device {
    /// Connects to `addr`, unit `unit`, and walks its model chain.
    ///
    /// # Errors
    /// No connection, no `SunS` marker, or a broken chain, each naming the device.
    pub async fn discover(addr: SocketAddr, unit: u8, timeout: Duration) -> Result<Self, DeviceError> {
        let io = |reason: String| DeviceError::Io { addr, unit, reason };
        let ctx = tokio::time::timeout(timeout, tcp::connect_slave(addr, Slave(unit)))
            .await
            .map_err(|_| io(format!("no connection within {timeout:?}")))?
            .map_err(|e| io(e.to_string()))?;
        let mut dev = Self { ctx, addr, unit, timeout, models: Vec::new() };
        for base in BASES {
            // A device without registers at a base answers with an exception: try the next.
            let Ok(marker) = dev.read(base, 2).await else { continue };
            let Some(mut chain) = Chain::start(base, [marker[0], marker[1]]) else { continue };
            while let Step::ReadHeader(at) = chain.step().map_err(|e| dev.sunspec(e))? {
                let h = dev.read(at, 2).await?;
                chain.feed([h[0], h[1]]).map_err(|e| dev.sunspec(e))?;
            }
            dev.models = chain.models().to_vec();
            return Ok(dev);
        }
        Err(DeviceError::NotSunSpec { addr, unit })
    }

    fn sunspec(&self, source: SunSpecError) -> DeviceError {
        DeviceError::SunSpec { addr: self.addr, unit: self.unit, source }
    }

    async fn read(&mut self, register: u16, count: u16) -> Result<Vec<u16>, DeviceError> {
        let (addr, unit) = (self.addr, self.unit);
        let answer = tokio::time::timeout(self.timeout, self.ctx.read_holding_registers(register, count))
            .await
            .map_err(|_| DeviceError::Io {
                addr,
                unit,
                reason: format!("no answer within {:?}", self.timeout),
            })?
            .map_err(|e| DeviceError::Io { addr, unit, reason: e.to_string() })?;
        let words = answer.map_err(|code| DeviceError::Refused {
            addr,
            unit,
            register,
            code: format!("{code:?}"),
        })?;
        if words.len() != usize::from(count) {
            return Err(DeviceError::Io {
                addr,
                unit,
                reason: format!("asked for {count} registers, got {}", words.len()),
            });
        }
        Ok(words)
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
            addr: self.addr,
            unit: self.unit,
            model: model_id,
            point: point.to_owned(),
        };
        let header = self.models.iter().find(|h| h.id == model_id).copied().ok_or_else(no)?;
        let p = model(model_id).and_then(|m| m.point(point)).filter(|p| p.writable).ok_or_else(no)?;
        let register = header.address + p.offset;
        let (addr, unit) = (self.addr, self.unit);
        tokio::time::timeout(self.timeout, self.ctx.write_multiple_registers(register, words))
            .await
            .map_err(|_| DeviceError::Io {
                addr,
                unit,
                reason: format!("no answer within {:?}", self.timeout),
            })?
            .map_err(|e| DeviceError::Io { addr, unit, reason: e.to_string() })?
            .map_err(|code| DeviceError::Refused { addr, unit, register, code: format!("{code:?}") })
    }

    /// Talks to another unit id on the same connection (some meters sit on unit 200).
    pub fn set_unit(&mut self, unit: u8) {
        self.unit = unit;
        self.ctx.set_slave(Slave(unit));
    }
}
