//! The market's storage: orders, the open book, each period's clearing written once, trades,
//! standing strategies, and the delivery commitments that follow from the trades.
//!
//! Placing, cancelling and replacing an order take a shared advisory lock on the order's
//! period, and clearing takes it exclusively: an order either commits before the clearing reads
//! the book (and is cleared with it) or finds the period cleared and is refused. The clearing's
//! primary key on the period makes it happen exactly once, whatever number of replicas try.
//!
//! The clearing itself (and the hash of its result) is the caller's: [`clear_period`] hands the
//! locked book to a function it is given and stores what that returns.

mod book;
mod clearing;
mod commitments;
mod orders;
mod strategies;
mod trades;

pub use book::{DepthLevel, book_depth};
pub use clearing::{ClearingSummary, ZonePrice, clear_period, clearing_result, periods_to_clear};
pub use commitments::{Commitment, delivery_commitments};
pub use orders::{
    NewOrder, OrderFilter, OrderStatus, StoredOrder, cancel_order, get_order, list_orders, place_order,
};
pub use strategies::{
    StoredStrategy, create_strategy, disable_strategy, get_strategy, list_strategies, strategies_due,
};
pub use trades::{StoredTrade, TradeFilter, list_trades};

use chrono::{DateTime, Utc};
use gridmesh_core::Period;
use sqlx::{Postgres, Transaction};

use crate::DbError;

/// Class id of the market's advisory locks (the object id is the period index).
const MARKET_LOCK: i32 = 0x6d6b_7401;

fn period_of(t: DateTime<Utc>) -> Result<Period, DbError> {
    Period::starting_at(t).map_err(|e| DbError::Corrupt(format!("market period {t}: {e}")))
}

fn lock_key(period: Period) -> Result<i32, DbError> {
    i32::try_from(period.index())
        .map_err(|_| DbError::Invalid { field: "period", reason: format!("{period} is out of range") })
}

/// Takes the period's lock (shared for book changes, exclusive for clearing) and tells whether
/// the period is already cleared.
async fn lock_period(
    tx: &mut Transaction<'_, Postgres>,
    period: Period,
    exclusive: bool,
) -> Result<bool, DbError> {
    let sql = if exclusive {
        "SELECT pg_advisory_xact_lock($1, $2)"
    } else {
        "SELECT pg_advisory_xact_lock_shared($1, $2)"
    };
    sqlx::query(sql).bind(MARKET_LOCK).bind(lock_key(period)?).execute(&mut **tx).await?;
    let cleared: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM market_clearings WHERE period_start = $1)")
            .bind(period.start())
            .fetch_one(&mut **tx)
            .await?;
    Ok(cleared)
}

fn closed(period: Period) -> DbError {
    DbError::Invalid {
        field: "period",
        reason: format!("{period} is closed: its market has already cleared"),
    }
}
