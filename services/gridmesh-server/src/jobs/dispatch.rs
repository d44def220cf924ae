//! The dispatch job, a closed loop: every step (15 minutes by default) and whenever a utility
//! request is added or withdrawn or the grid grows, load the grid's state from PostgreSQL
//! (topology, sites, latest states of charge, forecasts, requests, market commitments), solve
//! the balancing LP with the structured interior-point solver, store the plan with the hash of
//! its inputs, and publish the current step's setpoints, signed, to each site's agent over the
//! process's shared broker link. The agents' answers are stored beside the setpoints. If a solve
//! fails or runs late, the previous plan's setpoints continue for their step; past it, the
//! agents' revert timers hand the devices back to their own logic.
//!
//! Building the instance and the setpoints are plain functions in [`gridmesh_optimizer::grid`];
//! this module does the IO around them.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use gridmesh_core::{Period, SiteId, Timestamp, Watts};
use gridmesh_db::{DispatchSetpoint, Pool, RequestKind, UtilityRequest};
use gridmesh_optimizer::grid::{
    FlexRequest, Inputs, PlanSettings, SiteState, build_instance, setpoints_for_step, step_start,
};
use gridmesh_optimizer::{Instance, Plan};
use gridmesh_wire::topics::{self, Channel};
use gridmesh_wire::{Ack, KeyPair, Message, SetpointOutcome};
use rumqttc::v5::mqttbytes::QoS;

use super::{Job, JobCtx, Shutdown};
use crate::broker::BrokerLink;

/// How the loop plans, and how often it looks for work.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// The plan's horizon, prices and battery limits.
    pub plan: PlanSettings,
    /// How often the loop looks for work.
    pub tick: Duration,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self { plan: PlanSettings::default(), tick: Duration::from_secs(5) }
    }
}

impl DispatchSettings {
    /// Settings from the command line.
    #[must_use]
    pub fn from_args(args: &crate::config::DispatchArgs, settlement: &crate::config::SettlementArgs) -> Self {
        Self {
            plan: PlanSettings {
                step: chrono::Duration::seconds(i64::from(args.dispatch_step_seconds)),
                steps: args.dispatch_steps as usize,
                import_price: settlement.tariff_import as f64,
                feed_in_price: settlement.tariff_feed_in as f64,
                imbalance_price: settlement.tariff_import as f64,
                degradation_per_kwh: args.dispatch_degradation as f64,
                ..PlanSettings::default()
            },
            ..Self::default()
        }
    }
}

/// A stored request as the optimizer's bridge takes it.
fn flex_request(r: &UtilityRequest) -> FlexRequest {
    FlexRequest {
        id: r.id,
        node: r.request.node,
        kind: match r.request.kind {
            RequestKind::Target => gridmesh_optimizer::RequestKind::Target,
            RequestKind::Cap => gridmesh_optimizer::RequestKind::Cap,
            RequestKind::Floor => gridmesh_optimizer::RequestKind::Floor,
        },
        power_w: r.request.power_w,
        starts_at: r.request.starts_at,
        ends_at: r.request.ends_at,
        price_minor_per_kwh: r.request.price_minor_per_kwh,
    }
}

/// Reads the inputs from the database.
///
/// # Errors
/// Database errors.
pub async fn load_inputs(pool: &Pool, settings: &PlanSettings, now: Timestamp) -> anyhow::Result<Inputs> {
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
        states.push(SiteState { site, history, latest: latest.map(|l| l.reading), commitments });
    }
    states.sort_by_key(|s| s.site.id);
    let limit_windows = gridmesh_db::limit_windows_between(pool, None, start, end)
        .await
        .context("loading limit windows")?
        .into_iter()
        .map(|w| w.window)
        .collect();
    let requests = gridmesh_db::utility_requests_between(pool, start, end)
        .await
        .context("loading utility requests")?
        .iter()
        .map(flex_request)
        .collect();
    Ok(Inputs { start, now, topology, sites: states, requests, limit_windows })
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
    let inputs = load_inputs(pool, &settings.plan, now).await?;
    let instance = build_instance(&inputs, &settings.plan);
    let started = Instant::now();
    let solving = instance.clone();
    // A plan that comes later than half a step is not waited for: the previous one continues.
    let budget = settings.plan.step.to_std().unwrap_or(Duration::from_secs(900)) / 2;
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
            step_seconds: i32::try_from(settings.plan.step.num_seconds()).unwrap_or(i32::MAX),
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
    broker: &BrokerLink,
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
        broker
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

/// How many setpoint answers may wait for the database before newer ones are dropped.
const ANSWER_QUEUE: usize = 4_096;

/// What the loop remembers between rounds.
#[derive(Default)]
struct LoopState {
    current: Option<Made>,
    planned_step: Option<Timestamp>,
    published_step: Option<Timestamp>,
    requests_seen: Option<Timestamp>,
    grid_seen: Option<GridVersion>,
    /// Why the last planning failed, until a plan succeeds: every round until then reports it,
    /// so the job's status shows that the setpoints come from an older plan.
    plan_failure: Option<String>,
}

/// What tells the loop the grid changed: nodes and active sites counted, and the limit
/// windows' count and newest.
type GridVersion = ((i64, i64), (i64, Option<chrono::DateTime<Utc>>));

/// Aborts a task when dropped, so a listener never outlives its job (a job is dropped when its
/// lease is lost).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the loop until `shutdown`: plans at each step and when requests or the grid change,
/// publishes each step's setpoints, stores the answers.
pub async fn run(ctx: JobCtx, mut shutdown: Shutdown) {
    let settings = ctx.settings.dispatch.clone();
    let _answers = match ctx
        .broker
        .subscribe(&topics::all_sites(Channel::SetpointAck), QoS::AtLeastOnce, ANSWER_QUEUE)
        .await
    {
        Ok(mut rx) => {
            let pool = ctx.pool.clone();
            Some(AbortOnDrop(tokio::spawn(async move {
                while let Some(d) = rx.recv().await {
                    if let Err(e) = record_answer(&pool, &d.payload).await {
                        tracing::debug!(error = format!("{e:#}"), "setpoint answer not stored");
                    }
                }
            })))
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for setpoint answers");
            None
        }
    };
    let mut state = LoopState::default();
    let mut every = tokio::time::interval(settings.tick);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !shutdown.tick(&mut every).await {
        ctx.round(Job::Dispatch, "dispatch round", round(&ctx, &settings, &mut state)).await;
    }
}

/// One tick: plan when due, publish the step's setpoints when not yet sent.
async fn round(ctx: &JobCtx, settings: &DispatchSettings, state: &mut LoopState) -> anyhow::Result<()> {
    let pool = &ctx.pool;
    let now = Utc::now();
    let step = step_start(now, settings.plan.step);
    let requests_at =
        gridmesh_db::utility_requests_changed_at(pool).await.context("reading utility requests")?;
    let grid = Some((
        gridmesh_db::grid_size(pool).await.context("reading the grid")?,
        gridmesh_db::limit_windows_version(pool).await.context("reading the limit windows")?,
    ));
    let trigger = if requests_at != state.requests_seen && state.planned_step.is_some() {
        Some("request")
    } else if grid != state.grid_seen && state.planned_step.is_some() {
        Some("grid")
    } else if state.planned_step != Some(step) {
        Some("schedule")
    } else {
        None
    };
    if let Some(trigger) = trigger {
        match plan_once(pool, settings, now, trigger).await {
            Ok(made) => {
                state.current = Some(made);
                state.published_step = None;
                state.plan_failure = None;
            }
            Err(e) => {
                state.plan_failure = Some(format!("planning failed; the previous plan continues: {e:#}"))
            }
        }
        // Not retried every tick on failure: at the next step or request change.
        state.planned_step = Some(step);
        state.requests_seen = requests_at;
        state.grid_seen = grid;
    }
    let mut published = Ok(());
    if state.published_step != Some(step)
        && let Some(made) = &state.current
    {
        match publish_step(pool, &ctx.broker, &ctx.server_key, made, settings.plan.step, now).await {
            Ok(n) => {
                state.published_step = Some(step);
                tracing::debug!(setpoints = n, step = %step, "setpoints published");
            }
            Err(e) => published = Err(e.context("setpoints not published")),
        }
    }
    let planned = state.plan_failure.clone().map_or(Ok(()), |f| Err(anyhow::anyhow!(f)));
    super::both(planned, published)
}
