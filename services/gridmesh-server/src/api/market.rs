//! `/v1/market`: orders, order-book depth, clearing results, trades and standing strategies.
//!
//! Homeowners and prosumers trade for their own sites, operators for any site. Book depth and
//! clearing results are aggregates that every caller may read; trades name sites, so they are
//! shown to the sites' owners, operators and regulators.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gridmesh_core::{GridNodeId, OrderId, Period, Role, Site, SiteId, StrategyId, UserId, WattHours};
use gridmesh_db::{
    ClearingSummary, Commitment, DepthLevel, NewOrder, OrderFilter, OrderStatus, StoredOrder, StoredStrategy,
    StoredTrade, TradeFilter, ZonePrice,
};
use gridmesh_market::Side;
use gridmesh_market::strategy::Strategy;
use serde::{Deserialize, Serialize};

use super::Page;
use crate::auth::{Authenticated, SEE_ALL};
use crate::error::{Json, Path, Query};
use crate::{ApiError, AppState};

/// Roles that place orders and set strategies.
const TRADERS: &[Role] = &[Role::Homeowner, Role::Prosumer, Role::Operator];
/// Roles that read lists of orders, trades and strategies (their own, or all for [`SEE_ALL`]).
const READERS: &[Role] = &[Role::Homeowner, Role::Prosumer, Role::Operator, Role::Regulator];

/// The site named in a request and its feeder (its market zone), if it exists, is assigned,
/// and the caller may trade for it.
async fn tradable_site(
    state: &AppState,
    caller: &Authenticated,
    id: SiteId,
) -> Result<(Site, GridNodeId), ApiError> {
    caller.require(TRADERS)?;
    let site = gridmesh_db::get_site(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::invalid("site", format!("no site {id}")))?;
    if !caller.can_act_for(&site) {
        return Err(ApiError::Denied(format!(
            "site {id} is not yours; you can trade only for your own sites"
        )));
    }
    super::sites::require_active(state, id).await?;
    let zone = site.feeder.ok_or_else(|| {
        ApiError::Conflict(format!(
            "the home {id} is pending: it trades once a utility or an operator has assigned it to a feeder"
        ))
    })?;
    Ok((site, zone))
}

/// Whose orders and trades the caller sees: `None` for everyone's.
fn visible_owner(caller: &Authenticated) -> Result<Option<UserId>, ApiError> {
    caller.require(READERS)?;
    Ok(caller.visible_owner())
}

fn parse_period(field: &str, t: DateTime<Utc>) -> Result<Period, ApiError> {
    Period::starting_at(t).map_err(|e| ApiError::invalid(field, e.to_string()))
}

/// An order as the API shows it.
#[derive(Debug, Serialize)]
pub struct OrderOut {
    id: OrderId,
    site: SiteId,
    zone: GridNodeId,
    period: Period,
    side: Side,
    price_per_kwh: i64,
    energy_wh: i64,
    /// `open`, `cancelled`, `replaced` or `cleared`.
    status: &'static str,
    filled_wh: Option<i64>,
    fill_price: Option<i64>,
    placed_by: UserId,
    /// True when a standing strategy placed the order on the owner's behalf.
    automatic: bool,
    strategy: Option<StrategyId>,
    replaces: Option<OrderId>,
    submitted_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
}

impl From<StoredOrder> for OrderOut {
    fn from(o: StoredOrder) -> Self {
        Self {
            id: o.id,
            site: o.site,
            zone: o.zone,
            period: o.period,
            side: o.side,
            price_per_kwh: o.price,
            energy_wh: o.energy.get(),
            status: o.status.as_str(),
            filled_wh: o.filled.map(WattHours::get),
            fill_price: o.fill_price,
            placed_by: o.placed_by,
            automatic: o.strategy.is_some(),
            strategy: o.strategy,
            replaces: o.replaces,
            submitted_at: o.submitted_at,
            closed_at: o.closed_at,
        }
    }
}

/// Body of `POST /v1/market/orders`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    site: SiteId,
    /// Start of the delivery period (RFC 3339, on a quarter hour).
    period: DateTime<Utc>,
    side: Side,
    price_per_kwh: i64,
    energy_wh: i64,
}

/// Body of `PUT /v1/market/orders/{id}`: the new price and energy (time priority restarts).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceOrder {
    price_per_kwh: i64,
    energy_wh: i64,
}

/// Checks an order's period, price and energy against the rules and the site's connection.
fn check_order(
    state: &AppState,
    site: &Site,
    period: Period,
    side: Side,
    price: i64,
    energy: i64,
) -> Result<(), ApiError> {
    let m = &state.market;
    let now = Utc::now();
    let gate = m.gate_of(period);
    if now >= gate {
        return Err(ApiError::invalid("period", format!("{period} is closed: its gate closed at {gate}")));
    }
    if period.start() > now + m.horizon {
        return Err(ApiError::invalid(
            "period",
            format!(
                "{period} is too far ahead; orders may be placed up to {} days ahead",
                m.horizon.num_days()
            ),
        ));
    }
    if !(0..=m.rules.max_price).contains(&price) {
        return Err(ApiError::invalid(
            "price_per_kwh",
            format!("must be 0 to {} minor units per kWh, got {price}", m.rules.max_price),
        ));
    }
    if !(1..=m.max_order_wh).contains(&energy) {
        return Err(ApiError::invalid(
            "energy_wh",
            format!("must be 1 to {} Wh, got {energy}", m.max_order_wh),
        ));
    }
    let (limit, direction) = match side {
        Side::Sell => (site.grid.export_limit.get() / 4, "export"),
        Side::Buy => (site.grid.import_limit.get() / 4, "import"),
    };
    if energy > limit {
        return Err(ApiError::invalid(
            "energy_wh",
            format!(
                "{energy} Wh is more than the site's connection can {direction} in 15 minutes ({limit} Wh)"
            ),
        ));
    }
    Ok(())
}

/// `POST /v1/market/orders`: a bid or offer for one delivery period (201).
pub async fn place(
    State(state): State<AppState>,
    caller: Authenticated,
    Json(body): Json<PlaceOrder>,
) -> Result<(StatusCode, Json<OrderOut>), ApiError> {
    let (site, zone) = tradable_site(&state, &caller, body.site).await?;
    let period = parse_period("period", body.period)?;
    check_order(&state, &site, period, body.side, body.price_per_kwh, body.energy_wh)?;
    let order = NewOrder {
        site: site.id,
        zone,
        period,
        side: body.side,
        price: body.price_per_kwh,
        energy: WattHours(body.energy_wh),
        placed_by: caller.0.user_id,
        strategy: None,
    };
    let stored = gridmesh_db::place_order(&state.pool, &order, None)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("order insert returned no row")))?;
    metrics::counter!("gridmesh_market_orders_total", "placed_by" => "user").increment(1);
    tracing::info!(order = %stored.id, site = %site.id, period = %period, side = body.side.as_str(), "order placed");
    Ok((StatusCode::CREATED, Json(stored.into())))
}

/// The order, if the caller may see it; "not found" otherwise.
async fn visible_order(
    state: &AppState,
    caller: &Authenticated,
    id: OrderId,
) -> Result<(StoredOrder, Site), ApiError> {
    let order =
        gridmesh_db::get_order(&state.pool, id).await?.ok_or_else(|| ApiError::NotFound("order".into()))?;
    let site = gridmesh_db::get_site(&state.pool, order.site)
        .await?
        .ok_or_else(|| ApiError::NotFound("order".into()))?;
    if caller.can_see(&site) { Ok((order, site)) } else { Err(ApiError::NotFound("order".into())) }
}

/// `GET /v1/market/orders/{id}`.
pub async fn get_one(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<OrderId>,
) -> Result<Json<OrderOut>, ApiError> {
    Ok(Json(visible_order(&state, &caller, id).await?.0.into()))
}

/// `DELETE /v1/market/orders/{id}`: cancels an open order before its gate closes.
pub async fn cancel(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<OrderId>,
) -> Result<Json<OrderOut>, ApiError> {
    let (order, site) = visible_order(&state, &caller, id).await?;
    tradable_site(&state, &caller, site.id).await?;
    let gate = state.market.gate_of(order.period);
    if Utc::now() >= gate {
        return Err(ApiError::invalid(
            "period",
            format!("{} is closed: its gate closed at {gate}", order.period),
        ));
    }
    let cancelled = gridmesh_db::cancel_order(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("order".into()))?;
    Ok(Json(cancelled.into()))
}

/// `PUT /v1/market/orders/{id}`: replaces an open order with a new price and energy; the answer
/// is the new order (201), which names the old one in `replaces`.
pub async fn replace(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<OrderId>,
    Json(body): Json<ReplaceOrder>,
) -> Result<(StatusCode, Json<OrderOut>), ApiError> {
    let (old, site) = visible_order(&state, &caller, id).await?;
    let (_, zone) = tradable_site(&state, &caller, site.id).await?;
    check_order(&state, &site, old.period, old.side, body.price_per_kwh, body.energy_wh)?;
    let order = NewOrder {
        site: site.id,
        zone,
        period: old.period,
        side: old.side,
        price: body.price_per_kwh,
        energy: WattHours(body.energy_wh),
        placed_by: caller.0.user_id,
        strategy: None,
    };
    let stored = gridmesh_db::place_order(&state.pool, &order, Some(id))
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("order insert returned no row")))?;
    Ok((StatusCode::CREATED, Json(stored.into())))
}

/// Query of `GET /v1/market/orders`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderQuery {
    site: Option<SiteId>,
    period: Option<DateTime<Utc>>,
    status: Option<String>,
    after: Option<OrderId>,
    limit: Option<u32>,
}

fn limit(value: Option<u32>) -> Result<u32, ApiError> {
    let limit = value.unwrap_or(100);
    if (1..=1000).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::invalid("limit", "must be between 1 and 1000"))
    }
}

/// `GET /v1/market/orders?site=&period=&status=&after=&limit=`: the caller's orders (every
/// order for operators and regulators), by id.
pub async fn list(
    State(state): State<AppState>,
    caller: Authenticated,
    Query(q): Query<OrderQuery>,
) -> Result<Json<Page<OrderOut>>, ApiError> {
    let owner = visible_owner(&caller)?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            OrderStatus::parse(s)
                .ok_or_else(|| ApiError::invalid("status", "must be open, cancelled, replaced or cleared"))
        })
        .transpose()?;
    let limit = limit(q.limit)?;
    let filter = OrderFilter {
        owner,
        site: q.site,
        period: q.period.map(|p| parse_period("period", p)).transpose()?,
        status,
        after: q.after,
        limit,
    };
    let rows = gridmesh_db::list_orders(&state.pool, &filter).await?;
    Ok(Json(Page::new(rows, limit, |o| o.id.to_string(), OrderOut::from)))
}

/// Where a period stands, and its result once cleared.
#[derive(Debug, Serialize)]
pub struct PeriodOut {
    period: Period,
    /// `open` (orders accepted), `closed` (gate passed, clearing due) or `cleared`.
    status: &'static str,
    gate_closes_at: DateTime<Utc>,
    clearing: Option<ClearingOut>,
    zones: Vec<ZonePriceOut>,
}

/// What a period's clearing stored, as the API shows it.
#[derive(Debug, Serialize)]
pub struct ClearingOut {
    period: Period,
    cleared_at: DateTime<Utc>,
    /// `pay_as_clear` or `pay_as_bid`.
    pricing: String,
    order_count: i32,
    trade_count: i32,
    volume_wh: i64,
    /// Welfare in thousandths of a minor unit.
    welfare_milli: i64,
    /// SHA-256 of the result's canonical JSON, hex.
    result_sha256: String,
    /// The replica that cleared it.
    cleared_by: String,
}

impl From<ClearingSummary> for ClearingOut {
    fn from(c: ClearingSummary) -> Self {
        Self {
            period: c.period,
            cleared_at: c.cleared_at,
            pricing: c.pricing,
            order_count: c.order_count,
            trade_count: c.trade_count,
            volume_wh: c.volume_wh,
            welfare_milli: c.welfare_milli,
            result_sha256: c.result_sha256,
            cleared_by: c.cleared_by,
        }
    }
}

/// A zone's clearing price and flows, as the API shows them.
#[derive(Debug, Serialize)]
pub struct ZonePriceOut {
    zone: GridNodeId,
    /// `null` when no order reached the zone's market.
    price_per_kwh: Option<i64>,
    bought_wh: i64,
    sold_wh: i64,
    /// Net energy sent to the parent zone.
    net_export_wh: i64,
    congested: bool,
}

impl From<ZonePrice> for ZonePriceOut {
    fn from(z: ZonePrice) -> Self {
        Self {
            zone: z.zone,
            price_per_kwh: z.price_per_kwh,
            bought_wh: z.bought_wh,
            sold_wh: z.sold_wh,
            net_export_wh: z.net_export_wh,
            congested: z.congested,
        }
    }
}

/// A period from a path segment (its start, RFC 3339).
pub(super) fn period_param(text: &str) -> Result<Period, ApiError> {
    let t: DateTime<Utc> = text.parse().map_err(|_| {
        ApiError::BadPath(format!("{text:?} is not an RFC 3339 time such as 2026-12-01T10:15:00Z"))
    })?;
    Period::starting_at(t).map_err(|e| ApiError::BadPath(e.to_string()))
}

/// `GET /v1/market/periods/{start}`: status, gate closure, and the clearing result (summary and
/// per-zone prices and flows) once cleared.
pub async fn period(
    State(state): State<AppState>,
    _caller: Authenticated,
    Path(start): Path<String>,
) -> Result<Json<PeriodOut>, ApiError> {
    let period = period_param(&start)?;
    let gate = state.market.gate_of(period);
    let result = gridmesh_db::clearing_result(&state.pool, period).await?;
    let status = match (&result, Utc::now() >= gate) {
        (Some(_), _) => "cleared",
        (None, true) => "closed",
        (None, false) => "open",
    };
    let (clearing, zones) = match result {
        Some((c, z)) => (Some(c.into()), z.into_iter().map(ZonePriceOut::from).collect()),
        None => (None, Vec::new()),
    };
    Ok(Json(PeriodOut { period, status, gate_closes_at: gate, clearing, zones }))
}

/// Query of `GET /v1/market/periods/{start}/book`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookQuery {
    zone: Option<GridNodeId>,
}

/// Open energy at one price in one zone, as the API shows it.
#[derive(Debug, Serialize)]
pub struct DepthLevelOut {
    zone: GridNodeId,
    side: Side,
    price: i64,
    energy_wh: i64,
    /// Number of orders.
    orders: i64,
}

impl From<DepthLevel> for DepthLevelOut {
    fn from(d: DepthLevel) -> Self {
        Self { zone: d.zone, side: d.side, price: d.price, energy_wh: d.energy_wh, orders: d.orders }
    }
}

/// `GET /v1/market/periods/{start}/book?zone=`: open energy per zone, side and price.
pub async fn book(
    State(state): State<AppState>,
    _caller: Authenticated,
    Path(start): Path<String>,
    Query(q): Query<BookQuery>,
) -> Result<Json<Vec<DepthLevelOut>>, ApiError> {
    let period = period_param(&start)?;
    let depth = gridmesh_db::book_depth(&state.pool, period, q.zone).await?;
    Ok(Json(depth.into_iter().map(DepthLevelOut::from).collect()))
}

/// A site's net market position in a cleared period, as the API shows it.
#[derive(Debug, Serialize)]
pub struct CommitmentOut {
    site: SiteId,
    sold_wh: i64,
    bought_wh: i64,
    /// `sold_wh − bought_wh`.
    net_wh: i64,
}

impl From<Commitment> for CommitmentOut {
    fn from(c: Commitment) -> Self {
        Self { site: c.site, sold_wh: c.sold_wh, bought_wh: c.bought_wh, net_wh: c.net_wh }
    }
}

/// `GET /v1/market/periods/{start}/commitments` (operators and regulators): each site's net
/// market position in a cleared period, what the balancing optimizer schedules the site's
/// devices to deliver and settlement checks against metered energy.
pub async fn commitments(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(start): Path<String>,
) -> Result<Json<Vec<CommitmentOut>>, ApiError> {
    caller.require(SEE_ALL)?;
    let period = period_param(&start)?;
    let commitments = gridmesh_db::delivery_commitments(&state.pool, period).await?;
    Ok(Json(commitments.into_iter().map(CommitmentOut::from).collect()))
}

/// Query of `GET /v1/market/trades`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TradeQuery {
    site: Option<SiteId>,
    period: Option<DateTime<Utc>>,
    after: Option<String>,
    limit: Option<u32>,
}

/// A trade as the API shows it.
#[derive(Debug, Serialize)]
pub struct TradeOut {
    period: Period,
    /// Position in the clearing's canonical order.
    seq: i32,
    sell_order: OrderId,
    buy_order: OrderId,
    seller_site: SiteId,
    buyer_site: SiteId,
    energy_wh: i64,
    seller_price: i64,
    buyer_price: i64,
    /// Zones from seller to buyer.
    path: Vec<GridNodeId>,
    grid_fee_per_kwh: i64,
}

impl From<StoredTrade> for TradeOut {
    fn from(t: StoredTrade) -> Self {
        Self {
            period: t.period,
            seq: t.seq,
            sell_order: t.sell_order,
            buy_order: t.buy_order,
            seller_site: t.seller_site,
            buyer_site: t.buyer_site,
            energy_wh: t.energy_wh,
            seller_price: t.seller_price,
            buyer_price: t.buyer_price,
            path: t.path,
            grid_fee_per_kwh: t.grid_fee_per_kwh,
        }
    }
}

/// `GET /v1/market/trades?site=&period=&after=&limit=`: trades of the caller's sites (all trades
/// for operators and regulators), by period then position; `after` is `{period}/{seq}`.
pub async fn trades(
    State(state): State<AppState>,
    caller: Authenticated,
    Query(q): Query<TradeQuery>,
) -> Result<Json<Page<TradeOut>>, ApiError> {
    let owner = visible_owner(&caller)?;
    let limit = limit(q.limit)?;
    let after = q
        .after
        .as_deref()
        .map(|a| {
            let bad =
                || ApiError::invalid("after", "is not a cursor from a previous page (expected period/seq)");
            let (p, seq) = a.rsplit_once('/').ok_or_else(bad)?;
            let t: DateTime<Utc> = p.parse().map_err(|_| bad())?;
            Ok::<_, ApiError>((
                Period::starting_at(t).map_err(|_| bad())?,
                seq.parse::<i32>().map_err(|_| bad())?,
            ))
        })
        .transpose()?;
    let filter = TradeFilter {
        owner,
        site: q.site,
        period: q.period.map(|p| parse_period("period", p)).transpose()?,
        after,
        limit,
    };
    let rows = gridmesh_db::list_trades(&state.pool, &filter).await?;
    Ok(Json(Page::new(rows, limit, |t| format!("{}/{}", t.period, t.seq), TradeOut::from)))
}

/// Body of `POST /v1/market/strategies`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewStrategy {
    site: SiteId,
    strategy: Strategy,
}

/// A standing strategy as the API shows it.
#[derive(Debug, Serialize)]
pub struct StrategyOut {
    id: StrategyId,
    site: SiteId,
    strategy: Strategy,
    created_by: UserId,
    created_at: DateTime<Utc>,
}

impl From<StoredStrategy> for StrategyOut {
    fn from(s: StoredStrategy) -> Self {
        Self {
            id: s.id,
            site: s.site,
            strategy: s.strategy,
            created_by: s.created_by,
            created_at: s.created_at,
        }
    }
}

/// `POST /v1/market/strategies`: a standing strategy for one of the caller's sites (201); one of
/// each kind per site.
pub async fn create_strategy(
    State(state): State<AppState>,
    caller: Authenticated,
    Json(body): Json<NewStrategy>,
) -> Result<(StatusCode, Json<StrategyOut>), ApiError> {
    let (site, _) = tradable_site(&state, &caller, body.site).await?;
    body.strategy
        .validate(state.market.rules.max_price)
        .map_err(|e| ApiError::invalid("strategy", e.to_string()))?;
    if matches!(body.strategy, Strategy::BuyToCharge { .. } | Strategy::SellFromBattery { .. })
        && site.battery.is_none()
    {
        return Err(ApiError::invalid(
            "strategy",
            format!("{} needs a battery; site {} has none", body.strategy.kind(), site.id),
        ));
    }
    let stored = gridmesh_db::create_strategy(&state.pool, site.id, &body.strategy, caller.0.user_id).await?;
    Ok((StatusCode::CREATED, Json(stored.into())))
}

/// Query of `GET /v1/market/strategies`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyQuery {
    site: Option<SiteId>,
}

/// `GET /v1/market/strategies?site=`: active strategies of the caller's sites (all for
/// operators and regulators).
pub async fn list_strategies(
    State(state): State<AppState>,
    caller: Authenticated,
    Query(q): Query<StrategyQuery>,
) -> Result<Json<Vec<StrategyOut>>, ApiError> {
    let owner = visible_owner(&caller)?;
    let strategies = gridmesh_db::list_strategies(&state.pool, owner, q.site).await?;
    Ok(Json(strategies.into_iter().map(StrategyOut::from).collect()))
}

/// `DELETE /v1/market/strategies/{id}`: stops a strategy (204); orders it placed stay.
pub async fn delete_strategy(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<StrategyId>,
) -> Result<StatusCode, ApiError> {
    let s = gridmesh_db::get_strategy(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("strategy".into()))?;
    let site = gridmesh_db::get_site(&state.pool, s.site)
        .await?
        .ok_or_else(|| ApiError::NotFound("strategy".into()))?;
    if !caller.can_act_for(&site) {
        return Err(ApiError::NotFound("strategy".into()));
    }
    gridmesh_db::disable_strategy(&state.pool, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
