//! Settling one period.

use std::collections::BTreeMap;

use gridmesh_core::{Period, SiteId, WattHours};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::merkle::{self, Hash, Tree};

/// The utility's prices for a period, minor currency units (per kWh unless named otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tariffs {
    /// Charged for energy a site draws beyond its market position (its imbalance price when
    /// short).
    pub import_price: i64,
    /// Paid for energy a site delivers beyond its market position (its imbalance price when
    /// long).
    pub feed_in_price: i64,
    /// Network fee on the site's gross metered import.
    pub grid_fee_per_kwh: i64,
    /// Fixed fee per site and UTC day, charged in the day's first period (00:00).
    pub daily_fee: i64,
}

/// What the meter says about a site in the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Metering {
    /// Complete, unflagged (or reviewed) 15-minute energy.
    Measured {
        /// Energy drawn from the grid.
        imported: WattHours,
        /// Energy fed into the grid.
        exported: WattHours,
    },
    /// The period has flagged readings not yet reviewed: metered energy is left out.
    Flagged,
    /// No complete metering for the period.
    Missing,
}

/// One site to settle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteInput {
    /// The site.
    pub site: SiteId,
    /// Its metering.
    pub metering: Metering,
}

/// One cleared trade of the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeInput {
    /// Selling site.
    pub seller: SiteId,
    /// Buying site.
    pub buyer: SiteId,
    /// Energy, Wh.
    pub energy: WattHours,
    /// What the seller receives per kWh.
    pub seller_price: i64,
    /// What the buyer pays per kWh.
    pub buyer_price: i64,
    /// Network fee per kWh, paid by the buyer.
    pub grid_fee_per_kwh: i64,
}

/// Everything a period's settlement depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodInput {
    /// The period.
    pub period: Period,
    /// The utility's prices.
    pub tariffs: Tariffs,
    /// Every site to settle (at most once each).
    pub sites: Vec<SiteInput>,
    /// The period's trades.
    pub trades: Vec<TradeInput>,
}

/// A ledger account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "site", rename_all = "snake_case")]
pub enum Account {
    /// A household site.
    Site(SiteId),
    /// The market: receives buyers' payments, pays sellers; keeps congestion rent.
    Market,
    /// The utility: counterparty of imbalances.
    Utility,
    /// The network operator: network fees and fixed fees.
    Network,
}

impl Account {
    /// `site:<id>`, `market`, `utility` or `network`.
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Account::Site(s) => format!("site:{s}"),
            Account::Market => "market".into(),
            Account::Utility => "utility".into(),
            Account::Network => "network".into(),
        }
    }
}

/// Why money moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostingKind {
    /// A buyer pays the market for a trade.
    TradePurchase,
    /// The market pays a seller for a trade.
    TradeSale,
    /// A buyer pays the network fee of a trade.
    TradeFee,
    /// Energy delivered beyond the market position, paid by the utility.
    ImbalanceLong,
    /// Energy drawn beyond the market position, paid to the utility.
    ImbalanceShort,
    /// The network fee on gross import.
    GridFee,
    /// The fixed daily fee.
    DailyFee,
}

impl PostingKind {
    /// The stored name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            PostingKind::TradePurchase => "trade_purchase",
            PostingKind::TradeSale => "trade_sale",
            PostingKind::TradeFee => "trade_fee",
            PostingKind::ImbalanceLong => "imbalance_long",
            PostingKind::ImbalanceShort => "imbalance_short",
            PostingKind::GridFee => "grid_fee",
            PostingKind::DailyFee => "daily_fee",
        }
    }
}

/// A transfer of `amount` minor units from one account to another. The ledger is the list of
/// postings: every posting debits one account and credits another by the same amount, so any
/// set of postings sums to zero across accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    /// Pays.
    pub from: Account,
    /// Receives.
    pub to: Account,
    /// Minor units, more than zero.
    pub amount: i64,
    /// Why.
    pub kind: PostingKind,
}

/// How a line's metering stood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum LineStatus {
    /// Settled against metered energy.
    Metered = 0,
    /// Flagged readings left out (or metered numbers beyond the 64-bit range, see [`settle`]):
    /// trades settled, imbalance and grid fee wait for review.
    Flagged = 1,
    /// No metering: trades settled, imbalance and grid fee wait for data.
    Missing = 2,
}

/// Version byte of the line encoding.
pub const LINE_VERSION: u8 = 1;
/// Length of an encoded line: version, period, site, status and eleven 64-bit numbers.
pub const LINE_LEN: usize = 1 + 8 + 16 + 1 + 11 * 8;

/// A site's settlement for a period; the leaf of the period's Merkle tree.
///
/// Amounts are minor units; `net_amount` is what the site receives (negative: pays).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// The period.
    pub period: Period,
    /// The site.
    pub site: SiteId,
    /// Metering status.
    pub status: LineStatus,
    /// Metered import, Wh (0 unless metered).
    pub imported_wh: i64,
    /// Metered export, Wh (0 unless metered).
    pub exported_wh: i64,
    /// Sold in the market, Wh.
    pub sold_wh: i64,
    /// Bought in the market, Wh.
    pub bought_wh: i64,
    /// Metered net export minus market position, Wh (0 unless metered).
    pub imbalance_wh: i64,
    /// Received from the market.
    pub market_received: i64,
    /// Paid to the market.
    pub market_paid: i64,
    /// Imbalance money: received (positive) or paid (negative).
    pub imbalance_amount: i64,
    /// Network fees paid (trade fees and the grid fee on import).
    pub network_fees: i64,
    /// Fixed daily fee paid in this period.
    pub daily_fee: i64,
    /// Net money for the site: received minus paid.
    pub net_amount: i64,
}

/// Why bytes are not a line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LineError {
    /// Wrong length.
    #[error("a settlement line is {LINE_LEN} bytes, got {0}")]
    Length(usize),
    /// Unknown version.
    #[error("unknown settlement line version {0} (this build reads {LINE_VERSION})")]
    Version(u8),
    /// Unknown status byte.
    #[error("unknown line status {0}")]
    Status(u8),
    /// The period index is out of range.
    #[error("period index {0} is out of range")]
    Period(i64),
}

impl Line {
    /// The canonical encoding (big-endian, fixed width): version `u8`, period index `u64`, site
    /// UUID (16 bytes), status `u8`, then `imported_wh`, `exported_wh`, `sold_wh`, `bought_wh`,
    /// `imbalance_wh`, `market_received`, `market_paid`, `imbalance_amount`, `network_fees`,
    /// `daily_fee`, `net_amount` as two's-complement `i64`.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LINE_LEN);
        out.push(LINE_VERSION);
        out.extend_from_slice(&self.period.index().to_be_bytes());
        out.extend_from_slice(self.site.as_bytes());
        out.push(self.status as u8);
        for v in self.numbers() {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out
    }

    fn numbers(&self) -> [i64; 11] {
        [
            self.imported_wh,
            self.exported_wh,
            self.sold_wh,
            self.bought_wh,
            self.imbalance_wh,
            self.market_received,
            self.market_paid,
            self.imbalance_amount,
            self.network_fees,
            self.daily_fee,
            self.net_amount,
        ]
    }

    /// Reads a canonical encoding back.
    ///
    /// # Errors
    /// Wrong length, version, status or period.
    pub fn decode(bytes: &[u8]) -> Result<Self, LineError> {
        if bytes.len() != LINE_LEN {
            return Err(LineError::Length(bytes.len()));
        }
        if bytes[0] != LINE_VERSION {
            return Err(LineError::Version(bytes[0]));
        }
        let word = |at: usize| {
            let mut b = [0_u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            i64::from_be_bytes(b)
        };
        let index = word(1);
        let period = Period::from_index(index).map_err(|_| LineError::Period(index))?;
        let mut site = [0_u8; 16];
        site.copy_from_slice(&bytes[9..25]);
        let status = match bytes[25] {
            0 => LineStatus::Metered,
            1 => LineStatus::Flagged,
            2 => LineStatus::Missing,
            other => return Err(LineError::Status(other)),
        };
        let n: Vec<i64> = (0..11).map(|k| word(26 + 8 * k)).collect();
        Ok(Self {
            period,
            site: SiteId::from_bytes(site),
            status,
            imported_wh: n[0],
            exported_wh: n[1],
            sold_wh: n[2],
            bought_wh: n[3],
            imbalance_wh: n[4],
            market_received: n[5],
            market_paid: n[6],
            imbalance_amount: n[7],
            network_fees: n[8],
            daily_fee: n[9],
            net_amount: n[10],
        })
    }

    /// The Merkle leaf of this line.
    #[must_use]
    pub fn leaf(&self) -> Hash {
        merkle::leaf(&self.encode())
    }
}

/// A settled period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The period.
    pub period: Period,
    /// One line per site, ordered by site id (the leaf order).
    pub lines: Vec<Line>,
    /// The ledger postings, in a canonical order.
    pub postings: Vec<Posting>,
    /// The Merkle tree over the lines.
    pub tree: Tree,
    /// Energy exchanged with the grid by metered sites (import + export), Wh.
    pub total_wh: i64,
}

impl Settlement {
    /// The anchored root.
    #[must_use]
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// A site's line, its index and its proof.
    #[must_use]
    pub fn proof_for(&self, site: SiteId) -> Option<(usize, &Line, Vec<Hash>)> {
        let i = self.lines.binary_search_by_key(&site, |l| l.site).ok()?;
        Some((i, &self.lines[i], self.tree.proof(i)?))
    }
}

/// Why a period could not be settled.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SettleError {
    /// A site appears twice.
    #[error("site {0} appears twice")]
    DuplicateSite(SiteId),
    /// A trade names a site that is not being settled.
    #[error("a trade names site {0}, which is not among the sites settled")]
    UnknownSite(SiteId),
    /// Negative energy or price.
    #[error("{0} must not be negative")]
    Negative(&'static str),
    /// A sum left the range of 64-bit integers.
    #[error("amounts overflow")]
    Overflow,
}

/// `energy` Wh at `price` minor units per kWh, in minor units, rounded half away from zero.
#[must_use]
pub fn amount(energy: i64, price: i64) -> Option<i64> {
    let milli = i128::from(energy).checked_mul(i128::from(price))?;
    let rounded = if milli >= 0 { (milli + 500) / 1000 } else { (milli - 500) / 1000 };
    i64::try_from(rounded).ok()
}

/// Settles a period: the lines, the postings, the Merkle tree.
///
/// Every sum of energy and money is checked. A site whose metered numbers leave the 64-bit
/// range (its energy, its imbalance or its money, or the period's total energy, of which the
/// site with the most energy is flagged first) is settled as [`LineStatus::Flagged`] with zero
/// metered energy: its trades and fees settle, its metering waits for review like any
/// implausible reading, and the other sites settle as usual. Such numbers never come from a
/// real meter, so one implausible site cannot hold up the period.
///
/// # Errors
/// A site listed twice, a trade with a site not listed, negative energy or prices, and
/// overflow in the trades or fixed fees (which do not come from meters).
pub fn settle(input: &PeriodInput) -> Result<Settlement, SettleError> {
    let t = input.tariffs;
    for (name, v) in [
        ("import_price", t.import_price),
        ("feed_in_price", t.feed_in_price),
        ("grid_fee_per_kwh", t.grid_fee_per_kwh),
        ("daily_fee", t.daily_fee),
    ] {
        if v < 0 {
            return Err(SettleError::Negative(name));
        }
    }
    let mut sites: BTreeMap<SiteId, Metering> = BTreeMap::new();
    for s in &input.sites {
        if sites.insert(s.site, s.metering).is_some() {
            return Err(SettleError::DuplicateSite(s.site));
        }
    }
    // The trades: each posting filed under the one site it involves.
    let mut trade_postings: BTreeMap<SiteId, Vec<Posting>> = BTreeMap::new();
    let mut sold: BTreeMap<SiteId, i64> = BTreeMap::new();
    let mut bought: BTreeMap<SiteId, i64> = BTreeMap::new();
    for tr in &input.trades {
        for s in [tr.seller, tr.buyer] {
            if !sites.contains_key(&s) {
                return Err(SettleError::UnknownSite(s));
            }
        }
        if tr.energy.get() < 0 || tr.seller_price < 0 || tr.buyer_price < 0 || tr.grid_fee_per_kwh < 0 {
            return Err(SettleError::Negative("trade energy and prices"));
        }
        let e = tr.energy.get();
        add_energy(&mut sold, tr.seller, e)?;
        add_energy(&mut bought, tr.buyer, e)?;
        let of = |price| amount(e, price).ok_or(SettleError::Overflow);
        let (buyer, seller) = (Account::Site(tr.buyer), Account::Site(tr.seller));
        let (purchase, sale, fee) = (of(tr.buyer_price)?, of(tr.seller_price)?, of(tr.grid_fee_per_kwh)?);
        let to_buyer = trade_postings.entry(tr.buyer).or_default();
        post(to_buyer, buyer, Account::Market, purchase, PostingKind::TradePurchase);
        post(to_buyer, buyer, Account::Network, fee, PostingKind::TradeFee);
        let to_seller = trade_postings.entry(tr.seller).or_default();
        post(to_seller, Account::Market, seller, sale, PostingKind::TradeSale);
    }
    let traded =
        |site: SiteId| (sold.get(&site).copied().unwrap_or(0), bought.get(&site).copied().unwrap_or(0));

    // The metering that can be counted. A site whose numbers leave the 64-bit range is left
    // out here, and settled as flagged below.
    let mut metered: BTreeMap<SiteId, MeteredSite> = BTreeMap::new();
    for (&site, metering) in &sites {
        if let Metering::Measured { imported, exported } = *metering {
            if imported.get() < 0 || exported.get() < 0 {
                return Err(SettleError::Negative("metered energy"));
            }
            let (s, b) = traded(site);
            // Both sums are of non-negative trades, so their difference fits.
            let position = s.checked_sub(b).ok_or(SettleError::Overflow)?;
            if let Some(m) = MeteredSite::new(site, imported.get(), exported.get(), position, &t) {
                metered.insert(site, m);
            }
        }
    }
    // The period's total energy must fit too; while it does not, the site with the most energy
    // (ties: the lowest id) is left out. Each site's energy fits an i64, so the i128 sum is exact.
    let mut total: i128 = metered.values().map(|m| i128::from(m.energy)).sum();
    while total > i128::from(i64::MAX) {
        let Some(largest) =
            metered.iter().max_by_key(|(s, m)| (m.energy, std::cmp::Reverse(**s))).map(|(s, _)| *s)
        else {
            break;
        };
        if let Some(m) = metered.remove(&largest) {
            total -= i128::from(m.energy);
        }
    }

    let first_of_day = input.period.index().rem_euclid(gridmesh_core::period::PERIODS_PER_UTC_DAY) == 0;
    let mut postings: Vec<Posting> = Vec::new();
    let mut lines: Vec<Line> = Vec::with_capacity(sites.len());
    let mut total_wh = 0_i64;
    for (&site, metering) in &sites {
        let trades = trade_postings.get(&site).map_or(&[][..], Vec::as_slice);
        let mut fixed = Vec::new();
        if first_of_day {
            post(&mut fixed, Account::Site(site), Account::Network, t.daily_fee, PostingKind::DailyFee);
        }
        let (sold_wh, bought_wh) = traded(site);
        let unmetered = Line {
            period: input.period,
            site,
            status: match metering {
                Metering::Missing => LineStatus::Missing,
                Metering::Measured { .. } | Metering::Flagged => LineStatus::Flagged,
            },
            imported_wh: 0,
            exported_wh: 0,
            sold_wh,
            bought_wh,
            imbalance_wh: 0,
            market_received: 0,
            market_paid: 0,
            imbalance_amount: 0,
            network_fees: 0,
            daily_fee: 0,
            net_amount: 0,
        };
        // A metered line whose money does not fit is flagged like one whose energy does not.
        let counted = metered.get(&site).and_then(|m| {
            let line = Line {
                status: LineStatus::Metered,
                imported_wh: m.imported,
                exported_wh: m.exported,
                imbalance_wh: m.imbalance,
                ..unmetered
            }
            .priced(trades.iter().chain(&m.postings).chain(&fixed))?;
            Some((line, m))
        });
        let line = match counted {
            Some((line, m)) => {
                // Cannot fail: the sum of all counted energy fits (see above).
                total_wh = total_wh.checked_add(m.energy).ok_or(SettleError::Overflow)?;
                postings.extend_from_slice(&m.postings);
                line
            }
            None => unmetered.priced(trades.iter().chain(&fixed)).ok_or(SettleError::Overflow)?,
        };
        postings.extend_from_slice(trades);
        postings.extend_from_slice(&fixed);
        lines.push(line);
    }
    postings.sort_by_key(|p| (p.kind, p.from, p.to, p.amount));
    let tree = Tree::new(lines.iter().map(Line::leaf).collect());
    Ok(Settlement { period: input.period, lines, postings, tree, total_wh })
}

/// Adds a posting to `list`; a zero amount moves nothing and is left out.
fn post(list: &mut Vec<Posting>, from: Account, to: Account, amount: i64, kind: PostingKind) {
    if amount > 0 {
        list.push(Posting { from, to, amount, kind });
    }
}

/// Adds a trade's energy to a site's sum.
fn add_energy(sums: &mut BTreeMap<SiteId, i64>, site: SiteId, energy: i64) -> Result<(), SettleError> {
    let sum = sums.entry(site).or_default();
    *sum = sum.checked_add(energy).ok_or(SettleError::Overflow)?;
    Ok(())
}

/// A site's metering as settlement counts it: its energy and the postings it causes.
struct MeteredSite {
    imported: i64,
    exported: i64,
    /// Metered net export minus the market position.
    imbalance: i64,
    /// Import plus export, for the period's total.
    energy: i64,
    /// The imbalance and the grid fee.
    postings: Vec<Posting>,
}

impl MeteredSite {
    /// `None` when a number leaves the 64-bit range.
    fn new(site: SiteId, imported: i64, exported: i64, position: i64, t: &Tariffs) -> Option<Self> {
        let energy = imported.checked_add(exported)?;
        let imbalance = exported.checked_sub(imported)?.checked_sub(position)?;
        let me = Account::Site(site);
        let mut postings = Vec::new();
        if imbalance > 0 {
            let long = amount(imbalance, t.feed_in_price)?;
            post(&mut postings, Account::Utility, me, long, PostingKind::ImbalanceLong);
        } else {
            let short = amount(imbalance.checked_neg()?, t.import_price)?;
            post(&mut postings, me, Account::Utility, short, PostingKind::ImbalanceShort);
        }
        let fee = amount(imported, t.grid_fee_per_kwh)?;
        post(&mut postings, me, Account::Network, fee, PostingKind::GridFee);
        Some(Self { imported, exported, imbalance, energy, postings })
    }
}

impl Line {
    /// This line with its money: its site's share of `postings` (which hold at least every
    /// posting of the site). `None` when a sum leaves the 64-bit range.
    fn priced<'a>(mut self, postings: impl IntoIterator<Item = &'a Posting>) -> Option<Self> {
        let me = Account::Site(self.site);
        let (mut long, mut short) = (0_i64, 0_i64);
        for p in postings {
            let sum = match p.kind {
                PostingKind::TradeSale if p.to == me => &mut self.market_received,
                PostingKind::TradePurchase if p.from == me => &mut self.market_paid,
                PostingKind::ImbalanceLong if p.to == me => &mut long,
                PostingKind::ImbalanceShort if p.from == me => &mut short,
                PostingKind::TradeFee | PostingKind::GridFee if p.from == me => &mut self.network_fees,
                PostingKind::DailyFee if p.from == me => &mut self.daily_fee,
                _ => continue,
            };
            *sum = sum.checked_add(p.amount)?;
        }
        self.imbalance_amount = long.checked_sub(short)?;
        self.net_amount = self
            .market_received
            .checked_sub(self.market_paid)?
            .checked_add(self.imbalance_amount)?
            .checked_sub(self.network_fees)?
            .checked_sub(self.daily_fee)?;
        Some(self)
    }
}

impl Account {
    /// Parses [`Account::name`] back.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "market" => Some(Account::Market),
            "utility" => Some(Account::Utility),
            "network" => Some(Account::Network),
            other => other.strip_prefix("site:")?.parse().ok().map(Account::Site),
        }
    }
}

impl PostingKind {
    /// Parses [`PostingKind::as_str`] back.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        [
            PostingKind::TradePurchase,
            PostingKind::TradeSale,
            PostingKind::TradeFee,
            PostingKind::ImbalanceLong,
            PostingKind::ImbalanceShort,
            PostingKind::GridFee,
            PostingKind::DailyFee,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// The adjusting postings that take a ledger holding `posted` (every revision so far) to the
/// postings of a new settlement: per pair of accounts and kind, the difference, in whichever
/// direction it runs. Nothing posted is ever changed; the sum of `posted` and the result equals
/// `target` per pair and kind, and still balances.
#[must_use]
pub fn adjustments(posted: &[Posting], target: &[Posting]) -> Vec<Posting> {
    // Net flow per (lower account, higher account, kind), positive from lower to higher.
    let mut net: BTreeMap<(Account, Account, PostingKind), i64> = BTreeMap::new();
    let mut add = |p: &Posting, sign: i64| {
        let (key, dir) =
            if p.from < p.to { ((p.from, p.to, p.kind), 1) } else { ((p.to, p.from, p.kind), -1) };
        *net.entry(key).or_default() += sign * dir * p.amount;
    };
    for p in target {
        add(p, 1);
    }
    for p in posted {
        add(p, -1);
    }
    net.into_iter()
        .filter(|(_, v)| *v != 0)
        .map(|((a, b, kind), v)| {
            if v > 0 {
                Posting { from: a, to: b, amount: v, kind }
            } else {
                Posting { from: b, to: a, amount: -v, kind }
            }
        })
        .collect()
}
