//! Plausibility flags on readings.
//!
//! Ingest does not drop a suspicious reading: it stores it with the reasons it is suspicious.
//! Settlement leaves periods with unresolved flags out until an operator has reviewed them.

use std::fmt;

use serde::{Serialize, Serializer};

/// A set of reasons a reading is not to be taken as truth. Stored as an integer bit set.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ReadingFlags(u32);

impl ReadingFlags {
    /// No flag: the reading is plausible.
    pub const NONE: Self = Self(0);
    /// Power beyond the site's rated capacity (with a margin).
    pub const OVER_RATED: Self = Self(1);
    /// An energy counter lower than in the agent's previous reading.
    pub const COUNTER_BACKWARDS: Self = Self(1 << 1);
    /// Measured further in the future than clocks drift.
    pub const CLOCK_FUTURE: Self = Self(1 << 2);
    /// Measured longer ago than an agent buffers readings.
    pub const CLOCK_PAST: Self = Self(1 << 3);
    /// A sequence number the agent had already delivered, with other content: a cloned device
    /// or one key used by two agents.
    pub const SEQUENCE_REUSED: Self = Self(1 << 4);
    /// PV production while the sun is below the horizon at the site.
    pub const PV_AT_NIGHT: Self = Self(1 << 5);
    /// PV production far from the neighbours' on the same feeder in the same period.
    pub const PV_OUTLIER: Self = Self(1 << 6);
    /// The meter exports more than the inverter and battery produce: meter and inverter
    /// disagree.
    pub const METER_INVERTER_MISMATCH: Self = Self(1 << 7);
    /// An energy counter grew more since the site's reading before than the site's ratings
    /// deliver in the time between them: a counter jump, which would otherwise be settled as
    /// metered energy.
    pub const COUNTER_JUMP: Self = Self(1 << 8);

    /// Every flag with its name, in bit order.
    pub const ALL: [(Self, &'static str); 9] = [
        (Self::OVER_RATED, "over_rated"),
        (Self::COUNTER_BACKWARDS, "counter_backwards"),
        (Self::CLOCK_FUTURE, "clock_future"),
        (Self::CLOCK_PAST, "clock_past"),
        (Self::SEQUENCE_REUSED, "sequence_reused"),
        (Self::PV_AT_NIGHT, "pv_at_night"),
        (Self::PV_OUTLIER, "pv_outlier"),
        (Self::METER_INVERTER_MISMATCH, "meter_inverter_mismatch"),
        (Self::COUNTER_JUMP, "counter_jump"),
    ];

    /// The flags from their stored bits; unknown bits are kept (a newer writer's flags).
    #[must_use]
    pub const fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    /// The stored bits.
    #[must_use]
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// True when no flag is set.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True when every flag of `other` is set here.
    #[must_use]
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Adds the flags of `other`.
    pub fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }

    /// The names of the flags set, in bit order.
    #[must_use]
    pub fn names(self) -> Vec<&'static str> {
        Self::ALL.iter().filter(|(f, _)| self.contains(*f)).map(|(_, n)| *n).collect()
    }
}

impl std::ops::BitOr for ReadingFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for ReadingFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for ReadingFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReadingFlags({})", self.names().join("|"))
    }
}

/// Serialised as the list of flag names, which is what API users read.
impl Serialize for ReadingFlags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_combine_and_name_themselves() {
        let mut f = ReadingFlags::NONE;
        assert!(f.is_empty());
        f.insert(ReadingFlags::PV_AT_NIGHT);
        f |= ReadingFlags::OVER_RATED;
        assert!(f.contains(ReadingFlags::PV_AT_NIGHT));
        assert!(!f.contains(ReadingFlags::CLOCK_PAST));
        assert_eq!(f.names(), vec!["over_rated", "pv_at_night"]);
        assert_eq!(serde_json::to_string(&f).unwrap(), r#"["over_rated","pv_at_night"]"#);
        assert_eq!(ReadingFlags::from_bits(f.bits()), f);
        assert_eq!(ReadingFlags::COUNTER_JUMP.names(), vec!["counter_jump"]);
    }
}
