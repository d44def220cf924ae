//! Decoding a model's registers (one read, so every scale factor comes with its values) and
//! building register images (for the device simulator and the tests).

use std::collections::BTreeMap;

use crate::SunSpecError;
use crate::model::{Kind, ModelDef, PointDef, model};

/// A decoded point.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number with its scale factor applied (or a float).
    Number(f64),
    /// An enumeration's raw value.
    Enum(u32),
    /// A bit field's raw value.
    Bits(u32),
    /// Text without its NUL padding.
    Text(String),
}

impl Value {
    /// The number, for numeric points.
    #[must_use]
    pub fn number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }
}

/// A decoded model: its fixed points and its repeating blocks. Points that are not
/// implemented (the SunSpec sentinels), or whose scale factor is not, are absent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Block {
    /// Model id.
    pub id: u16,
    /// Fixed points by name.
    pub values: BTreeMap<&'static str, Value>,
    /// Repeating blocks, in order.
    pub repeats: Vec<BTreeMap<&'static str, Value>>,
    /// The implemented scale factors, as read with the values (needed to write controls).
    pub scale_factors: BTreeMap<&'static str, i64>,
}

impl Block {
    /// A fixed point's number.
    #[must_use]
    pub fn number(&self, name: &str) -> Option<f64> {
        self.values.get(name).and_then(Value::number)
    }
}

fn raw(regs: &[u16], at: usize, size: usize) -> Option<u64> {
    let words = regs.get(at..at + size)?;
    Some(words.iter().fold(0_u64, |acc, w| (acc << 16) | u64::from(*w)))
}

/// A point's value before scaling: `None` for SunSpec's not-implemented sentinel.
fn read_point(p: &PointDef, regs: &[u16], base: usize) -> Option<RawValue> {
    let at = base + usize::from(p.offset);
    let size = usize::from(p.size);
    let r = raw(regs, at, size.min(4))?;
    match p.kind {
        Kind::U16 | Kind::Count => (r != 0xFFFF).then_some(RawValue::Int(r as i64)),
        Kind::I16 | Kind::ScaleFactor => (r != 0x8000).then_some(RawValue::Int(i64::from(r as u16 as i16))),
        Kind::U32 => (r != 0xFFFF_FFFF).then_some(RawValue::Int(r as i64)),
        Kind::I32 => (r != 0x8000_0000).then_some(RawValue::Int(i64::from(r as u32 as i32))),
        Kind::U64 => (r != u64::MAX).then(|| RawValue::Int(i64::try_from(r).unwrap_or(i64::MAX))),
        Kind::Acc32 | Kind::Acc64 => (r != 0).then(|| RawValue::Int(i64::try_from(r).unwrap_or(i64::MAX))),
        Kind::Enum16 => (r != 0xFFFF).then_some(RawValue::Enum(r as u32)),
        Kind::Bits16 => (r != 0xFFFF).then_some(RawValue::Bits(r as u32)),
        Kind::Bits32 => (r != 0xFFFF_FFFF).then_some(RawValue::Bits(r as u32)),
        Kind::F32 => {
            let f = f32::from_bits(r as u32);
            (r != 0x7FC0_0000 && f.is_finite()).then_some(RawValue::Float(f64::from(f)))
        }
        Kind::Text => {
            let bytes: Vec<u8> = regs.get(at..at + size)?.iter().flat_map(|w| w.to_be_bytes()).collect();
            let text: String = String::from_utf8_lossy(&bytes).trim_end_matches('\0').trim().to_owned();
            (!text.is_empty()).then_some(RawValue::Text(text))
        }
        Kind::Pad => None,
    }
}

enum RawValue {
    Int(i64),
    Float(f64),
    Enum(u32),
    Bits(u32),
    Text(String),
}

fn decode_points(
    points: &[PointDef],
    regs: &[u16],
    base: usize,
    sfs: &BTreeMap<&'static str, i64>,
) -> BTreeMap<&'static str, Value> {
    let mut out = BTreeMap::new();
    for p in points {
        if matches!(p.kind, Kind::ScaleFactor | Kind::Pad) {
            continue;
        }
        let Some(v) = read_point(p, regs, base) else { continue };
        let value = match v {
            RawValue::Int(i) => match p.sf {
                // A value whose scale factor is not implemented (or out of the specification's
                // -10..=10) cannot be read: absent, never a wrong magnitude.
                Some(sf) => match sfs.get(sf) {
                    Some(&e) if (-10..=10).contains(&e) => Value::Number(i as f64 * 10_f64.powi(e as i32)),
                    _ => continue,
                },
                None => Value::Number(i as f64),
            },
            RawValue::Float(f) => Value::Number(f),
            RawValue::Enum(e) => Value::Enum(e),
            RawValue::Bits(b) => Value::Bits(b),
            RawValue::Text(t) => Value::Text(t),
        };
        out.insert(p.name, value);
    }
    out
}

/// Decodes one model from its registers, starting at its ID register.
///
/// # Errors
/// An unknown model, or fewer registers than the model's length says.
pub fn decode(regs: &[u16]) -> Result<Block, SunSpecError> {
    let (&id, &len) = match regs {
        [id, len, ..] => (id, len),
        _ => {
            return Err(SunSpecError::Truncated {
                model: regs.first().copied().unwrap_or(0),
                have: regs.len(),
                need: 2,
            });
        }
    };
    let def = model(id).ok_or(SunSpecError::UnknownModel(id))?;
    let total = usize::from(len) + 2;
    if regs.len() < total {
        return Err(SunSpecError::Truncated { model: id, have: regs.len(), need: total });
    }
    if total < usize::from(def.fixed_len) {
        return Err(SunSpecError::TooShort { model: id, len, need: def.fixed_len - 2 });
    }
    let regs = &regs[..total];
    let sfs: BTreeMap<&'static str, i64> = def
        .points
        .iter()
        .filter(|p| p.kind == Kind::ScaleFactor)
        .filter_map(|p| match read_point(p, regs, 0)? {
            RawValue::Int(i) => Some((p.name, i)),
            _ => None,
        })
        .collect();
    // ID and L are the header, not values.
    let values = decode_points(&def.points[2.min(def.points.len())..], regs, 0, &sfs);
    let mut repeats = Vec::new();
    if let Some(r) = def.repeat {
        let mut at = usize::from(def.fixed_len);
        while at + usize::from(r.size) <= total {
            repeats.push(decode_points(r.points, regs, at, &sfs));
            at += usize::from(r.size);
        }
    }
    Ok(Block { id, values, repeats, scale_factors: sfs })
}

/// A model's registers under construction: every point starts as a not-implemented sentinel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    def: &'static ModelDef,
    regs: Vec<u16>,
}

fn sentinel(kind: Kind, size: usize) -> Vec<u16> {
    match kind {
        Kind::I16 | Kind::ScaleFactor => vec![0x8000],
        Kind::I32 => vec![0x8000, 0],
        Kind::F32 => vec![0x7FC0, 0],
        Kind::Acc32 | Kind::Acc64 | Kind::Text | Kind::Pad => vec![0; size],
        _ => vec![0xFFFF; size],
    }
}

impl Image {
    /// A model with `repeats` repeating blocks, all points not implemented.
    ///
    /// # Errors
    /// An unknown model.
    pub fn new(id: u16, repeats: usize) -> Result<Self, SunSpecError> {
        let def = model(id).ok_or(SunSpecError::UnknownModel(id))?;
        let repeat_len = def.repeat.map_or(0, |r| usize::from(r.size)) * repeats;
        let mut regs = vec![0_u16; usize::from(def.fixed_len) + repeat_len];
        let mut fill = |points: &[PointDef], base: usize| {
            for p in points {
                let at = base + usize::from(p.offset);
                regs[at..at + usize::from(p.size)].copy_from_slice(&sentinel(p.kind, usize::from(p.size)));
            }
        };
        fill(def.points, 0);
        if let Some(r) = def.repeat {
            for k in 0..repeats {
                fill(r.points, usize::from(def.fixed_len) + k * usize::from(r.size));
            }
        }
        regs[0] = id;
        regs[1] = u16::try_from(regs.len() - 2).map_err(|_| SunSpecError::TooShort {
            model: id,
            len: 0,
            need: 0,
        })?;
        Ok(Self { def, regs })
    }

    /// Sets a fixed point (or, with `Some(k)`, a point of repeating block `k`) to raw
    /// registers `words` (big-endian, as many as the point's size).
    ///
    /// # Errors
    /// An unknown point or a wrong number of words.
    pub fn set_raw(
        &mut self,
        name: &str,
        block: Option<usize>,
        words: &[u16],
    ) -> Result<&mut Self, SunSpecError> {
        let (p, base) = match block {
            None => (self.def.point(name), 0),
            Some(k) => (
                self.def.repeat.and_then(|r| r.points.iter().find(|p| p.name == name)),
                usize::from(self.def.fixed_len) + k * self.def.repeat.map_or(0, |r| usize::from(r.size)),
            ),
        };
        let p = p.ok_or_else(|| SunSpecError::UnknownPoint { model: self.def.id, point: name.to_owned() })?;
        if words.len() != usize::from(p.size) {
            return Err(SunSpecError::WrongSize { point: name.to_owned(), size: p.size, got: words.len() });
        }
        let at = base + usize::from(p.offset);
        let dest = self
            .regs
            .get_mut(at..at + words.len())
            .ok_or_else(|| SunSpecError::UnknownPoint { model: self.def.id, point: name.to_owned() })?;
        dest.copy_from_slice(words);
        Ok(self)
    }

    /// Sets an integer point (16, 32 or 64 bits by its size).
    ///
    /// # Errors
    /// As [`Image::set_raw`].
    pub fn set_int(
        &mut self,
        name: &str,
        block: Option<usize>,
        value: i64,
    ) -> Result<&mut Self, SunSpecError> {
        let size = match block {
            None => self.def.point(name).map(|p| p.size),
            Some(_) => self.def.repeat.and_then(|r| r.points.iter().find(|p| p.name == name)).map(|p| p.size),
        }
        .ok_or_else(|| SunSpecError::UnknownPoint { model: self.def.id, point: name.to_owned() })?;
        let words: Vec<u16> = (0..size).rev().map(|k| (value >> (16 * u32::from(k))) as u16).collect();
        self.set_raw(name, block, &words)
    }

    /// Sets a float32 point.
    ///
    /// # Errors
    /// As [`Image::set_raw`].
    pub fn set_f32(&mut self, name: &str, value: f32) -> Result<&mut Self, SunSpecError> {
        let b = value.to_bits();
        self.set_raw(name, None, &[(b >> 16) as u16, b as u16])
    }

    /// Sets a text point (NUL-padded).
    ///
    /// # Errors
    /// As [`Image::set_raw`]; text longer than the point.
    pub fn set_text(&mut self, name: &str, text: &str) -> Result<&mut Self, SunSpecError> {
        let p = self
            .def
            .point(name)
            .ok_or_else(|| SunSpecError::UnknownPoint { model: self.def.id, point: name.to_owned() })?;
        let mut bytes = text.as_bytes().to_vec();
        if bytes.len() > usize::from(p.size) * 2 {
            return Err(SunSpecError::WrongSize {
                point: name.to_owned(),
                size: p.size,
                got: bytes.len().div_ceil(2),
            });
        }
        bytes.resize(usize::from(p.size) * 2, 0);
        let words: Vec<u16> = bytes.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
        self.set_raw(name, None, &words)
    }

    /// The registers, from the ID register.
    #[must_use]
    pub fn registers(&self) -> &[u16] {
        &self.regs
    }
}
