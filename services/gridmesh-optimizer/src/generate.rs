//! Deterministic random instances that look like a day in a residential neighbourhood: for tests,
//! the benchmark and demos.
//!
//! The same seed and sizes always give the same instance (a fixed pseudo-random sequence, no
//! dependency on the platform or a random crate).

use crate::instance::{Battery, GridNode, Instance, Penalties, RequestKind, Site, Tariff, UtilityRequest};

/// Feeders per transformer in [`neighbourhood`].
pub const FEEDERS_PER_TRANSFORMER: usize = 8;

/// A summer day (96 steps of 15 minutes from midnight) in a neighbourhood of `sites` households
/// spread evenly over `feeders` feeders (at least one), grouped under transformers of up to
/// [`FEEDERS_PER_TRANSFORMER`] feeders below one area root.
///
/// * PV on about 70% of the sites (3-10 kWp), a bell curve from 06:00 to 20:00 dimmed by passing
///   clouds shared by the area;
/// * loads with a morning and a larger evening peak, an EV charging in the evening at about 12%;
/// * a battery at about 60% (5-13.5 kWh, half-C, 95% efficiency each way), half of them asked
///   to end the day where they started;
/// * time-of-use import prices (expensive 17:00-21:00), a flat feed-in price;
/// * feeder limits at 60% of the feeder's import peak and 55% of its export peak without
///   flexibility, so both bind (evening and midday); transformer limits at 85%;
/// * an area cap over 17:00-21:00 at 55% of the area's evening peak, priced 1 per kW per step;
/// * a market commitment to export 1-2 kW over 11:00-14:00 at about 20% of the PV sites.
#[must_use]
pub fn neighbourhood(seed: u64, sites: usize, feeders: usize) -> Instance {
    let feeders = feeders.max(1);
    let steps = 96;
    let dt_h = 0.25;
    let hour = |t: usize| (t as f64 + 0.5) * dt_h;
    let mut rng = Rng::new(seed);

    // Clouds pass over the whole area: a few dips of random depth and width.
    let mut cloud = vec![1.0_f64; steps];
    let passages = 2 + rng.below(5);
    for _ in 0..passages {
        let center = 8.0 + 10.0 * rng.unit();
        let width = 0.3 + 1.2 * rng.unit();
        let depth = 0.2 + 0.6 * rng.unit();
        for (t, c) in cloud.iter_mut().enumerate() {
            let x = (hour(t) - center) / width;
            *c *= 1.0 - depth * (-x * x).exp();
        }
    }

    let transformers = feeders.div_ceil(FEEDERS_PER_TRANSFORMER);
    let mut site_list = Vec::with_capacity(sites);
    for i in 0..sites {
        let feeder = i * feeders / sites.max(1);
        site_list.push(household(&mut rng, i, feeder, steps, &cloud, hour));
    }

    // Limits from the uncontrolled net (load - pv) of each feeder and transformer.
    let mut feeder_net = vec![vec![0.0; steps]; feeders];
    for (i, s) in site_list.iter().enumerate() {
        let f = i * feeders / sites.max(1);
        for ((n, l), p) in feeder_net[f].iter_mut().zip(&s.load_kw).zip(&s.pv_kw) {
            *n += l - p;
        }
    }
    let peaks = |net: &[f64]| {
        let imp = net.iter().copied().fold(0.0_f64, f64::max);
        let exp = net.iter().map(|v| -v).fold(0.0_f64, f64::max);
        (imp, exp)
    };
    let limit = |peak: f64, share: f64| (peak > 0.0).then(|| round1(share * peak));

    let mut nodes = vec![GridNode {
        id: "area".into(),
        parent: None,
        import_limit_kw: None,
        export_limit_kw: None,
        limit_windows: Vec::new(),
    }];
    let mut area_net = vec![0.0; steps];
    for tr in 0..transformers {
        let mut net = vec![0.0; steps];
        for net_f in feeder_net.iter().skip(tr * FEEDERS_PER_TRANSFORMER).take(FEEDERS_PER_TRANSFORMER) {
            for t in 0..steps {
                net[t] += net_f[t];
                area_net[t] += net_f[t];
            }
        }
        let (imp, exp) = peaks(&net);
        nodes.push(GridNode {
            id: format!("t{tr}"),
            parent: Some("area".into()),
            import_limit_kw: limit(imp, 0.85),
            export_limit_kw: limit(exp, 0.85),
            limit_windows: Vec::new(),
        });
    }
    for (f, net) in feeder_net.iter().enumerate() {
        let (imp, exp) = peaks(net);
        nodes.push(GridNode {
            id: format!("f{f}"),
            parent: Some(format!("t{}", f / FEEDERS_PER_TRANSFORMER)),
            import_limit_kw: limit(imp, 0.6),
            export_limit_kw: limit(exp, 0.55),
            limit_windows: Vec::new(),
        });
    }

    let evening = (17 * 4, 21 * 4);
    let evening_peak = area_net[evening.0..evening.1].iter().copied().fold(0.0_f64, f64::max);
    let requests = vec![UtilityRequest {
        id: "evening-cap".into(),
        node: None,
        kind: RequestKind::Cap,
        kw: round1(0.55 * evening_peak),
        from_step: evening.0,
        to_step: evening.1,
        price_per_kw: 1.0,
    }];

    let import_price = (0..steps)
        .map(|t| {
            let h = hour(t);
            let base = if h < 6.0 {
                0.22
            } else if (17.0..21.0).contains(&h) {
                0.42
            } else {
                0.30
            };
            // A little day-ahead wiggle so no two steps tie exactly.
            round4(base + 0.01 * (t as f64 * 0.7).sin())
        })
        .collect();
    Instance {
        step_minutes: 15,
        steps,
        nodes,
        sites: site_list,
        tariff: Tariff { import_price, feed_in_price: vec![0.08; steps], imbalance_price: vec![0.6; steps] },
        requests,
        penalties: Penalties::default(),
    }
}

fn household(
    rng: &mut Rng,
    i: usize,
    feeder: usize,
    steps: usize,
    cloud: &[f64],
    hour: impl Fn(usize) -> f64,
) -> Site {
    let kwp = if rng.unit() < 0.7 { 3.0 + 7.0 * rng.unit() } else { 0.0 };
    let pv_kw: Vec<f64> = (0..steps)
        .map(|t| {
            let h = hour(t);
            let shape = if (6.0..20.0).contains(&h) {
                (std::f64::consts::PI * (h - 6.0) / 14.0).sin().powf(1.3)
            } else {
                0.0
            };
            round3((0.85 * kwp * shape * cloud[t] * (1.0 + 0.05 * rng.signed())).max(0.0))
        })
        .collect();

    let base = 0.2 + 0.3 * rng.unit();
    let morning = 0.5 + rng.unit();
    let evening = 1.5 + 2.0 * rng.unit();
    let evening_at = 18.5 + rng.unit();
    let ev = rng.unit() < 0.12;
    let ev_start = 17.5 + 2.0 * rng.unit();
    let ev_hours = 2.0 + rng.unit();
    let load_kw: Vec<f64> = (0..steps)
        .map(|t| {
            let h = hour(t);
            let bump = |at: f64, width: f64| (-((h - at) / width).powi(2)).exp();
            let mut kw = base + morning * bump(7.5, 1.0) + evening * bump(evening_at, 1.5);
            kw += 0.3 * bump(12.5, 1.0);
            kw *= 1.0 + 0.15 * rng.signed();
            if ev && h >= ev_start && h < ev_start + ev_hours {
                kw += 7.4;
            }
            round3(kw.max(0.0))
        })
        .collect();

    let battery = (rng.unit() < 0.6).then(|| {
        let capacity = [5.0, 7.5, 10.0, 13.5][rng.below(4)];
        let power = capacity / 2.0;
        let initial = round3(capacity * (0.3 + 0.3 * rng.unit()));
        Battery {
            capacity_kwh: capacity,
            max_charge_kw: power,
            max_discharge_kw: power,
            charge_efficiency: 0.95,
            discharge_efficiency: 0.95,
            soc_min_kwh: 0.1 * capacity,
            soc_max_kwh: capacity,
            initial_soc_kwh: initial,
            final_soc_min_kwh: (rng.unit() < 0.5).then_some(initial),
            degradation_cost_per_kwh: 0.03,
            terminal_value_per_kwh: 0.0,
        }
    });

    let commitment_kw = (kwp > 0.0 && rng.unit() < 0.2).then(|| {
        let kw = round1(1.0 + rng.unit());
        (0..steps).map(|t| (44..56).contains(&t).then_some(kw)).collect()
    });

    Site {
        id: format!("s{i}"),
        node: format!("f{feeder}"),
        pv_kw,
        load_kw,
        import_limit_kw: if ev { 24.0 } else { [11.0, 17.0][rng.below(2)] },
        export_limit_kw: if kwp > 0.0 { round1((0.7 * kwp).max(4.6)) } else { 4.6 },
        battery,
        commitment_kw,
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// SplitMix64: small, fast and fixed, so generated instances never change between versions.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed ^ 0x6A09_E667_F3BC_C909)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1_u64 << 53) as f64
    }

    /// Uniform in [-1, 1).
    fn signed(&mut self) -> f64 {
        2.0 * self.unit() - 1.0
    }

    /// Uniform in 0..n.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
