//! Settlement of gridmesh, free of IO.
//!
//! * [`settle`]: one 15-minute period's money per site: market trades against metered delivery,
//!   the imbalance at the utility's prices, network fees, the fixed daily fee. Every amount is
//!   an integer in minor currency units, posted as a transfer between two ledger accounts, so
//!   each settlement balances to zero by construction.
//! * [`Line`]: a site's settlement line in a canonical binary encoding, the leaves of the
//!   period's [`merkle`] tree whose root is anchored on chain.
//! * [`rewards`]: token rewards for verified generation sold to peers, under a capped emission
//!   schedule, as a Merkle distribution that households claim on chain.
#![warn(missing_docs)]

pub mod merkle;
pub mod rewards;
mod settle;

pub use settle::{
    Account, LINE_LEN, LINE_VERSION, Line, LineError, LineStatus, Metering, PeriodInput, Posting,
    PostingKind, SettleError, Settlement, SiteInput, Tariffs, TradeInput, adjustments, amount, settle,
};
