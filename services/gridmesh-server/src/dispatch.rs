//! The closed loop: every step (15 minutes by default) and whenever a utility request is added
//! or withdrawn, load the grid's state from PostgreSQL (topology, sites, latest states of
//! charge, forecasts, requests, market commitments), solve the balancing LP with the structured
//! interior-point solver, store the plan with the hash of its inputs, and publish the current
//! step's setpoints, signed, to each site's agent. The agents' answers are stored beside the
//! setpoints. If a solve fails or runs late, the previous plan's setpoints continue for their
//! step; past it, the agents' revert timers hand the devices back to their own logic.
//!
//! [`build_instance`] and [`setpoints_for_step`] are plain functions over plain data; [`run`]
//! does the IO.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use gridmesh_core::forecast::{Baseline, Forecaster, PastPeriod};
use gridmesh_core::{CommandId, Period, Setpoint, Site, SiteId, Timestamp, Topology, Watts};
use gridmesh_db::{DispatchSetpoint, Pool, RequestKind, StoredReading, UtilityRequest};
use gridmesh_optimizer::{Battery, Instance, Plan, Tariff};
use gridmesh_wire::topics::{self, Channel};
use gridmesh_wire::{Ack, KeyPair, Message, SetpointOutcome};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::watch;

use crate::config::MqttUrl;

/// How the loop plans.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// Length of a step.
    pub step: chrono::Duration,
    /// Steps in the horizon.
    pub steps: usize,
    /// How often the loop looks for work.
    pub tick: Duration,
    /// Import price, minor units per kWh.
    pub import_price: f64,
    /// Feed-in price, minor units per kWh.
    pub feed_in_price: f64,
    /// Price of deviating from a market commitment, minor units per kWh.
    pub imbalance_price: f64,
    /// Battery wear, minor units per kWh of throughput.
    pub degradation_per_kwh: f64,
    /// Lowest state of charge the plan uses, percent of capacity.
    pub soc_min_pct: f64,
    /// Highest state of charge the plan uses, percent of capacity.
    pub soc_max_pct: f64,
    /// Charging efficiency.
    pub charge_efficiency: f64,
    /// Discharging efficiency.
    pub discharge_efficiency: f64,
    /// Price of exceeding a node limit or a site connection, minor units per kWh.
    pub violation_price: f64,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self {
            step: chrono::Duration::minutes(15),
            steps: 96,
            tick: Duration::from_secs(5),
            import_price: 30.0,
            feed_in_price: 8.0,
            imbalance_price: 30.0,
            degradation_per_kwh: 2.0,
            soc_min_pct: 10.0,
            soc_max_pct: 95.0,
            charge_efficiency: 0.95,
            discharge_efficiency: 1.0,
            violation_price: 1_000.0,
        }
    }
}

impl DispatchSettings {
    /// Settings from the command line.
    #[must_use]
    pub fn from_args(args: &crate::config::DispatchArgs, settlement: &crate::config::SettlementArgs) -> Self {
        Self {
            step: chrono::Duration::seconds(i64::from(args.dispatch_step_seconds)),
            steps: args.dispatch_steps as usize,
            import_price: settlement.tariff_import as f64,
            feed_in_price: settlement.tariff_feed_in as f64,
            imbalance_price: settlement.tariff_import as f64,
            degradation_per_kwh: args.dispatch_degradation as f64,
            ..Self::default()
        }
    }

    /// What a kWh left in a battery at the horizon's end is worth to the plan: halfway between
    /// what it earns exported and what it saves covering the home's own load later, less wear.
    /// Below the second, a battery still covers its home's load near the horizon's end; above
    /// the first, it does not empty itself into the grid just because the horizon ends there.
    #[must_use]
    pub fn terminal_value_per_kwh(&self) -> f64 {
        let mid = f64::midpoint(self.import_price, self.feed_in_price.min(self.import_price));
        (mid * self.discharge_efficiency - self.degradation_per_kwh).max(0.0)
    }

    fn step_hours(&self) -> f64 {
        self.step.num_milliseconds() as f64 / 3_600_000.0
    }
}

/// The start of the step `at` falls in (steps are aligned to the Unix epoch).
#[must_use]
pub fn step_start(at: Timestamp, step: chrono::Duration) -> Timestamp {
    let ms = step.num_milliseconds().max(1);
    let t = at.timestamp_millis();
    DateTime::from_timestamp_millis(t - t.rem_euclid(ms)).unwrap_or(at)
}

/// One site as the optimizer sees it.
#[derive(Debug, Clone)]
pub struct SiteState {
    /// The site.
    pub site: Site,
    /// Its 15-minute history, oldest first.
    pub history: Vec<PastPeriod>,
    /// Its latest reading.
    pub latest: Option<StoredReading>,
    /// Net export it committed to on the market, Wh per period.
    pub commitments: BTreeMap<Period, i64>,
}

/// Everything a plan is made from.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// Start of the first step.
    pub start: Timestamp,
    /// When the inputs were read (the latest readings' freshness is judged against it).
    pub now: Timestamp,
    /// The grid tree.
    pub topology: Topology,
    /// The sites, ordered by id.
    pub sites: Vec<SiteState>,
    /// Requests in force in the horizon.
    pub requests: Vec<UtilityRequest>,
}

/// A reading this recent is the first step's forecast (persistence beats a profile for the
/// next minutes).
const FRESH: chrono::Duration = chrono::Duration::minutes(2);

fn kw(w: i64) -> f64 {
    w as f64 / 1_000.0
}

/// The optimizer instance for `inputs` (site and node ids are their UUIDs).
#[must_use]
pub fn build_instance(inputs: &Inputs, settings: &DispatchSettings) -> Instance {
    let steps = settings.steps;
    let hours = settings.step_hours();
    let step_at = |t: usize| inputs.start + settings.step * i32::try_from(t).unwrap_or(i32::MAX);
    let nodes = inputs
        .topology
        .top_down()
        .into_iter()
        .filter_map(|id| inputs.topology.node(id))
        .map(|n| gridmesh_optimizer::GridNode {
            id: n.id.0.to_string(),
            parent: n.parent.map(|p| p.0.to_string()),
            import_limit_kw: Some(kw(n.import_limit.get())),
            export_limit_kw: Some(kw(n.export_limit.get())),
        })
        .collect();
    let sites = inputs
        .sites
        .iter()
        .filter_map(|s| {
            let node = inputs.topology.feeder_of(s.site.id)?;
            let mut pv_kw = Vec::with_capacity(steps);
            let mut load_kw = Vec::with_capacity(steps);
            for t in 0..steps {
                let f = Baseline.forecast(&s.site, &s.history, Period::containing(step_at(t)));
                // Energy in a 15-minute period, as average power.
                pv_kw.push((f.pv.get() as f64 * 4.0 / 1_000.0).max(0.0));
                load_kw.push((f.load.get() as f64 * 4.0 / 1_000.0).max(0.0));
            }
            let latest = s.latest.as_ref().map(|l| &l.reading);
            if let Some(r) = latest.filter(|r| inputs.now - r.at <= FRESH)
                && let (Some(grid), Some(pv)) = (r.grid_power, r.pv_power)
                && steps > 0
            {
                let load = grid.get() + pv.get() - r.battery_power.map_or(0, Watts::get);
                pv_kw[0] = kw(pv.get().max(0));
                load_kw[0] = kw(load.max(0));
            }
            let battery = s.site.battery.filter(|b| b.capacity.get() > 0).map(|b| {
                let cap = b.capacity.get() as f64 / 1_000.0;
                let (lo, hi) = (cap * settings.soc_min_pct / 100.0, cap * settings.soc_max_pct / 100.0);
                let soc = latest.and_then(|r| r.battery_soc).map_or(0.5, |s| s.percent() / 100.0) * cap;
                Battery {
                    capacity_kwh: cap,
                    max_charge_kw: kw(b.max_charge.get()),
                    max_discharge_kw: kw(b.max_discharge.get()),
                    charge_efficiency: settings.charge_efficiency,
                    discharge_efficiency: settings.discharge_efficiency,
                    soc_min_kwh: lo,
                    soc_max_kwh: hi,
                    // Outside the plan's band (the device's own logic went further): start at
                    // its edge.
                    initial_soc_kwh: soc.clamp(lo, hi),
                    final_soc_min_kwh: None,
                    degradation_cost_per_kwh: settings.degradation_per_kwh,
                    terminal_value_per_kwh: settings.terminal_value_per_kwh(),
                }
            });
            let commitment_kw = (!s.commitments.is_empty()).then(|| {
                (0..steps)
                    .map(|t| {
                        s.commitments
                            .get(&Period::containing(step_at(t)))
                            .map(|wh| *wh as f64 * 4.0 / 1_000.0)
                    })
                    .collect()
            });
            Some(gridmesh_optimizer::Site {
                id: s.site.id.0.to_string(),
                node: node.0.to_string(),
                pv_kw,
                load_kw,
                import_limit_kw: kw(s.site.grid.import_limit.get()),
                export_limit_kw: kw(s.site.grid.export_limit.get()),
                battery,
                commitment_kw,
            })
        })
        .collect();
    let end = step_at(steps);
    let step_of = |t: Timestamp| -> usize {
        let ms = (t - inputs.start).num_milliseconds().max(0);
        let step_ms = settings.step.num_milliseconds().max(1);
        usize::try_from(ms / step_ms).unwrap_or(usize::MAX).min(steps)
    };
    let requests = inputs
        .requests
        .iter()
        .filter(|r| r.request.ends_at > inputs.start && r.request.starts_at < end)
        .filter_map(|r| {
            let from = step_of(r.request.starts_at);
            // A window ending inside a step still covers that step.
            let to = step_of(r.request.ends_at - chrono::Duration::milliseconds(1)) + 1;
            (from < to.min(steps)).then(|| gridmesh_optimizer::UtilityRequest {
                id: r.id.to_string(),
                node: r.request.node.map(|n| n.0.to_string()),
                kind: match r.request.kind {
                    RequestKind::Target => gridmesh_optimizer::RequestKind::Target,
                    RequestKind::Cap => gridmesh_optimizer::RequestKind::Cap,
                    RequestKind::Floor => gridmesh_optimizer::RequestKind::Floor,
                },
                kw: kw(r.request.power_w),
                from_step: from,
                to_step: to.min(steps),
                price_per_kw: r.request.price_minor_per_kwh as f64 * hours,
            })
        })
        .collect();
    Instance {
        step_minutes: u32::try_from(settings.step.num_minutes().max(1)).unwrap_or(15),
        steps,
        nodes,
        sites,
        tariff: Tariff {
            import_price: vec![settings.import_price; steps],
            feed_in_price: vec![settings.feed_in_price.min(settings.import_price); steps],
            imbalance_price: vec![settings.imbalance_price; steps],
        },
        requests,
        penalties: gridmesh_optimizer::Penalties {
            node_violation_per_kwh: settings.violation_price,
            site_overload_per_kwh: settings.violation_price,
            ..gridmesh_optimizer::Penalties::default()
        },
    }
}

/// The setpoints of step `t` of `plan` (sites with a battery or curtailment), each valid from
/// `from` to the end of the step plus a grace (half a step, at most a minute), with the grid
/// power the plan expects meanwhile.
#[must_use]
pub fn setpoints_for_step(
    plan: &Plan,
    instance: &Instance,
    start: Timestamp,
    step: chrono::Duration,
    t: usize,
    from: Timestamp,
) -> Vec<(Setpoint, i64)> {
    // Valid a little past the step's end, so that the device does not fall back to its own
    // logic for the moment between this step's end and the next setpoint's arrival; the next
    // setpoint replaces it.
    let grace = (step / 2).min(chrono::Duration::seconds(60));
    let until = start + step * i32::try_from(t + 1).unwrap_or(i32::MAX) + grace;
    let w = |kw: f64| Watts((kw * 1_000.0).round() as i64);
    plan.sites
        .iter()
        .zip(&instance.sites)
        .filter_map(|(p, s)| {
            let site = s.id.parse::<uuid::Uuid>().ok().map(SiteId)?;
            let (charge, discharge, curtail) =
                (*p.charge_kw.get(t)?, *p.discharge_kw.get(t)?, *p.curtail_kw.get(t)?);
            let battery = s.battery.as_ref().map(|_| w(charge - discharge));
            let pv = *s.pv_kw.get(t)?;
            let pv_limit = (curtail > 0.01).then(|| w((pv - curtail).max(0.0)));
            if battery.is_none() && pv_limit.is_none() {
                return None;
            }
            let planned = w(p.import_kw.get(t)? - p.export_kw.get(t)?).get();
            let sp = Setpoint {
                command: CommandId::new_random(),
                site,
                issued_at: from,
                valid_from: from,
                valid_until: until,
                // Past its window (or a minute after, were the clock off) the device is on its own.
                revert_after_secs: u32::try_from((until - from).num_seconds().max(1) + 60)
                    .unwrap_or(u32::MAX),
                battery_power: battery,
                pv_limit,
                import_limit: None,
                export_limit: None,
            };
            Some((sp, planned))
        })
        .collect()
}

/// Reads the inputs from the database.
///
/// # Errors
/// Database errors.
pub async fn load_inputs(pool: &Pool, settings: &DispatchSettings, now: Timestamp) -> anyhow::Result<Inputs> {
    let start = step_start(now, settings.step);
    let end = start + settings.step * i32::try_from(settings.steps).unwrap_or(i32::MAX);
    let topology = gridmesh_db::load_topology(pool).await.context("loading the grid topology")?;
    let mut ids: Vec<SiteId> =
        topology.nodes().flat_map(|n| topology.sites_on(n.id).iter().copied()).collect();
    ids.sort();
    let sites = gridmesh_db::get_sites(pool, &ids).await.context("loading the sites")?;
    let mut commitments: HashMap<SiteId, BTreeMap<Period, i64>> = HashMap::new();
    let mut p = Period::containing(start);
    while p.start() < end {
        for c in gridmesh_db::delivery_commitments(pool, p).await.context("loading market commitments")? {
            commitments.entry(c.site).or_default().insert(p, c.net_wh);
        }
        p = p.next();
    }
    let mut states = Vec::with_capacity(sites.len());
    for site in sites {
        let (history, latest) =
            crate::forecast::site_history(pool, &site, now).await.context("loading a site's history")?;
        let commitments = commitments.remove(&site.id).unwrap_or_default();
        states.push(SiteState { site, history, latest, commitments });
    }
    states.sort_by_key(|s| s.site.id);
    let requests =
        gridmesh_db::utility_requests_between(pool, start, end).await.context("loading utility requests")?;
    Ok(Inputs { start, now, topology, sites: states, requests })
}

/// A plan made and stored.
#[derive(Debug, Clone)]
pub struct Made {
    /// The stored plan's id.
    pub id: uuid::Uuid,
    /// The instance it solved.
    pub instance: Instance,
    /// The plan.
    pub plan: Plan,
    /// Start of its first step.
    pub start: Timestamp,
}

/// Loads the inputs, solves and stores the plan.
///
/// # Errors
/// Database errors, an instance the optimizer refuses, or a failed solve.
pub async fn plan_once(
    pool: &Pool,
    settings: &DispatchSettings,
    now: Timestamp,
    trigger: &str,
) -> anyhow::Result<Made> {
    let inputs = load_inputs(pool, settings, now).await?;
    let instance = build_instance(&inputs, settings);
    let started = Instant::now();
    let solving = instance.clone();
    // A plan that comes later than half a step is not waited for: the previous one continues.
    let budget = settings.step.to_std().unwrap_or(Duration::from_secs(900)) / 2;
    let plan = tokio::time::timeout(
        budget,
        tokio::task::spawn_blocking(move || {
            gridmesh_optimizer::ipm::solve(&solving, &gridmesh_optimizer::ipm::IpmOptions::default())
        }),
    )
    .await
    .map_err(|_| anyhow::anyhow!("the solve took longer than {budget:?}"))?
    .context("the solver task")?
    .context("solving the balancing problem")?;
    let seconds = started.elapsed().as_secs_f64();
    let hash = instance.input_hash();
    let binding: Vec<serde_json::Value> = plan
        .nodes
        .iter()
        .flat_map(|n| {
            n.binding.iter().enumerate().filter_map(move |(t, b)| {
                b.map(|b| serde_json::json!({ "node": n.id, "step": t, "side": b, "shadow_price": n.shadow_price[t] }))
            })
        })
        .take(200)
        .collect();
    let summary = serde_json::json!({
        "sites": instance.sites.len(),
        "nodes": instance.nodes.len(),
        "requests": instance.requests.len(),
        "objective": plan.objective,
        "binding": binding,
        "violations": plan.violations.len(),
        "stats": plan.stats,
    });
    let id = gridmesh_db::store_plan(
        pool,
        &gridmesh_db::NewPlan {
            horizon_start: inputs.start,
            steps: i32::try_from(instance.steps).unwrap_or(i32::MAX),
            step_seconds: i32::try_from(settings.step.num_seconds()).unwrap_or(i32::MAX),
            trigger: trigger.to_owned(),
            input_hash: hash,
            objective: plan.objective.total,
            solve_seconds: seconds,
            summary,
            plan: serde_json::to_value(&plan).context("encoding the plan")?,
        },
    )
    .await
    .context("storing the plan")?;
    metrics::histogram!("gridmesh_dispatch_solve_seconds").record(seconds);
    tracing::info!(
        plan = %id,
        trigger,
        sites = instance.sites.len(),
        objective = plan.objective.total,
        iterations = plan.stats.iterations,
        solve_seconds = seconds,
        input_hash = %hex::encode(hash),
        "dispatch plan made"
    );
    Ok(Made { id, instance, plan, start: inputs.start })
}

/// Signs and publishes the setpoints of the step `now` falls in, and records them.
///
/// # Errors
/// Database errors or a broker that refuses the messages.
pub async fn publish_step(
    pool: &Pool,
    client: &AsyncClient,
    key: &KeyPair,
    made: &Made,
    step: chrono::Duration,
    now: Timestamp,
) -> anyhow::Result<usize> {
    let ms = (now - made.start).num_milliseconds();
    let t = usize::try_from(ms / step.num_milliseconds().max(1)).unwrap_or(usize::MAX);
    if ms < 0 || t >= made.instance.steps {
        return Ok(0);
    }
    let setpoints = setpoints_for_step(&made.plan, &made.instance, made.start, step, t, now);
    let records: Vec<DispatchSetpoint> = setpoints
        .iter()
        .map(|(sp, planned)| DispatchSetpoint {
            command: sp.command,
            plan: made.id,
            site: sp.site,
            valid_from: sp.valid_from,
            valid_until: sp.valid_until,
            battery_power_w: sp.battery_power.map(Watts::get),
            pv_limit_w: sp.pv_limit.map(Watts::get),
            planned_grid_w: *planned,
        })
        .collect();
    // Recorded first: an answer can only be stored for a setpoint on record.
    gridmesh_db::record_setpoints(pool, &records).await.context("recording setpoints")?;
    for (sp, _) in &setpoints {
        let bytes = gridmesh_wire::encode(&Message::Setpoint(*sp), key).context("encoding a setpoint")?;
        client
            .publish(
                topics::topic(sp.site, Channel::Setpoints),
                QoS::AtLeastOnce,
                Channel::Setpoints.retained(),
                bytes,
            )
            .await
            .context("publishing a setpoint")?;
    }
    metrics::counter!("gridmesh_dispatch_setpoints_total").increment(setpoints.len() as u64);
    Ok(setpoints.len())
}

/// Stores an agent's answer to a setpoint when its signer is an active key of the site.
async fn record_answer(pool: &Pool, payload: &[u8]) -> anyhow::Result<()> {
    let signed = gridmesh_wire::decode(payload).context("decoding a setpoint answer")?;
    let Message::Ack(Ack::Setpoint(r)) = signed.message else { return Ok(()) };
    let key = gridmesh_db::find_active_key(pool, signed.signer.as_bytes()).await?;
    if key.as_ref().map(|k| k.site) != Some(r.site) {
        tracing::warn!(site = %r.site, "setpoint answer not signed by the site's agent; ignored");
        return Ok(());
    }
    let outcome = match r.outcome {
        SetpointOutcome::Applied => "applied",
        SetpointOutcome::Clamped => "clamped",
        SetpointOutcome::Refused => "refused",
        SetpointOutcome::Expired => "expired",
    };
    if outcome == "refused" {
        tracing::warn!(site = %r.site, command = %r.command, reason = %r.reason, "setpoint refused");
    }
    gridmesh_db::record_setpoint_answer(
        pool,
        &gridmesh_db::SetpointAnswer {
            command: r.command,
            site: r.site,
            outcome,
            battery_power_w: r.battery_power.map(Watts::get),
            pv_limit_w: r.pv_limit.map(Watts::get),
            reason: r.reason,
            at: r.at,
        },
    )
    .await?;
    Ok(())
}

/// Runs the loop until `stop`: plans at each step and when requests change, publishes each
/// step's setpoints, stores the answers.
pub async fn run(
    pool: Pool,
    settings: DispatchSettings,
    mqtt: MqttUrl,
    key: KeyPair,
    client_id: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut options = MqttOptions::new(client_id, mqtt.host.clone(), mqtt.port);
    options.set_keep_alive(Duration::from_secs(10));
    if let Some(user) = &mqtt.username {
        options.set_credentials(user.clone(), mqtt.password().unwrap_or_default().to_owned());
    }
    let (client, mut events) = AsyncClient::new(options, 1_024);
    let answers = {
        let pool = pool.clone();
        let client = client.clone();
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ =
                            client.subscribe(topics::all_sites(Channel::SetpointAck), QoS::AtLeastOnce).await;
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if let Err(e) = record_answer(&pool, &p.payload).await {
                            tracing::debug!(error = format!("{e:#}"), "setpoint answer not stored");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "dispatch broker link down; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        })
    };
    let mut current: Option<Made> = None;
    let mut planned_step: Option<Timestamp> = None;
    let mut published_step: Option<Timestamp> = None;
    let mut requests_seen: Option<Timestamp> = None;
    let mut grid_seen: Option<(i64, i64)> = None;
    let mut every = tokio::time::interval(settings.tick);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
                continue;
            }
        }
        let now = Utc::now();
        let step = step_start(now, settings.step);
        let requests_at = match gridmesh_db::utility_requests_changed_at(&pool).await {
            Ok(at) => at,
            Err(e) => {
                tracing::warn!(error = %e, "dispatch cannot read utility requests; retrying");
                continue;
            }
        };
        let grid = match gridmesh_db::grid_size(&pool).await {
            Ok(size) => Some(size),
            Err(e) => {
                tracing::warn!(error = %e, "dispatch cannot read the grid; retrying");
                continue;
            }
        };
        let trigger = if requests_at != requests_seen && planned_step.is_some() {
            Some("request")
        } else if grid != grid_seen && planned_step.is_some() {
            Some("grid")
        } else if planned_step != Some(step) {
            Some("schedule")
        } else {
            None
        };
        if let Some(trigger) = trigger {
            match plan_once(&pool, &settings, now, trigger).await {
                Ok(made) => {
                    current = Some(made);
                    published_step = None;
                }
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "dispatch plan failed; the previous plan continues"
                ),
            }
            // Not retried every tick on failure: at the next step or request change.
            planned_step = Some(step);
            requests_seen = requests_at;
            grid_seen = grid;
        }
        if published_step != Some(step)
            && let Some(made) = &current
        {
            match publish_step(&pool, &client, &key, made, settings.step, now).await {
                Ok(n) => {
                    published_step = Some(step);
                    tracing::debug!(setpoints = n, step = %step, "setpoints published");
                }
                Err(e) => tracing::warn!(error = format!("{e:#}"), "setpoints not published; retrying"),
            }
        }
    }
    answers.abort();
    let _ = client.disconnect().await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;
    use gridmesh_core::{
        BatterySpec, GridConnection, GridNode, GridNodeKind, Reading, StateOfCharge, UserId, WattHours,
    };

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn inputs(now: Timestamp, requests: Vec<UtilityRequest>) -> (Inputs, DispatchSettings) {
        let feeder = gridmesh_core::GridNodeId::from_bytes([1; 16]);
        let node = GridNode {
            id: feeder,
            kind: GridNodeKind::Feeder,
            parent: None,
            name: "f".into(),
            import_limit: Watts(30_000),
            export_limit: Watts(20_000),
        };
        let site = Site {
            id: SiteId::from_bytes([2; 16]),
            owner: UserId::from_bytes([3; 16]),
            feeder,
            name: "home".into(),
            location: None,
            rated_pv: Watts(6_000),
            battery: Some(BatterySpec {
                capacity: WattHours(10_000),
                max_charge: Watts(4_000),
                max_discharge: Watts(3_000),
            }),
            grid: GridConnection { import_limit: Watts(16_000), export_limit: Watts(6_000) },
        };
        let topology = Topology::new(vec![node], [(site.id, feeder)]).unwrap();
        let latest = StoredReading {
            agent: gridmesh_core::AgentId::from_bytes([4; 16]),
            seq: 1,
            received_at: now,
            flags: 0,
            reading: Reading {
                at: now - chrono::Duration::seconds(10),
                grid_power: Some(Watts(1_500)),
                pv_power: Some(Watts(2_000)),
                battery_power: Some(Watts(500)),
                battery_soc: StateOfCharge::from_basis_points(8_000),
                ..Reading::default()
            },
        };
        let settings = DispatchSettings { steps: 8, ..DispatchSettings::default() };
        let state =
            SiteState { site, history: Vec::new(), latest: Some(latest), commitments: BTreeMap::new() };
        let start = step_start(now, settings.step);
        (Inputs { start, now, topology, sites: vec![state], requests }, settings)
    }

    #[test]
    fn steps_are_aligned_to_the_epoch() {
        let step = chrono::Duration::minutes(15);
        assert_eq!(step_start(at("2026-12-01T10:07:31Z"), step), at("2026-12-01T10:00:00Z"));
        assert_eq!(step_start(at("2026-12-01T10:15:00Z"), step), at("2026-12-01T10:15:00Z"));
        assert_eq!(
            step_start(at("2026-12-01T10:00:19Z"), chrono::Duration::seconds(20)),
            at("2026-12-01T10:00:00Z")
        );
    }

    #[test]
    fn the_instance_starts_from_the_latest_reading_and_maps_request_windows_to_steps() {
        let now = at("2026-12-01T10:07:00Z");
        let request = |from: &str, to: &str| UtilityRequest {
            id: uuid::Uuid::from_bytes([9; 16]),
            request: gridmesh_db::NewUtilityRequest {
                node: Some(gridmesh_core::GridNodeId::from_bytes([1; 16])),
                kind: RequestKind::Cap,
                power_w: 2_500,
                starts_at: at(from),
                ends_at: at(to),
                price_minor_per_kwh: 400,
            },
            created_by: None,
            created_at: now,
            cancelled_at: None,
        };
        let (inputs, settings) = inputs(
            now,
            vec![
                request("2026-12-01T10:20:00Z", "2026-12-01T10:50:00Z"),
                request("2026-12-02T10:00:00Z", "2026-12-02T11:00:00Z"),
            ],
        );
        let inst = build_instance(&inputs, &settings);
        inst.validate().unwrap();
        let site = &inst.sites[0];
        // The first step is the latest reading: PV 2 kW, load = grid + PV − battery = 3 kW.
        assert!((site.pv_kw[0] - 2.0).abs() < 1e-9 && (site.load_kw[0] - 3.0).abs() < 1e-9, "{site:?}");
        let b = site.battery.as_ref().unwrap();
        assert!((b.initial_soc_kwh - 8.0).abs() < 1e-9 && (b.max_discharge_kw - 3.0).abs() < 1e-9);
        assert!((b.soc_min_kwh - 1.0).abs() < 1e-9 && (b.soc_max_kwh - 9.5).abs() < 1e-9);
        // 10:20 to 10:50 covers the steps starting 10:15, 10:30 and 10:45 (1 to 3); the request a
        // day later is outside the 2-hour horizon.
        assert_eq!(inst.requests.len(), 1);
        let r = &inst.requests[0];
        assert_eq!((r.from_step, r.to_step, r.kw), (1, 4, 2.5));
        assert!((r.price_per_kw - 100.0).abs() < 1e-9, "400 per kWh over a quarter hour");
        assert_eq!(inst.nodes[0].import_limit_kw, Some(30.0));
    }

    #[test]
    fn setpoints_carry_the_plan_step_and_revert_after_it() {
        let now = at("2026-12-01T10:07:00Z");
        let (inputs, settings) = inputs(now, Vec::new());
        let inst = build_instance(&inputs, &settings);
        let plan =
            gridmesh_optimizer::ipm::solve(&inst, &gridmesh_optimizer::ipm::IpmOptions::default()).unwrap();
        let sps = setpoints_for_step(&plan, &inst, inputs.start, settings.step, 0, now);
        assert_eq!(sps.len(), 1);
        let (sp, planned) = &sps[0];
        assert_eq!((sp.valid_from, sp.valid_until), (now, at("2026-12-01T10:16:00Z")));
        assert_eq!(sp.revert_after_secs, 9 * 60 + 60);
        let p = &plan.sites[0];
        let expected = ((p.charge_kw[0] - p.discharge_kw[0]) * 1_000.0).round() as i64;
        assert_eq!(sp.battery_power, Some(Watts(expected)));
        assert_eq!(*planned, ((p.import_kw[0] - p.export_kw[0]) * 1_000.0).round() as i64);
        sp.validate().unwrap();
    }
}
