//! Clearing one period: a welfare-maximising double auction over a tree of zones with transfer
//! limits, solved exactly by aggregating net-export curves up the tree and fixing prices and
//! quantities on the way down.
//!
//! Why this is the LP optimum: the LP "maximise Σ bid price × bought − Σ offer price × sold,
//! subject to zone balance and transfer limits" has, on a tree, optimality conditions that say
//! exactly this: every zone has a price; an order in the money fills, one out of the money does
//! not, one at the price may fill partly; a link whose two ends have different prices carries
//! its limit, towards the higher price. The subtree curve `F_z(p) = f_z(p) + Σ clamp(F_c(p))`
//! is the subtree's net export when its root zone's price is `p` and each child either trades
//! freely at `p` or sits at its limit, so a root price with `0 ∈ [F(p − 1), F(p)]` and the
//! descent below satisfy every condition. The property tests check the conditions on random
//! books.
//!
//! Ties (orders priced exactly at their zone's price) are settled by a fixed rule, so the same
//! book gives the same result whatever order it arrived in. Offers at the price fill before
//! bids at the price give way, so the traded volume is the largest of all optimal answers;
//! within a zone, offers fill by (time, id) and bids give way in reverse (time, id); between a
//! zone and its sub-zones, the zone's own orders come first, then sub-zones by id. Prices are integers:
//! of the interval of clearing prices, the midpoint (rounded down), kept within the prices of the
//! orders involved.

use gridmesh_core::{GridNodeId, OrderId, SiteId, WattHours};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ClearingError;
use crate::curve::Curve;
use crate::order::{Network, Order, Pricing, Rules, Side};

/// Largest energy of one order, in Wh (1 TWh): keeps every sum far from overflow.
pub const MAX_ORDER_WH: i64 = 1_000_000_000_000;

/// Highest `Rules::max_price` accepted, minor units per kWh.
pub const MAX_PRICE_LIMIT: i64 = 1_000_000_000;

/// What happened in one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneOutcome {
    /// The zone.
    pub zone: GridNodeId,
    /// Clearing price, minor units per kWh; `None` when no order reaches this zone's market.
    pub price: Option<i64>,
    /// Energy bought by the zone's own bids.
    pub bought: WattHours,
    /// Energy sold by the zone's own offers.
    pub sold: WattHours,
    /// Net energy the zone's subtree sends to its parent (negative: receives); 0 for a root.
    pub net_export: WattHours,
    /// True when the link to the parent is congested: the prices on its two ends differ.
    pub congested: bool,
}

/// How much of an order filled, and at what price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    /// The order.
    pub order: OrderId,
    /// Its site.
    pub site: SiteId,
    /// Buy or sell.
    pub side: Side,
    /// Energy filled, 0 up to the order's energy.
    pub filled: WattHours,
    /// Price per kWh the site pays (buy) or receives (sell); `None` when nothing filled.
    pub price: Option<i64>,
}

/// Energy from one seller to one buyer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    /// The offer.
    pub sell_order: OrderId,
    /// The bid.
    pub buy_order: OrderId,
    /// The selling site.
    pub seller: SiteId,
    /// The buying site.
    pub buyer: SiteId,
    /// Energy, Wh.
    pub energy: WattHours,
    /// What the seller receives, minor units per kWh.
    pub seller_price: i64,
    /// What the buyer pays, minor units per kWh.
    pub buyer_price: i64,
    /// The zones the energy passes, from the seller's feeder to the buyer's.
    pub path: Vec<GridNodeId>,
    /// Network fee for this trade, minor units per kWh: the sum of the path's zone fees.
    pub grid_fee_per_kwh: i64,
}

/// The result of clearing one period. Every list is in a canonical order (zones and fills by
/// id, trades by offer then bid), so equal books give byte-identical serialisations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clearing {
    /// The rules applied.
    pub rules: Rules,
    /// Per zone, ordered by id.
    pub zones: Vec<ZoneOutcome>,
    /// One per order, ordered by order id.
    pub fills: Vec<Fill>,
    /// Ordered by offer id, then bid id.
    pub trades: Vec<Trade>,
    /// Total energy traded, Wh.
    pub volume: WattHours,
    /// Welfare: Σ bid limit × bought − Σ offer limit × sold, in thousandths of a minor unit
    /// (Wh × minor units per kWh).
    pub welfare_milli: i64,
}

/// Clears one period's book.
///
/// # Errors
/// Invalid rules or orders (unknown zone, duplicate id, energy or price out of bounds), each
/// naming the order; [`ClearingError::Inconsistent`] would mean a bug in this function.
pub fn clear(network: &Network, orders: &[Order], rules: Rules) -> Result<Clearing, ClearingError> {
    validate(network, orders, rules)?;
    let n = network.zones.len();

    // Each zone's orders in canonical order: offers cheapest first, bids dearest first, ties
    // by time then id.
    let mut by_zone: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, o) in orders.iter().enumerate() {
        by_zone[network.index[&o.zone]].push(i);
    }
    for list in &mut by_zone {
        list.sort_unstable_by(|&a, &b| priority_key(&orders[a]).cmp(&priority_key(&orders[b])));
    }

    let local: Vec<Curve> = by_zone
        .iter()
        .map(|list| {
            Curve::from_orders(list.iter().map(|&i| {
                let o = &orders[i];
                (o.price, o.energy.get(), o.side == Side::Buy)
            }))
        })
        .collect();
    // Per zone, the offered energy at each price (ascending), to find what is marginal.
    let offer_levels: Vec<Vec<(i64, i64)>> = by_zone
        .iter()
        .map(|list| {
            let mut levels: Vec<(i64, i64)> = Vec::new();
            for &i in list.iter().filter(|&&i| orders[i].side == Side::Sell) {
                match levels.last_mut() {
                    Some(l) if l.0 == orders[i].price => l.1 += orders[i].energy.get(),
                    _ => levels.push((orders[i].price, orders[i].energy.get())),
                }
            }
            levels
        })
        .collect();
    let limit = |z: usize| (-network.zones[z].import_limit.get(), network.zones[z].export_limit.get());

    // Bottom-up: subtree curves and the span of order prices in each subtree.
    let mut subtree: Vec<Curve> = vec![Curve::default(); n];
    let mut span: Vec<Option<(i64, i64)>> = vec![None; n];
    for &z in network.top_down.iter().rev() {
        let mut s = local[z].clone();
        let mut sp = by_zone[z].iter().map(|&i| orders[i].price).fold(None, |acc: Option<(i64, i64)>, p| {
            Some(acc.map_or((p, p), |(lo, hi)| (lo.min(p), hi.max(p))))
        });
        for &c in &network.children[z] {
            let (lo, hi) = limit(c);
            s = s.add(&subtree[c].clamp(lo, hi));
            if let Some((clo, chi)) = span[c] {
                sp = Some(sp.map_or((clo, chi), |(lo, hi)| (lo.min(clo), hi.max(chi))));
            }
        }
        subtree[z] = s;
        span[z] = sp;
    }

    // Top-down: prices, subtree targets and each zone's own net export.
    let mut price: Vec<Option<i64>> = vec![None; n];
    let mut target = vec![0_i64; n];
    let mut local_x = vec![0_i64; n];
    for &z in &network.top_down {
        let parent_price = network.parent[z].and_then(|p| price[p]);
        let Some(sp) = span[z] else {
            price[z] = parent_price;
            continue;
        };
        let p = match network.parent[z] {
            None => midpoint(subtree[z].prices_for(0), sp),
            Some(_) => match parent_price {
                Some(pp) if subtree[z].at(pp - 1) <= target[z] && target[z] <= subtree[z].at(pp) => pp,
                _ => midpoint(subtree[z].prices_for(target[z]), sp),
            },
        };
        price[z] = Some(p);
        // Pick each component's net export within what the price allows, so they add up to
        // the target: start from the low ends and hand out the rest in two rounds, first to
        // offers at the price (which adds volume), then to bids at the price giving way; in
        // each round the zone's own orders first, then sub-zones by id.
        let (l_lo, l_hi) = (local[z].at(p - 1), local[z].at(p));
        let l_offers = offers_at(&offer_levels[z], p);
        let mut parts: Vec<(i64, i64, i64)> = vec![(l_lo, l_hi, l_offers)];
        for &c in &network.children[z] {
            let (lo, hi) = limit(c);
            let a = subtree[c].at(p - 1);
            let offers =
                (a + offer_width(network, &offer_levels, &subtree, c, p)).clamp(lo, hi) - a.clamp(lo, hi);
            parts.push((a.clamp(lo, hi), subtree[c].at(p).clamp(lo, hi), offers));
        }
        let mut rest = target[z] - parts.iter().map(|r| r.0).sum::<i64>();
        if rest < 0 {
            return Err(ClearingError::Inconsistent(format!("zone {} over its target", network.zones[z].id)));
        }
        let mut chosen: Vec<i64> = parts.iter().map(|r| r.0).collect();
        for (k, &(_, _, offers)) in parts.iter().enumerate() {
            let take = offers.min(rest);
            chosen[k] += take;
            rest -= take;
        }
        for (k, &(_, hi, _)) in parts.iter().enumerate() {
            let take = (hi - chosen[k]).min(rest);
            chosen[k] += take;
            rest -= take;
        }
        local_x[z] = chosen[0];
        for (&c, &x) in network.children[z].iter().zip(&chosen[1..]) {
            target[c] = x;
        }
        if rest != 0 {
            return Err(ClearingError::Inconsistent(format!(
                "zone {} short of its target",
                network.zones[z].id
            )));
        }
    }

    // Fill each zone's orders to its own net export.
    let mut filled = vec![0_i64; orders.len()];
    for z in 0..n {
        let Some(p) = price[z] else { continue };
        let mut rest = local_x[z] - local[z].at(p - 1);
        let list = &by_zone[z];
        for &i in list {
            let o = &orders[i];
            let e = o.energy.get();
            filled[i] = match o.side {
                Side::Sell if o.price < p => e,
                Side::Buy if o.price >= p => e,
                _ => 0,
            };
        }
        // Offers at the price fill in priority order...
        for &i in list.iter().filter(|&&i| orders[i].side == Side::Sell && orders[i].price == p) {
            let take = orders[i].energy.get().min(rest);
            filled[i] += take;
            rest -= take;
        }
        // ...then bids at the price give way, the latest first.
        for &i in list.iter().rev().filter(|&&i| orders[i].side == Side::Buy && orders[i].price == p) {
            let take = filled[i].min(rest);
            filled[i] -= take;
            rest -= take;
        }
        if rest != 0 {
            return Err(ClearingError::Inconsistent(format!(
                "zone {} cannot reach its net export",
                network.zones[z].id
            )));
        }
    }

    let trade_price = |i: usize| match rules.pricing {
        Pricing::PayAsClear => price[network.index[&orders[i].zone]].unwrap_or(orders[i].price),
        Pricing::PayAsBid => orders[i].price,
    };
    let trades = match_trades(network, orders, &by_zone, &filled, &target, &trade_price)?;

    let zones = (0..n)
        .map(|z| {
            let (mut bought, mut sold) = (0, 0);
            for &i in &by_zone[z] {
                match orders[i].side {
                    Side::Buy => bought += filled[i],
                    Side::Sell => sold += filled[i],
                }
            }
            ZoneOutcome {
                zone: network.zones[z].id,
                price: price[z],
                bought: WattHours(bought),
                sold: WattHours(sold),
                net_export: WattHours(if network.parent[z].is_some() { target[z] } else { 0 }),
                congested: network.parent[z].is_some_and(|p| price[p] != price[z]),
            }
        })
        .collect();
    let mut welfare: i128 = 0;
    let mut volume = 0_i64;
    let mut fills: Vec<Fill> = orders
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let value = i128::from(filled[i]) * i128::from(o.price);
            match o.side {
                Side::Buy => {
                    welfare += value;
                    volume += filled[i];
                }
                Side::Sell => welfare -= value,
            }
            Fill {
                order: o.id,
                site: o.site,
                side: o.side,
                filled: WattHours(filled[i]),
                price: (filled[i] > 0).then(|| trade_price(i)),
            }
        })
        .collect();
    fills.sort_unstable_by_key(|f| f.order);
    Ok(Clearing {
        rules,
        zones,
        fills,
        trades,
        volume: WattHours(volume),
        welfare_milli: i64::try_from(welfare).unwrap_or(i64::MAX),
    })
}

impl Clearing {
    /// SHA-256 of the result's canonical JSON: its identity, stored with it and logged, so that
    /// replicas and auditors compare results without the whole document. Every list is in
    /// canonical order, so equal books give equal hashes.
    ///
    /// # Errors
    /// [`ClearingError::Inconsistent`] if the result cannot be serialised (it always can; a bug).
    pub fn sha256(&self) -> Result<[u8; 32], ClearingError> {
        let canonical = serde_json::to_vec(self)
            .map_err(|e| ClearingError::Inconsistent(format!("the result does not serialise: {e}")))?;
        Ok(Sha256::digest(&canonical).into())
    }
}

/// Clears one period's book ([`clear`]) and hashes the result ([`Clearing::sha256`]): what the
/// service stores for a period.
///
/// # Errors
/// As [`clear`].
pub fn clear_hashed(
    network: &Network,
    orders: &[Order],
    rules: Rules,
) -> Result<(Clearing, [u8; 32]), ClearingError> {
    let clearing = clear(network, orders, rules)?;
    let hash = clearing.sha256()?;
    Ok((clearing, hash))
}

/// Offered energy priced exactly `p` in one zone.
fn offers_at(levels: &[(i64, i64)], p: i64) -> i64 {
    levels.binary_search_by_key(&p, |l| l.0).map_or(0, |k| levels[k].1)
}

/// How much of subtree `z`'s net-export range at price `p` comes from filling offers at `p`
/// (before any bid at `p` has to give way), as seen through the links' limits.
fn offer_width(
    network: &Network,
    offer_levels: &[Vec<(i64, i64)>],
    subtree: &[Curve],
    z: usize,
    p: i64,
) -> i64 {
    let mut w = offers_at(&offer_levels[z], p);
    for &c in &network.children[z] {
        let (lo, hi) = (-network.zones[c].import_limit.get(), network.zones[c].export_limit.get());
        let a = subtree[c].at(p - 1);
        w += (a + offer_width(network, offer_levels, subtree, c, p)).clamp(lo, hi) - a.clamp(lo, hi);
    }
    w
}

/// Sort key within a zone: offers before bids; offers by rising price, bids by falling price;
/// then time, then id.
fn priority_key(o: &Order) -> (u8, i64, gridmesh_core::Timestamp, OrderId) {
    match o.side {
        Side::Sell => (0, o.price, o.submitted_at, o.id),
        Side::Buy => (1, -o.price, o.submitted_at, o.id),
    }
}

/// The midpoint (rounded down) of the clearing-price interval, kept within the order prices.
fn midpoint((lo, hi): (i64, i64), (smin, smax): (i64, i64)) -> i64 {
    let lo = lo.max(smin).min(smax);
    let hi = hi.min(smax).max(lo);
    lo + (hi - lo) / 2
}

fn validate(network: &Network, orders: &[Order], rules: Rules) -> Result<(), ClearingError> {
    if !(0..=MAX_PRICE_LIMIT).contains(&rules.max_price) {
        return Err(ClearingError::BadRules(format!(
            "max_price must be 0 to {MAX_PRICE_LIMIT}, got {}",
            rules.max_price
        )));
    }
    let mut ids: Vec<OrderId> = Vec::with_capacity(orders.len());
    for o in orders {
        if !network.index.contains_key(&o.zone) {
            return Err(ClearingError::UnknownZone { order: o.id, zone: o.zone });
        }
        if !(1..=MAX_ORDER_WH).contains(&o.energy.get()) {
            return Err(ClearingError::BadEnergy { order: o.id, energy: o.energy });
        }
        if !(0..=rules.max_price).contains(&o.price) {
            return Err(ClearingError::BadPrice { order: o.id, price: o.price, max: rules.max_price });
        }
        ids.push(o.id);
    }
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(ClearingError::DuplicateOrder(w[0]));
    }
    Ok(())
}

/// A filled order's energy on its way up the tree, with the zones it has passed.
struct Lot {
    order: usize,
    remaining: i64,
    path: Vec<usize>,
}

/// Pairs sellers with buyers: in each zone, bottom-up, the zone's own fills first, then what its
/// sub-zones pass up (by id); whatever a zone cannot match travels to its parent, which is
/// exactly the zone's net export.
fn match_trades(
    network: &Network,
    orders: &[Order],
    by_zone: &[Vec<usize>],
    filled: &[i64],
    target: &[i64],
    trade_price: &dyn Fn(usize) -> i64,
) -> Result<Vec<Trade>, ClearingError> {
    let n = network.zones.len();
    let mut passed: Vec<(Vec<Lot>, Vec<Lot>)> = (0..n).map(|_| (Vec::new(), Vec::new())).collect();
    let mut trades = Vec::new();
    for &z in network.top_down.iter().rev() {
        let mut sellers = Vec::new();
        let mut buyers = Vec::new();
        for &i in &by_zone[z] {
            if filled[i] > 0 {
                let lot = Lot { order: i, remaining: filled[i], path: vec![z] };
                match orders[i].side {
                    Side::Sell => sellers.push(lot),
                    Side::Buy => buyers.push(lot),
                }
            }
        }
        for &c in &network.children[z] {
            let (s, b) = std::mem::take(&mut passed[c]);
            for mut lot in s {
                lot.path.push(z);
                sellers.push(lot);
            }
            for mut lot in b {
                lot.path.push(z);
                buyers.push(lot);
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < sellers.len() && j < buyers.len() {
            let qty = sellers[i].remaining.min(buyers[j].remaining);
            let (s, b) = (&sellers[i], &buyers[j]);
            let mut path: Vec<GridNodeId> = s.path.iter().map(|&k| network.zones[k].id).collect();
            path.extend(b.path.iter().rev().skip(1).map(|&k| network.zones[k].id));
            let mut fee = 0;
            for &k in s.path.iter().chain(b.path.iter().rev().skip(1)) {
                fee += network.zones[k].fee_per_kwh;
            }
            trades.push(Trade {
                sell_order: orders[s.order].id,
                buy_order: orders[b.order].id,
                seller: orders[s.order].site,
                buyer: orders[b.order].site,
                energy: WattHours(qty),
                seller_price: trade_price(s.order),
                buyer_price: trade_price(b.order),
                path,
                grid_fee_per_kwh: fee,
            });
            sellers[i].remaining -= qty;
            buyers[j].remaining -= qty;
            if sellers[i].remaining == 0 {
                i += 1;
            }
            if buyers[j].remaining == 0 {
                j += 1;
            }
        }
        sellers.drain(..i);
        buyers.drain(..j);
        let up: i64 = sellers.iter().map(|l| l.remaining).sum::<i64>()
            - buyers.iter().map(|l| l.remaining).sum::<i64>();
        let expected = if network.parent[z].is_some() { target[z] } else { 0 };
        if up != expected {
            return Err(ClearingError::Inconsistent(format!(
                "zone {} passes {up} Wh up, expected {expected}",
                network.zones[z].id
            )));
        }
        passed[z] = (sellers, buyers);
    }
    trades.sort_unstable_by_key(|a| (a.sell_order, a.buy_order));
    Ok(trades)
}
