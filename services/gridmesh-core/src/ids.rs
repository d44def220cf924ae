//! Typed identifiers.
//!
//! Every entity is named by a UUID, wrapped in its own type so that a site id cannot be passed
//! where an agent id is expected. They print and parse as the hyphenated UUID form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random (version 4) id.
            #[must_use]
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }

            /// The id's 16 bytes, in the order they are written on the wire.
            #[must_use]
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }

            /// Builds the id from its 16 bytes.
            #[must_use]
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(Uuid::from_bytes(bytes))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }
    };
}

id_type!(
    /// A household's grid connection point: one meter towards the grid.
    SiteId
);
id_type!(
    /// An edge agent installation (`gridmesh-agent`), which reports for one site.
    AgentId
);
id_type!(
    /// A node of the distribution grid tree: a transformer or a feeder.
    GridNodeId
);
id_type!(
    /// A physical device at a site: inverter, battery, meter.
    DeviceId
);
id_type!(
    /// A person or organisation with an account.
    UserId
);
id_type!(
    /// One setpoint command sent to a site, named so that its acknowledgement can refer to it.
    CommandId
);
id_type!(
    /// A bid or offer in the peer-to-peer market.
    OrderId
);
id_type!(
    /// A standing automatic trading strategy of a site.
    StrategyId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse_as_hyphenated_uuid() {
        let id = SiteId::new_random();
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(text.parse::<SiteId>().unwrap(), id);
        assert_eq!(SiteId::from_bytes(*id.as_bytes()), id);
        assert!("not-a-uuid".parse::<SiteId>().is_err());
    }

    #[test]
    fn ids_serialize_as_plain_strings() {
        let id = AgentId::from_bytes([7; 16]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"07070707-0707-0707-0707-070707070707\"");
        assert_eq!(serde_json::from_str::<AgentId>(&json).unwrap(), id);
    }
}
