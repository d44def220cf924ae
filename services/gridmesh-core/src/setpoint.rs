//! Setpoints: what the service asks a site's devices to do, for a bounded time.

use chrono::Duration;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{CommandId, SiteId, Timestamp, Watts};

/// Longest validity window a setpoint may have. Longer plans are sent as a sequence of setpoints.
pub const MAX_VALIDITY_SECONDS: i64 = 24 * 3600;

/// Why a setpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SetpointError {
    /// The window is empty or inverted.
    #[error("validity window must end after it starts (valid_from {from}, valid_until {until})")]
    EmptyWindow {
        /// Start of the window.
        from: Timestamp,
        /// End of the window.
        until: Timestamp,
    },
    /// The window is longer than [`MAX_VALIDITY_SECONDS`].
    #[error("validity window of {0} s is longer than the maximum of 86400 s")]
    WindowTooLong(i64),
    /// The revert timeout is zero or longer than a day.
    #[error("revert_after_secs must be between 1 and 86400, got {0}")]
    BadRevertTimeout(u32),
    /// A limit that must be non-negative was negative.
    #[error("{field} must not be negative, got {value}")]
    NegativeLimit {
        /// The field.
        field: &'static str,
        /// Its value.
        value: Watts,
    },
    /// Nothing to do: every target is absent.
    #[error("setpoint sets no target (battery_power, pv_limit, import_limit or export_limit)")]
    NoTarget,
}

/// A command to one site, valid in `[valid_from, valid_until)`.
///
/// Devices fall back to their own autonomy when the window ends, and also when they hear
/// nothing for `revert_after_secs` (the agent programs this into SunSpec revert timers), so a
/// silent service never leaves a battery stuck at an old command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setpoint {
    /// Unique id, echoed in the acknowledgement.
    pub command: CommandId,
    /// The site the command is for; an agent refuses a command for another site.
    pub site: SiteId,
    /// When the service issued it.
    pub issued_at: Timestamp,
    /// Start of validity (inclusive).
    pub valid_from: Timestamp,
    /// End of validity (exclusive).
    pub valid_until: Timestamp,
    /// Seconds after which devices revert to autonomy unless the command is refreshed.
    pub revert_after_secs: u32,
    /// Battery power target, charging positive.
    pub battery_power: Option<Watts>,
    /// Cap on PV production (curtailment).
    pub pv_limit: Option<Watts>,
    /// Cap on import at the grid connection.
    pub import_limit: Option<Watts>,
    /// Cap on export at the grid connection (a positive number).
    pub export_limit: Option<Watts>,
}

/// A site's rated limits, to which the agent clamps every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetpointLimits {
    /// Highest battery charging power.
    pub max_charge: Watts,
    /// Highest battery discharging power (a positive number).
    pub max_discharge: Watts,
    /// Rated PV power.
    pub rated_pv: Watts,
    /// Grid connection import limit.
    pub import_limit: Watts,
    /// Grid connection export limit (a positive number).
    pub export_limit: Watts,
}

impl Setpoint {
    /// Checks the window, the revert timeout and the limits.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), SetpointError> {
        if self.valid_until <= self.valid_from {
            return Err(SetpointError::EmptyWindow { from: self.valid_from, until: self.valid_until });
        }
        let window = (self.valid_until - self.valid_from).num_seconds();
        if window > MAX_VALIDITY_SECONDS {
            return Err(SetpointError::WindowTooLong(window));
        }
        if !(1..=86_400).contains(&self.revert_after_secs) {
            return Err(SetpointError::BadRevertTimeout(self.revert_after_secs));
        }
        for (field, value) in [
            ("pv_limit", self.pv_limit),
            ("import_limit", self.import_limit),
            ("export_limit", self.export_limit),
        ] {
            if let Some(value) = value
                && value.is_negative()
            {
                return Err(SetpointError::NegativeLimit { field, value });
            }
        }
        if self.battery_power.is_none()
            && self.pv_limit.is_none()
            && self.import_limit.is_none()
            && self.export_limit.is_none()
        {
            return Err(SetpointError::NoTarget);
        }
        Ok(())
    }

    /// True when `t` is inside the validity window.
    #[must_use]
    pub fn is_active_at(&self, t: Timestamp) -> bool {
        self.valid_from <= t && t < self.valid_until
    }

    /// When devices revert if the command is not refreshed, counted from `applied_at`; never
    /// later than the end of the window.
    #[must_use]
    pub fn reverts_at(&self, applied_at: Timestamp) -> Timestamp {
        applied_at
            .checked_add_signed(Duration::seconds(i64::from(self.revert_after_secs)))
            .map_or(self.valid_until, |t| t.min(self.valid_until))
    }

    /// The command with every target clamped into the site's rated limits, and whether
    /// anything changed.
    #[must_use]
    pub fn clamp_to(&self, limits: &SetpointLimits) -> (Setpoint, bool) {
        let clamp = |v: Option<Watts>, lo: Watts, hi: Watts| v.map(|w| w.max(lo).min(hi.max(lo)));
        let clamped = Setpoint {
            battery_power: clamp(self.battery_power, -limits.max_discharge, limits.max_charge),
            pv_limit: clamp(self.pv_limit, Watts::ZERO, limits.rated_pv),
            import_limit: clamp(self.import_limit, Watts::ZERO, limits.import_limit),
            export_limit: clamp(self.export_limit, Watts::ZERO, limits.export_limit),
            ..*self
        };
        (clamped, clamped != *self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn setpoint() -> Setpoint {
        Setpoint {
            command: CommandId::from_bytes([1; 16]),
            site: SiteId::from_bytes([2; 16]),
            issued_at: t("2026-11-24T16:55:00Z"),
            valid_from: t("2026-11-24T17:00:00Z"),
            valid_until: t("2026-11-24T17:15:00Z"),
            revert_after_secs: 300,
            battery_power: Some(Watts(-3_000)),
            pv_limit: None,
            import_limit: None,
            export_limit: Some(Watts(4_000)),
        }
    }

    #[test]
    fn a_sound_setpoint_validates_and_knows_its_window() {
        let s = setpoint();
        s.validate().unwrap();
        assert!(s.is_active_at(t("2026-11-24T17:00:00Z")));
        assert!(!s.is_active_at(t("2026-11-24T17:15:00Z")));
        assert_eq!(s.reverts_at(t("2026-11-24T17:00:00Z")), t("2026-11-24T17:05:00Z"));
        assert_eq!(s.reverts_at(t("2026-11-24T17:14:00Z")), t("2026-11-24T17:15:00Z"));
    }

    #[test]
    fn bad_setpoints_are_refused() {
        let s = Setpoint { valid_until: t("2026-11-24T17:00:00Z"), ..setpoint() };
        assert!(matches!(s.validate(), Err(SetpointError::EmptyWindow { .. })));
        let s = Setpoint { valid_until: t("2026-11-26T17:00:00Z"), ..setpoint() };
        assert!(matches!(s.validate(), Err(SetpointError::WindowTooLong(_))));
        let s = Setpoint { revert_after_secs: 0, ..setpoint() };
        assert!(matches!(s.validate(), Err(SetpointError::BadRevertTimeout(0))));
        let s = Setpoint { export_limit: Some(Watts(-1)), ..setpoint() };
        assert!(matches!(s.validate(), Err(SetpointError::NegativeLimit { field: "export_limit", .. })));
        let s = Setpoint { battery_power: None, export_limit: None, ..setpoint() };
        assert_eq!(s.validate(), Err(SetpointError::NoTarget));
    }

    #[test]
    fn clamping_keeps_commands_within_ratings() {
        let limits = SetpointLimits {
            max_charge: Watts(5_000),
            max_discharge: Watts(2_500),
            rated_pv: Watts(8_000),
            import_limit: Watts(17_000),
            export_limit: Watts(3_000),
        };
        let (c, changed) = setpoint().clamp_to(&limits);
        assert!(changed);
        assert_eq!(c.battery_power, Some(Watts(-2_500)));
        assert_eq!(c.export_limit, Some(Watts(3_000)));
        let (same, changed) = c.clamp_to(&limits);
        assert!(!changed);
        assert_eq!(same, c);
    }
}
