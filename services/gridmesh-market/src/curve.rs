//! Net-export curves: how much energy a zone (or a subtree of zones) sells beyond what it buys,
//! as a function of the price.
//!
//! For integer prices, `F(p) = S≤(p) − D>(p)`: the offers priced at or below `p` minus the bids
//! priced above `p`. An order priced exactly at `p` is indifferent there, so at price `p` the
//! net export may be anything in `[F(p − 1), F(p)]`. `F` is a non-decreasing step function, and
//! sums and clamps of such curves keep that shape, which is all the tree clearing needs.

/// A non-decreasing step function of an integer price.
///
/// `value(p) = start` for `p` below the first point, else the value of the last point whose
/// price is `≤ p`. Point prices are strictly increasing and values never decrease.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Curve {
    start: i64,
    points: Vec<(i64, i64)>,
}

impl Curve {
    /// The curve of one zone's own orders: `(price, energy, is_bid)` in any order.
    ///
    /// Every order adds its energy at its own price: an offer sells from its price upwards, and a
    /// bid, counted as demand below its price, drops out of `D>` at its price.
    pub(crate) fn from_orders(orders: impl IntoIterator<Item = (i64, i64, bool)>) -> Self {
        let mut steps: Vec<(i64, i64)> = Vec::new();
        let mut start = 0_i64;
        for (price, energy, is_bid) in orders {
            if is_bid {
                start -= energy;
            }
            steps.push((price, energy));
        }
        steps.sort_unstable_by_key(|s| s.0);
        let mut points: Vec<(i64, i64)> = Vec::with_capacity(steps.len());
        let mut value = start;
        for (price, energy) in steps {
            value += energy;
            match points.last_mut() {
                Some(last) if last.0 == price => last.1 = value,
                _ => points.push((price, value)),
            }
        }
        Self { start, points }
    }

    /// The value at price `p`.
    pub(crate) fn at(&self, p: i64) -> i64 {
        let idx = self.points.partition_point(|(q, _)| *q <= p);
        if idx == 0 { self.start } else { self.points[idx - 1].1 }
    }

    /// The lowest price whose value is `≥ v` (`i64::MIN` when even the start is; `i64::MAX`
    /// when no price reaches it).
    pub(crate) fn lowest_price_reaching(&self, v: i64) -> i64 {
        if self.start >= v {
            return i64::MIN;
        }
        let idx = self.points.partition_point(|(_, value)| *value < v);
        self.points.get(idx).map_or(i64::MAX, |p| p.0)
    }

    /// The prices at which net export `x` is possible: `{p : F(p − 1) ≤ x ≤ F(p)}`, as a closed
    /// interval with `i64::MIN`/`i64::MAX` for an open end.
    pub(crate) fn prices_for(&self, x: i64) -> (i64, i64) {
        let lo = self.lowest_price_reaching(x);
        // F(p − 1) ≤ x  ⇔  p ≤ (the lowest price where F exceeds x).
        let hi = match x.checked_add(1) {
            Some(above) => self.lowest_price_reaching(above),
            None => i64::MAX,
        };
        (lo, hi)
    }

    /// This curve limited to `[lo, hi]`.
    pub(crate) fn clamp(&self, lo: i64, hi: i64) -> Self {
        let start = self.start.clamp(lo, hi);
        let mut points: Vec<(i64, i64)> = Vec::new();
        let mut last = start;
        for &(price, value) in &self.points {
            let v = value.clamp(lo, hi);
            if v != last {
                points.push((price, v));
                last = v;
            }
        }
        Self { start, points }
    }

    /// The pointwise sum of two curves.
    pub(crate) fn add(&self, other: &Self) -> Self {
        let (a, b) = (&self.points, &other.points);
        let mut points = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        let (mut va, mut vb) = (self.start, other.start);
        while i < a.len() || j < b.len() {
            let pa = a.get(i).map_or(i64::MAX, |p| p.0);
            let pb = b.get(j).map_or(i64::MAX, |p| p.0);
            let price = pa.min(pb);
            if pa == price {
                va = a[i].1;
                i += 1;
            }
            if pb == price {
                vb = b[j].1;
                j += 1;
            }
            points.push((price, va + vb));
        }
        Self { start: self.start + other.start, points }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zone_curve_counts_offers_at_or_below_and_bids_above() {
        // Offer 100 Wh at 10, bid 60 Wh at 20.
        let c = Curve::from_orders([(10, 100, false), (20, 60, true)]);
        assert_eq!(c.at(9), -60);
        assert_eq!(c.at(10), 40);
        assert_eq!(c.at(19), 40);
        assert_eq!(c.at(20), 100);
        // Balance needs the offer partly filled, so the price is its limit: above 10 it would
        // sell all 100 Wh to a bid of 60.
        assert_eq!(c.prices_for(0), (10, 10));
        // Exporting 40 Wh (the bid filled, the offer too) works anywhere from 10 to 20.
        assert_eq!(c.prices_for(40), (10, 20));
        assert_eq!(c.prices_for(100), (20, i64::MAX));
        assert_eq!(c.prices_for(-60), (i64::MIN, 10));
    }

    #[test]
    fn sums_and_clamps_keep_the_step_shape() {
        let a = Curve::from_orders([(10, 100, false)]);
        let b = Curve::from_orders([(15, 50, true), (10, 5, true)]);
        let s = a.add(&b);
        assert_eq!(s.at(5), -55);
        assert_eq!(s.at(10), 50);
        assert_eq!(s.at(15), 100);
        let c = s.clamp(-20, 30);
        assert_eq!(c.at(5), -20);
        assert_eq!(c.at(12), 30);
        assert_eq!(c.points.len(), 1);
    }
}
