//! What the forecasts need from the database: a site's 15-minute history and its latest
//! reading. The market's strategies and the optimizer forecast from the same inputs with the
//! same [`gridmesh_core::forecast::Baseline`].

use chrono::{DateTime, Utc};
use gridmesh_core::forecast::PastPeriod;
use gridmesh_core::{Period, WattHours};
use gridmesh_db::{DbError, Pool, StoredReading};

/// Days of history the baseline looks at (two of each weekday, for the weekly load profile).
pub const HISTORY_DAYS: i64 = 15;

/// A site's past periods (oldest first) over [`HISTORY_DAYS`] before `now`, with its own
/// consumption derived from its counters, and its latest reading. A site too new for a
/// finished period gets one period made from its latest powers (persistence).
///
/// # Errors
/// Database errors.
pub async fn site_history(
    pool: &Pool,
    site: &gridmesh_core::Site,
    now: DateTime<Utc>,
) -> Result<(Vec<PastPeriod>, Option<StoredReading>), DbError> {
    let mut history: Vec<PastPeriod> =
        gridmesh_db::site_energy(pool, site.id, now - chrono::Duration::days(HISTORY_DAYS), now)
            .await?
            .into_iter()
            .map(|e| PastPeriod {
                period: e.period,
                pv: e.pv,
                load: match (e.imported, e.exported) {
                    (Some(i), Some(x)) => Some(
                        i - x + e.pv.unwrap_or_default() + e.battery_out.unwrap_or_default()
                            - e.battery_in.unwrap_or_default(),
                    ),
                    _ => None,
                },
            })
            .collect();
    let latest = gridmesh_db::latest_reading(pool, site.id).await?;
    if history.is_empty()
        && let Some(r) = latest.as_ref().map(|l| &l.reading)
        && let (Some(grid), Some(pv)) = (r.grid_power, r.pv_power)
    {
        let load = grid.get() + pv.get() - r.battery_power.map_or(0, |b| b.get());
        history.push(PastPeriod {
            period: Period::containing(r.at),
            pv: Some(WattHours(pv.get() / 4)),
            load: Some(WattHours(load.max(0) / 4)),
        });
    }
    Ok((history, latest))
}
