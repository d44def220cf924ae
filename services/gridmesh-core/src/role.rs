//! Roles of the people and organisations that use gridmesh.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What a caller is allowed to do, by who they are. See `DESIGN.md` for each role's needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs an edge agent at home; sees and controls their own sites.
    Homeowner,
    /// Trades energy on the market for their own sites.
    Prosumer,
    /// A grid operator or utility: describes feeders, requests flexibility, sees aggregates.
    Utility,
    /// Audits periods, readings, trades and settlements.
    Regulator,
    /// Runs the gridmesh service itself.
    Operator,
}

impl Role {
    /// Every role, in a fixed order.
    pub const ALL: [Role; 5] =
        [Role::Homeowner, Role::Prosumer, Role::Utility, Role::Regulator, Role::Operator];

    /// The lowercase name used in the database, the API and the CLI.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Homeowner => "homeowner",
            Role::Prosumer => "prosumer",
            Role::Utility => "utility",
            Role::Regulator => "regulator",
            Role::Operator => "operator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown role {0:?} (expected one of homeowner, prosumer, utility, regulator, operator)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_names() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        let err = "admin".parse::<Role>().unwrap_err();
        assert!(err.to_string().contains("expected one of"));
    }
}
