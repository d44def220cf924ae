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
    /// Flagged readings left out: trades settled, imbalance and grid fee wait for review.
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
/// # Errors
/// A site listed twice, a trade with a site not listed, negative energy or prices, overflow.
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
    let mut postings: Vec<Posting> = Vec::new();
    let mut post = |from: Account, to: Account, amount: i64, kind: PostingKind| {
        if amount > 0 {
            postings.push(Posting { from, to, amount, kind });
        }
    };
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
        *sold.entry(tr.seller).or_default() += e;
        *bought.entry(tr.buyer).or_default() += e;
        let of = |price| amount(e, price).ok_or(SettleError::Overflow);
        post(Account::Site(tr.buyer), Account::Market, of(tr.buyer_price)?, PostingKind::TradePurchase);
        post(Account::Market, Account::Site(tr.seller), of(tr.seller_price)?, PostingKind::TradeSale);
        post(Account::Site(tr.buyer), Account::Network, of(tr.grid_fee_per_kwh)?, PostingKind::TradeFee);
    }
    let first_of_day = input.period.index().rem_euclid(gridmesh_core::period::PERIODS_PER_UTC_DAY) == 0;
    let mut total_wh = 0_i64;
    for (&site, metering) in &sites {
        let position = sold.get(&site).copied().unwrap_or(0) - bought.get(&site).copied().unwrap_or(0);
        if let Metering::Measured { imported, exported } = *metering {
            if imported.get() < 0 || exported.get() < 0 {
                return Err(SettleError::Negative("metered energy"));
            }
            total_wh = total_wh.checked_add(imported.get() + exported.get()).ok_or(SettleError::Overflow)?;
            let imbalance = exported.get() - imported.get() - position;
            if imbalance > 0 {
                let a = amount(imbalance, t.feed_in_price).ok_or(SettleError::Overflow)?;
                post(Account::Utility, Account::Site(site), a, PostingKind::ImbalanceLong);
            } else {
                let a = amount(-imbalance, t.import_price).ok_or(SettleError::Overflow)?;
                post(Account::Site(site), Account::Utility, a, PostingKind::ImbalanceShort);
            }
            let fee = amount(imported.get(), t.grid_fee_per_kwh).ok_or(SettleError::Overflow)?;
            post(Account::Site(site), Account::Network, fee, PostingKind::GridFee);
        }
        if first_of_day {
            post(Account::Site(site), Account::Network, t.daily_fee, PostingKind::DailyFee);
        }
    }
    postings.sort_by_key(|p| (p.kind, p.from, p.to, p.amount));

    // Each line is its site's share of the postings.
    let lines: Vec<Line> = sites
        .iter()
        .map(|(&site, metering)| {
            let me = Account::Site(site);
            let sum = |f: &dyn Fn(&Posting) -> bool| {
                postings.iter().filter(|p| f(p)).map(|p| p.amount).sum::<i64>()
            };
            let market_received = sum(&|p| p.to == me && p.kind == PostingKind::TradeSale);
            let market_paid = sum(&|p| p.from == me && p.kind == PostingKind::TradePurchase);
            let imbalance_amount = sum(&|p| p.to == me && p.kind == PostingKind::ImbalanceLong)
                - sum(&|p| p.from == me && p.kind == PostingKind::ImbalanceShort);
            let network_fees =
                sum(&|p| p.from == me && matches!(p.kind, PostingKind::TradeFee | PostingKind::GridFee));
            let daily_fee = sum(&|p| p.from == me && p.kind == PostingKind::DailyFee);
            let (status, imported_wh, exported_wh) = match *metering {
                Metering::Measured { imported, exported } => {
                    (LineStatus::Metered, imported.get(), exported.get())
                }
                Metering::Flagged => (LineStatus::Flagged, 0, 0),
                Metering::Missing => (LineStatus::Missing, 0, 0),
            };
            let sold_wh = sold.get(&site).copied().unwrap_or(0);
            let bought_wh = bought.get(&site).copied().unwrap_or(0);
            Line {
                period: input.period,
                site,
                status,
                imported_wh,
                exported_wh,
                sold_wh,
                bought_wh,
                imbalance_wh: if status == LineStatus::Metered {
                    exported_wh - imported_wh - (sold_wh - bought_wh)
                } else {
                    0
                },
                market_received,
                market_paid,
                imbalance_amount,
                network_fees,
                daily_fee,
                net_amount: market_received - market_paid + imbalance_amount - network_fees - daily_fee,
            }
        })
        .collect();
    let tree = Tree::new(lines.iter().map(Line::leaf).collect());
    Ok(Settlement { period: input.period, lines, postings, tree, total_wh })
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
