//! Physical and monetary units as integers.
//!
//! Totals that are settled or anchored must add up exactly, so every unit is an `i64` newtype.
//! Arithmetic that could overflow is offered in checked form; the plain operators are provided
//! only where overflow would be a programming error at any realistic scale (a town's energy over
//! a century stays far below `i64::MAX` watt-hours).

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Neg, Sub, SubAssign};

use serde::{Deserialize, Serialize};

macro_rules! integer_unit {
    ($(#[$doc:meta])* $name:ident, $symbol:literal) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// Zero of this unit.
            pub const ZERO: Self = Self(0);

            /// The raw integer value.
            #[must_use]
            pub const fn get(self) -> i64 {
                self.0
            }

            /// Sum that reports overflow instead of wrapping.
            #[must_use]
            pub fn checked_add(self, other: Self) -> Option<Self> {
                self.0.checked_add(other.0).map(Self)
            }

            /// Difference that reports overflow instead of wrapping.
            #[must_use]
            pub fn checked_sub(self, other: Self) -> Option<Self> {
                self.0.checked_sub(other.0).map(Self)
            }

            /// Absolute value (saturating at `i64::MAX`).
            #[must_use]
            pub fn abs(self) -> Self {
                Self(self.0.saturating_abs())
            }

            /// True when the value is below zero.
            #[must_use]
            pub const fn is_negative(self) -> bool {
                self.0 < 0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} {}", self.0, $symbol)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} {}", self.0, $symbol)
            }
        }

        impl Add for $name {
            type Output = Self;
            fn add(self, rhs: Self) -> Self {
                Self(self.0 + rhs.0)
            }
        }

        impl Sub for $name {
            type Output = Self;
            fn sub(self, rhs: Self) -> Self {
                Self(self.0 - rhs.0)
            }
        }

        impl AddAssign for $name {
            fn add_assign(&mut self, rhs: Self) {
                self.0 += rhs.0;
            }
        }

        impl SubAssign for $name {
            fn sub_assign(&mut self, rhs: Self) {
                self.0 -= rhs.0;
            }
        }

        impl Neg for $name {
            type Output = Self;
            fn neg(self) -> Self {
                Self(-self.0)
            }
        }

        impl Sum for $name {
            fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
                Self(iter.map(|v| v.0).sum())
            }
        }
    };
}

integer_unit!(
    /// Power in watts. At a site, positive means importing from the grid; for a battery,
    /// positive means charging (power flowing into the device).
    Watts,
    "W"
);
integer_unit!(
    /// Energy in watt-hours.
    WattHours,
    "Wh"
);
integer_unit!(
    /// Money in integer minor units of the market's currency (cents for EUR or USD).
    MinorUnits,
    "minor"
);

impl Watts {
    /// The energy of this power held constant for `seconds`, rounded to the nearest watt-hour
    /// (halves away from zero). Returns `None` on overflow.
    ///
    /// For one 15-minute period this is `W / 4`.
    #[must_use]
    pub fn energy_over_seconds(self, seconds: u32) -> Option<WattHours> {
        let watt_seconds = i128::from(self.0) * i128::from(seconds);
        let half = 1_800_i128;
        let rounded =
            if watt_seconds >= 0 { (watt_seconds + half) / 3_600 } else { (watt_seconds - half) / 3_600 };
        i64::try_from(rounded).ok().map(WattHours)
    }
}

impl WattHours {
    /// The constant power that delivers this energy in `seconds`, rounded to the nearest watt
    /// (halves away from zero). Returns `None` for a zero duration or on overflow.
    #[must_use]
    pub fn average_power_over_seconds(self, seconds: u32) -> Option<Watts> {
        if seconds == 0 {
            return None;
        }
        let watt_seconds = i128::from(self.0) * 3_600;
        let s = i128::from(seconds);
        let rounded = if watt_seconds >= 0 { (watt_seconds + s / 2) / s } else { (watt_seconds - s / 2) / s };
        i64::try_from(rounded).ok().map(Watts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_quarter_hour_of_power_is_a_quarter_of_its_watt_hours() {
        assert_eq!(Watts(4_000).energy_over_seconds(900), Some(WattHours(1_000)));
        assert_eq!(Watts(-4_000).energy_over_seconds(900), Some(WattHours(-1_000)));
        // 2 W for 15 minutes is 0.5 Wh: rounds away from zero.
        assert_eq!(Watts(2).energy_over_seconds(900), Some(WattHours(1)));
        assert_eq!(Watts(-2).energy_over_seconds(900), Some(WattHours(-1)));
        assert_eq!(Watts(1).energy_over_seconds(900), Some(WattHours(0)));
        assert_eq!(Watts(i64::MAX).energy_over_seconds(u32::MAX), None);
    }

    #[test]
    fn average_power_inverts_energy() {
        assert_eq!(WattHours(1_000).average_power_over_seconds(900), Some(Watts(4_000)));
        assert_eq!(WattHours(1).average_power_over_seconds(0), None);
    }

    #[test]
    fn units_print_with_their_symbol() {
        assert_eq!(Watts(-1500).to_string(), "-1500 W");
        assert_eq!(WattHours(12).to_string(), "12 Wh");
        assert_eq!(MinorUnits(99).to_string(), "99 minor");
    }

    proptest! {
        #[test]
        fn energy_rounding_is_symmetric(w in -10_000_000_i64..10_000_000, s in 0_u32..100_000) {
            let pos = Watts(w).energy_over_seconds(s).unwrap();
            let neg = Watts(-w).energy_over_seconds(s).unwrap();
            prop_assert_eq!(pos, -neg);
        }

        #[test]
        fn checked_sums_never_wrap(a: i64, b: i64) {
            match Watts(a).checked_add(Watts(b)) {
                Some(sum) => prop_assert_eq!(i128::from(sum.0), i128::from(a) + i128::from(b)),
                None => prop_assert!(i128::from(a) + i128::from(b) > i128::from(i64::MAX)
                    || i128::from(a) + i128::from(b) < i128::from(i64::MIN)),
            }
        }
    }
}
