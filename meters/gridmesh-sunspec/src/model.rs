//! Model definitions: where each point sits in a model's registers and how to read it.

/// How a point is encoded (SunSpec point types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Unsigned 16-bit; not implemented: 0xFFFF.
    U16,
    /// Signed 16-bit; not implemented: 0x8000.
    I16,
    /// Unsigned 32-bit; not implemented: 0xFFFFFFFF.
    U32,
    /// Signed 32-bit; not implemented: 0x80000000.
    I32,
    /// Unsigned 64-bit; not implemented: 0xFFFFFFFFFFFFFFFF.
    U64,
    /// 32-bit accumulator; not implemented: 0.
    Acc32,
    /// 64-bit accumulator; not implemented: 0.
    Acc64,
    /// 16-bit enumeration; not implemented: 0xFFFF.
    Enum16,
    /// 16-bit bit field; not implemented: 0xFFFF.
    Bits16,
    /// 32-bit bit field; not implemented: 0xFFFFFFFF.
    Bits32,
    /// Scale factor, a signed power of ten; not implemented: 0x8000.
    ScaleFactor,
    /// Text, two bytes a register, NUL-padded; not implemented: all NUL.
    Text,
    /// Padding: never a value.
    Pad,
    /// IEEE 754 single; not implemented: 0x7FC00000 (NaN).
    F32,
    /// The number of repeating blocks that follow.
    Count,
}

/// One point of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointDef {
    /// The point's name (points of fixed sub-groups are `Group.Point`).
    pub name: &'static str,
    /// Registers from the model's ID register (or from the start of a repeating block).
    pub offset: u16,
    /// Its type.
    pub kind: Kind,
    /// Registers it takes.
    pub size: u16,
    /// The scale-factor point that applies, if any.
    pub sf: Option<&'static str>,
    /// Units, as the specification names them.
    pub units: Option<&'static str>,
    /// True for a control or setting that may be written.
    pub writable: bool,
}

/// A block of points repeated to fill the model (MPPT modules, for example).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepeatDef {
    /// The group's name.
    pub name: &'static str,
    /// Registers per block.
    pub size: u16,
    /// Its points, offsets from the block's start.
    pub points: &'static [PointDef],
}

/// A SunSpec model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelDef {
    /// Model id.
    pub id: u16,
    /// The specification's name ("inverter_three_phase").
    pub name: &'static str,
    /// Registers of the fixed part, ID and L included.
    pub fixed_len: u16,
    /// The fixed points.
    pub points: &'static [PointDef],
    /// The repeating block, if the model has one.
    pub repeat: Option<RepeatDef>,
}

impl ModelDef {
    /// A fixed point by name.
    #[must_use]
    pub fn point(&self, name: &str) -> Option<&'static PointDef> {
        self.points.iter().find(|p| p.name == name)
    }
}

/// The definition of model `id`, if gridmesh knows it.
#[must_use]
pub fn model(id: u16) -> Option<&'static ModelDef> {
    crate::models::MODELS.iter().find(|m| m.id == id)
}

/// Ids of every model gridmesh knows.
pub fn known_models() -> impl Iterator<Item = u16> {
    crate::models::MODELS.iter().map(|m| m.id)
}
