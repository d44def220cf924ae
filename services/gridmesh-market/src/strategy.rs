//! Standing automatic trading strategies: for prosumers who will not click every 15 minutes.
//!
//! A strategy turns a site's outlook for one delivery period (forecast PV and load, battery
//! state, connection limits) into at most one order. The service places it before gate closure,
//! labelled as placed by the strategy.

use gridmesh_core::WattHours;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::Side;

/// Orders smaller than this are not worth placing.
pub const MIN_ORDER_WH: i64 = 10;

/// A standing instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Strategy {
    /// Sell the forecast PV surplus (PV beyond the site's own load) at `min_price` or more.
    SellSurplus {
        /// Lowest acceptable price, minor units per kWh.
        min_price: i64,
    },
    /// Buy energy to charge the battery towards `target_soc_pct` at `max_price` or less.
    BuyToCharge {
        /// Highest acceptable price, minor units per kWh.
        max_price: i64,
        /// State of charge to charge towards, percent.
        target_soc_pct: u8,
    },
    /// Buy the forecast shortfall (load beyond PV) from neighbours at `max_price` or less.
    BuyShortfall {
        /// Highest acceptable price, minor units per kWh.
        max_price: i64,
    },
    /// Sell stored energy above `reserve_soc_pct` (and any PV surplus) at `min_price` or more:
    /// evening sales from a battery charged by the sun.
    SellFromBattery {
        /// Lowest acceptable price, minor units per kWh.
        min_price: i64,
        /// State of charge kept for the home, percent.
        reserve_soc_pct: u8,
    },
}

/// Why a strategy was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StrategyError {
    /// A price outside `0..=max_price`.
    #[error("{field} must be 0 to {max} minor units per kWh, got {value}")]
    BadPrice {
        /// The field.
        field: &'static str,
        /// The value.
        value: i64,
        /// The market's highest price.
        max: i64,
    },
    /// A state of charge above 100 %.
    #[error("{0} must be 0 to 100, got {1}")]
    BadSoc(&'static str, u8),
}

impl Strategy {
    /// `"sell_surplus"`, `"buy_to_charge"`, `"buy_shortfall"` or `"sell_from_battery"`.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Strategy::SellSurplus { .. } => "sell_surplus",
            Strategy::BuyToCharge { .. } => "buy_to_charge",
            Strategy::BuyShortfall { .. } => "buy_shortfall",
            Strategy::SellFromBattery { .. } => "sell_from_battery",
        }
    }

    /// Checks prices against the market's maximum and the state of charge.
    ///
    /// # Errors
    /// The first field out of bounds.
    pub fn validate(&self, max_price: i64) -> Result<(), StrategyError> {
        let (field, value) = match *self {
            Strategy::SellSurplus { min_price } => ("min_price", min_price),
            Strategy::BuyToCharge { max_price: p, target_soc_pct } => {
                if target_soc_pct > 100 {
                    return Err(StrategyError::BadSoc("target_soc_pct", target_soc_pct));
                }
                ("max_price", p)
            }
            Strategy::BuyShortfall { max_price: p } => ("max_price", p),
            Strategy::SellFromBattery { min_price, reserve_soc_pct } => {
                if reserve_soc_pct > 100 {
                    return Err(StrategyError::BadSoc("reserve_soc_pct", reserve_soc_pct));
                }
                ("min_price", min_price)
            }
        };
        if (0..=max_price).contains(&value) {
            Ok(())
        } else {
            Err(StrategyError::BadPrice { field, value, max: max_price })
        }
    }

    /// The order this strategy places for a period with this outlook, if any.
    #[must_use]
    pub fn size(&self, o: &Outlook) -> Option<Intent> {
        let (side, price, energy) = match *self {
            Strategy::SellSurplus { min_price } => {
                (Side::Sell, min_price, (o.pv.get() - o.load.get()).min(o.export_limit.get()))
            }
            Strategy::BuyShortfall { max_price } => {
                (Side::Buy, max_price, (o.load.get() - o.pv.get()).min(o.import_limit.get()))
            }
            Strategy::BuyToCharge { max_price, target_soc_pct } => {
                let b = o.battery?;
                let target = b.capacity.get() * i64::from(target_soc_pct) / 100;
                let room = (target - b.stored.get()).min(b.max_charge.get());
                // What the site imports anyway for its own load also counts against the
                // connection.
                let own = (o.load.get() - o.pv.get()).max(0);
                (Side::Buy, max_price, room.min(o.import_limit.get() - own))
            }
            Strategy::SellFromBattery { min_price, reserve_soc_pct } => {
                let b = o.battery?;
                let reserve = b.capacity.get() * i64::from(reserve_soc_pct) / 100;
                let spare = (b.stored.get() - reserve).clamp(0, b.max_discharge.get());
                (Side::Sell, min_price, (spare + o.pv.get() - o.load.get()).min(o.export_limit.get()))
            }
        };
        (energy >= MIN_ORDER_WH).then_some(Intent { side, price, energy: WattHours(energy) })
    }
}

/// A site's battery as a strategy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatteryOutlook {
    /// Usable capacity.
    pub capacity: WattHours,
    /// Energy stored now.
    pub stored: WattHours,
    /// Most energy it can take in one period.
    pub max_charge: WattHours,
    /// Most energy it can give in one period.
    pub max_discharge: WattHours,
}

/// What a site expects in one delivery period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outlook {
    /// Forecast PV production.
    pub pv: WattHours,
    /// Forecast own consumption.
    pub load: WattHours,
    /// The battery, if any.
    pub battery: Option<BatteryOutlook>,
    /// Most energy the connection can import in the period.
    pub import_limit: WattHours,
    /// Most energy the connection can export in the period.
    pub export_limit: WattHours,
}

/// An order a strategy wants placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// Buy or sell.
    pub side: Side,
    /// Limit price, minor units per kWh.
    pub price: i64,
    /// Energy, Wh.
    pub energy: WattHours,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outlook(pv: i64, load: i64, battery: Option<(i64, i64)>) -> Outlook {
        Outlook {
            pv: WattHours(pv),
            load: WattHours(load),
            battery: battery.map(|(capacity, stored)| BatteryOutlook {
                capacity: WattHours(capacity),
                stored: WattHours(stored),
                max_charge: WattHours(750),
                max_discharge: WattHours(750),
            }),
            import_limit: WattHours(4_000),
            export_limit: WattHours(1_000),
        }
    }

    #[test]
    fn surplus_is_sold_within_the_export_limit() {
        let s = Strategy::SellSurplus { min_price: 12 };
        assert_eq!(
            s.size(&outlook(900, 300, None)),
            Some(Intent { side: Side::Sell, price: 12, energy: WattHours(600) })
        );
        assert_eq!(s.size(&outlook(5_000, 300, None)).map(|i| i.energy), Some(WattHours(1_000)));
        assert_eq!(s.size(&outlook(300, 900, None)), None);
        assert_eq!(s.size(&outlook(305, 300, None)), None, "5 Wh is below the minimum order");
    }

    #[test]
    fn charging_buys_the_room_left_up_to_the_charge_rate() {
        let s = Strategy::BuyToCharge { max_price: 20, target_soc_pct: 80 };
        // 10 kWh battery at 7.5 kWh wants 500 Wh more.
        assert_eq!(s.size(&outlook(0, 0, Some((10_000, 7_500)))).map(|i| i.energy), Some(WattHours(500)));
        // Far from the target: limited to 750 Wh a period.
        assert_eq!(s.size(&outlook(0, 0, Some((10_000, 1_000)))).map(|i| i.energy), Some(WattHours(750)));
        assert_eq!(s.size(&outlook(0, 0, Some((10_000, 9_000)))), None);
        assert_eq!(s.size(&outlook(0, 0, None)), None, "no battery, nothing to charge");
    }

    #[test]
    fn shortfall_is_bought() {
        let s = Strategy::BuyShortfall { max_price: 25 };
        assert_eq!(
            s.size(&outlook(100, 700, None)).map(|i| (i.side, i.energy)),
            Some((Side::Buy, WattHours(600)))
        );
    }

    #[test]
    fn a_battery_sells_what_it_holds_above_its_reserve() {
        let s = Strategy::SellFromBattery { min_price: 18, reserve_soc_pct: 30 };
        // 10 kWh at 4 kWh, 3 kWh reserved: 1 kWh spare, 750 Wh a period, less 200 Wh of load.
        assert_eq!(s.size(&outlook(0, 200, Some((10_000, 4_000)))).map(|i| i.energy), Some(WattHours(550)));
        assert_eq!(s.size(&outlook(0, 200, Some((10_000, 3_000)))), None);
    }

    #[test]
    fn out_of_bounds_strategies_are_refused() {
        assert!(Strategy::SellSurplus { min_price: -1 }.validate(100).is_err());
        assert!(Strategy::BuyShortfall { max_price: 101 }.validate(100).is_err());
        let e = Strategy::BuyToCharge { max_price: 10, target_soc_pct: 101 }.validate(100).unwrap_err();
        assert_eq!(e.to_string(), "target_soc_pct must be 0 to 100, got 101");
        let json = r#"{"kind":"sell_surplus","min_price":12}"#;
        assert_eq!(serde_json::from_str::<Strategy>(json).unwrap(), Strategy::SellSurplus { min_price: 12 });
        assert!(serde_json::from_str::<Strategy>(r#"{"kind":"sell_everything"}"#).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_json_is_parsed_or_refused_never_half_read(text in "\\PC{0,80}", kind in 0_usize..5, a in -50_i64..200, b in 0_u8..=255) {
            // Arbitrary text never panics the parser.
            let _ = serde_json::from_str::<Strategy>(&text);
            // Well-formed strategies round-trip exactly; out-of-range ones are refused by name.
            let kinds = ["sell_surplus", "buy_shortfall", "buy_to_charge", "sell_from_battery", "sell_everything"];
            let json = serde_json::json!({
                "kind": kinds[kind], "min_price": a, "max_price": a, "target_soc_pct": b, "reserve_soc_pct": b,
            });
            // Unknown fields for the kind are refused, so send only the kind's own.
            let own: serde_json::Value = match kinds[kind] {
                "sell_surplus" => serde_json::json!({"kind": "sell_surplus", "min_price": a}),
                "buy_shortfall" => serde_json::json!({"kind": "buy_shortfall", "max_price": a}),
                "buy_to_charge" => serde_json::json!({"kind": "buy_to_charge", "max_price": a, "target_soc_pct": b}),
                "sell_from_battery" => serde_json::json!({"kind": "sell_from_battery", "min_price": a, "reserve_soc_pct": b}),
                _ => json.clone(),
            };
            proptest::prop_assert!(serde_json::from_value::<Strategy>(json).is_err(), "extra fields must be refused");
            match serde_json::from_value::<Strategy>(own.clone()) {
                Ok(s) => {
                    proptest::prop_assert_eq!(serde_json::to_value(s).unwrap(), own);
                    let uses_soc = matches!(s, Strategy::BuyToCharge { .. } | Strategy::SellFromBattery { .. });
                    let valid = (0..=100).contains(&a) && (!uses_soc || b <= 100);
                    proptest::prop_assert_eq!(s.validate(100).is_ok(), valid);
                }
                Err(e) => proptest::prop_assert!(kinds[kind] == "sell_everything", "{e}"),
            }
        }
    }
}
