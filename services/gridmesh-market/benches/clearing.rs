//! Clearing benchmark: 100,000 orders across 20 zones (a transformer over 4 transformers over
//! 15 feeders) in one period, with limits that bind on some links.
//!
//! `cargo bench -p gridmesh-market --bench clearing` prints the time of each run, the median and
//! the peak resident memory of the process (VmHWM).

#![allow(clippy::unwrap_used, clippy::print_stdout, reason = "a benchmark binary")]

use std::time::Instant;

use chrono::{TimeZone, Utc};
use gridmesh_core::{GridNodeId, OrderId, SiteId, WattHours};
use gridmesh_market::{Network, Order, Rules, Side, Zone, clear};

fn id(n: u64) -> [u8; 16] {
    let mut b = [0_u8; 16];
    b[8..].copy_from_slice(&n.to_be_bytes());
    b
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() {
    let orders_n: usize = std::env::var("ORDERS").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let runs: usize = std::env::var("RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    // 1 root transformer, 4 transformers, 15 feeders = 20 zones.
    let mut zones = vec![Zone {
        id: GridNodeId::from_bytes(id(1)),
        parent: None,
        import_limit: WattHours(0),
        export_limit: WattHours(0),
        fee_per_kwh: 1,
    }];
    for t in 0..4_u64 {
        zones.push(Zone {
            id: GridNodeId::from_bytes(id(10 + t)),
            parent: Some(GridNodeId::from_bytes(id(1))),
            import_limit: WattHours(2_000_000),
            export_limit: WattHours(1_500_000),
            fee_per_kwh: 1,
        });
    }
    let feeders: Vec<GridNodeId> = (0..15_u64).map(|f| GridNodeId::from_bytes(id(100 + f))).collect();
    for (f, fid) in feeders.iter().enumerate() {
        zones.push(Zone {
            id: *fid,
            parent: Some(GridNodeId::from_bytes(id(10 + (f as u64 % 4)))),
            // Every third feeder is weak, so its link binds.
            import_limit: WattHours(if f.is_multiple_of(3) { 50_000 } else { 900_000 }),
            export_limit: WattHours(if f.is_multiple_of(3) { 40_000 } else { 700_000 }),
            fee_per_kwh: 2,
        });
    }
    let net = Network::new(zones).unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut rnd = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let base = Utc.timestamp_opt(1_790_000_000, 0).unwrap();
    let orders: Vec<Order> = (0..orders_n as u64)
        .map(|k| {
            let feeder = rnd(15) as usize;
            let side = if rnd(2) == 0 { Side::Buy } else { Side::Sell };
            // Sellers cluster around 10-20, buyers around 15-30 (minor units per kWh), with
            // the cheap feeders selling lower.
            let price = match side {
                Side::Sell => 8 + rnd(14) as i64 - if feeder.is_multiple_of(3) { 4 } else { 0 },
                Side::Buy => 14 + rnd(18) as i64,
            };
            Order {
                id: OrderId::from_bytes(id(1_000_000 + k)),
                site: SiteId::from_bytes(id(k / 2)),
                zone: feeders[feeder],
                side,
                price,
                energy: WattHours(50 + rnd(2_000) as i64),
                submitted_at: base + chrono::Duration::milliseconds(rnd(600_000) as i64),
            }
        })
        .collect();

    let mut times = Vec::new();
    let mut last = None;
    for run in 0..runs {
        let started = Instant::now();
        let c = clear(&net, &orders, Rules::default()).unwrap();
        let secs = started.elapsed().as_secs_f64();
        println!("run {run}: {:.1} ms, {} trades, {} Wh traded", secs * 1e3, c.trades.len(), c.volume.get());
        times.push(secs);
        last = Some(c);
    }
    times.sort_by(f64::total_cmp);
    let c = last.unwrap();
    let congested = c.zones.iter().filter(|z| z.congested).count();
    let prices: Vec<i64> = c.zones.iter().filter_map(|z| z.price).collect();
    println!(
        "clearing {orders_n} orders across {} zones: median {:.1} ms (min {:.1} ms) over {runs} runs; \
         {congested} congested links; zone prices {}..{}; peak RSS {:.0} MB",
        net.zones().len(),
        times[times.len() / 2] * 1e3,
        times[0] * 1e3,
        prices.iter().min().copied().unwrap_or_default(),
        prices.iter().max().copied().unwrap_or_default(),
        peak_rss_mb().unwrap_or(f64::NAN),
    );
}
