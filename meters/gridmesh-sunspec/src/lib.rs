//! SunSpec over Modbus, free of IO: the register maps of the models gridmesh reads and
//! controls, the walk along a device's model chain, decoding with scale factors (read in the
//! same request as their values) and not-implemented sentinels (absent values, never 65535,
//! -32768 or NaN), register images for the simulator, and the mapping of decoded models to a
//! site's normalized reading.
//!
//! Models: 1 (common); 101, 102, 103 and 111, 112, 113 (inverters, integer + scale factor and
//! float); 120 to 124 (nameplate, settings, status, controls, storage); 160 (MPPT); 201 to 204
//! and 211 to 214 (meters); 701, 702, 704 (DER); 802 (battery). Their layouts are generated from
//! the SunSpec model definitions by `tools/gen_models.py`.
#![warn(missing_docs)]

mod chain;
mod decode;
mod model;
mod models;
mod readout;

pub use chain::{BASES, Chain, END, MAX_MODELS, ModelHeader, SUNS, Step, walk_image};
pub use decode::{Block, Image, Value, decode};
pub use model::{Kind, ModelDef, PointDef, RepeatDef, known_models, model};
pub use readout::{Quirks, Readout, readout};

use thiserror::Error;

/// What is wrong with a device's registers.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SunSpecError {
    /// No `SunS` marker at the base address.
    #[error("no SunS marker at register {base}")]
    NoMarker {
        /// The base address tried.
        base: u16,
    },
    /// The model chain is broken.
    #[error("the SunSpec model chain is broken at register {at}: {reason}")]
    BrokenChain {
        /// Where.
        at: u32,
        /// Why.
        reason: String,
    },
    /// A model gridmesh has no map for.
    #[error("unknown SunSpec model {0}")]
    UnknownModel(u16),
    /// Fewer registers than the model's header says.
    #[error("model {model}: {have} registers read, its header says {need}")]
    Truncated {
        /// Model id.
        model: u16,
        /// Registers given.
        have: usize,
        /// Registers needed.
        need: usize,
    },
    /// A model shorter than its fixed part.
    #[error("model {model} has length {len}, shorter than its fixed part ({need})")]
    TooShort {
        /// Model id.
        model: u16,
        /// The length in its header.
        len: u16,
        /// The fixed part's length.
        need: u16,
    },
    /// A point the model does not have.
    #[error("model {model} has no point {point}")]
    UnknownPoint {
        /// Model id.
        model: u16,
        /// The name asked for.
        point: String,
    },
    /// A value of the wrong size for its point.
    #[error("point {point} takes {size} registers, got {got}")]
    WrongSize {
        /// The point.
        point: String,
        /// Its size.
        size: u16,
        /// Registers given.
        got: usize,
    },
}
