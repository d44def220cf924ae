//! Finding the models of a device: the `SunS` marker at one of the standard base addresses,
//! then the chain of (id, length) headers up to the end marker. IO-free: the caller reads the
//! registers this asks for and feeds them back.

use crate::SunSpecError;

/// `SunS` as two registers.
pub const SUNS: [u16; 2] = [0x5375, 0x6E53];
/// Where devices put the marker, in the order to try.
pub const BASES: [u16; 3] = [40_000, 0, 50_000];
/// The id of the end marker.
pub const END: u16 = 0xFFFF;
/// More models than this is a broken chain.
pub const MAX_MODELS: usize = 64;

/// One model found in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ModelHeader {
    /// Model id.
    pub id: u16,
    /// Address of its ID register.
    pub address: u16,
    /// Its length (registers after ID and L).
    pub len: u16,
}

impl ModelHeader {
    /// Registers to read for the whole model (ID and L included).
    #[must_use]
    pub fn total(&self) -> u16 {
        self.len + 2
    }
}

/// A walk along the model chain of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    next: u32,
    models: Vec<ModelHeader>,
    done: bool,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Read two registers (a model header) at this address and [`Chain::feed`] them.
    ReadHeader(u16),
    /// The chain is complete.
    Done,
}

impl Chain {
    /// Starts at a base address whose two registers were read as `marker`; `None` when they are
    /// not `SunS`.
    #[must_use]
    pub fn start(base: u16, marker: [u16; 2]) -> Option<Self> {
        (marker == SUNS).then(|| Self { next: u32::from(base) + 2, models: Vec::new(), done: false })
    }

    /// The next read.
    ///
    /// # Errors
    /// The chain runs past the end of the address space.
    pub fn step(&self) -> Result<Step, SunSpecError> {
        if self.done {
            return Ok(Step::Done);
        }
        u16::try_from(self.next + 1).map(|_| Step::ReadHeader(self.next as u16)).map_err(|_| {
            SunSpecError::BrokenChain {
                at: self.next,
                reason: "runs past register 65535 without an end marker".into(),
            }
        })
    }

    /// Takes the header read at the address of the last [`Step::ReadHeader`].
    ///
    /// # Errors
    /// More than [`MAX_MODELS`] models, or a length that runs past the address space.
    pub fn feed(&mut self, header: [u16; 2]) -> Result<Step, SunSpecError> {
        let [id, len] = header;
        if id == END {
            self.done = true;
            return Ok(Step::Done);
        }
        if self.models.len() >= MAX_MODELS {
            return Err(SunSpecError::BrokenChain {
                at: self.next,
                reason: format!("more than {MAX_MODELS} models"),
            });
        }
        let address = u16::try_from(self.next).map_err(|_| SunSpecError::BrokenChain {
            at: self.next,
            reason: "address out of range".into(),
        })?;
        self.models.push(ModelHeader { id, address, len });
        self.next += u32::from(len) + 2;
        self.step()
    }

    /// The models found so far.
    #[must_use]
    pub fn models(&self) -> &[ModelHeader] {
        &self.models
    }
}

/// Walks a chain in a register image that holds the whole map from `base` on (the simulator,
/// tests).
///
/// # Errors
/// No marker at `base`, a chain that leaves the image, or a broken chain.
pub fn walk_image(image: &[u16], base: u16) -> Result<Vec<ModelHeader>, SunSpecError> {
    let at = |addr: u16| -> Result<[u16; 2], SunSpecError> {
        let i = usize::from(addr.wrapping_sub(base));
        match image.get(i..i + 2) {
            Some(&[a, b]) => Ok([a, b]),
            _ => Err(SunSpecError::BrokenChain {
                at: u32::from(addr),
                reason: "leaves the register map".into(),
            }),
        }
    };
    let mut chain = Chain::start(base, at(base)?).ok_or(SunSpecError::NoMarker { base })?;
    while let Step::ReadHeader(addr) = chain.step()? {
        chain.feed(at(addr)?)?;
    }
    Ok(chain.models)
}
