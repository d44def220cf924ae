//! The agent's main loop: read the devices every `poll_ms`, make signed batches of
//! `batch_readings` readings, put each on disk, and let the uplink send them.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use gridmesh_core::{Reading, StateOfCharge, WattHours, Watts};
use gridmesh_sunspec::{Readout, readout};
use gridmesh_wire::{KeyPair, Message, TelemetryBatch};
use tokio::sync::watch;

use crate::buffer::Buffer;
use crate::config::{AgentConfig, SunSpecDevice};
use crate::sunspec::{Device, Link};
use crate::uplink::{self, UplinkOptions};

/// A configured SunSpec device: its link(s) and its discovered units, when up.
struct Source {
    cfg: SunSpecDevice,
    main_link: Arc<Link>,
    meter_link: Option<Arc<Link>>,
    main: Option<Device>,
    meter: Option<Device>,
    last_error: Option<(String, Instant)>,
}

impl Source {
    fn new(cfg: SunSpecDevice, timeout: Duration) -> Self {
        let main_link = Link::new(cfg.endpoint(), timeout);
        // The meter's unit shares the link on a serial line and on single-client devices;
        // otherwise it has a connection of its own.
        let meter_link = cfg.meter_unit.map(|_| {
            if cfg.shared_link() { Arc::clone(&main_link) } else { Link::new(cfg.endpoint(), timeout) }
        });
        Self { cfg, main_link, meter_link, main: None, meter: None, last_error: None }
    }

    /// The main unit, discovered on first use.
    async fn main_device(&mut self) -> Result<&mut Device, String> {
        if self.main.is_none() {
            let d = Device::discover_on(Arc::clone(&self.main_link), self.cfg.unit)
                .await
                .map_err(|e| e.to_string())?;
            self.main = Some(d);
        }
        self.main.as_mut().ok_or_else(|| "the device is not reachable".to_owned())
    }

    async fn read(&mut self) -> Result<Readout, String> {
        self.main_device().await?;
        if let (Some(unit), Some(link), None) = (self.cfg.meter_unit, &self.meter_link, &self.meter) {
            self.meter = Some(Device::discover_on(Arc::clone(link), unit).await.map_err(|e| e.to_string())?);
        }
        let mut blocks = Vec::new();
        let mut failure = None;
        for dev in [&mut self.main, &mut self.meter].into_iter().flatten() {
            match dev.read_models().await {
                Ok(b) => blocks.extend(b),
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        if let Some(e) = failure {
            // Rediscover next time (the link reconnects): the device may have restarted.
            self.main = None;
            self.meter = None;
            return Err(e);
        }
        Ok(readout(&blocks, self.cfg.quirks))
    }

    /// Logs a device problem at most once a minute per device (and whenever it changes).
    fn report(&mut self, error: String) {
        let repeat = self
            .last_error
            .as_ref()
            .is_some_and(|(e, at)| *e == error && at.elapsed() < Duration::from_secs(60));
        if !repeat {
            tracing::warn!(device = %self.cfg.name, error = %error, "device not read");
            self.last_error = Some((error, Instant::now()));
        }
    }
}

fn merge(into: &mut Readout, r: Readout) {
    into.grid_power_w = into.grid_power_w.or(r.grid_power_w);
    into.pv_power_w = into.pv_power_w.or(r.pv_power_w);
    into.battery_power_w = into.battery_power_w.or(r.battery_power_w);
    into.battery_soc_bp = into.battery_soc_bp.or(r.battery_soc_bp);
    into.grid_import_wh = into.grid_import_wh.or(r.grid_import_wh);
    into.grid_export_wh = into.grid_export_wh.or(r.grid_export_wh);
    into.pv_energy_wh = into.pv_energy_wh.or(r.pv_energy_wh);
}

fn to_reading(r: &Readout) -> Reading {
    Reading {
        at: Utc::now(),
        grid_power: r.grid_power_w.map(Watts),
        pv_power: r.pv_power_w.map(Watts),
        battery_power: r.battery_power_w.map(Watts),
        battery_soc: r.battery_soc_bp.and_then(StateOfCharge::from_basis_points),
        grid_import: r.grid_import_wh.map(WattHours),
        grid_export: r.grid_export_wh.map(WattHours),
        pv_energy: r.pv_energy_wh.map(WattHours),
        battery_charged: None,
        battery_discharged: None,
    }
}

/// The home broker, for device commands: its client and the DTU limit command, if any.
struct HomeCommands {
    client: rumqttc::AsyncClient,
    limit: Option<gridmesh_devices::DtuLimit>,
}

/// A DTU limit to hand back (full power) at a deadline: non-persistent limits have no revert
/// timer of their own.
struct Release {
    topic: String,
    payload: String,
    at: chrono::DateTime<Utc>,
}

/// Checks, clamps and applies a setpoint: battery power through SunSpec storage controls
/// (124), a PV limit through SunSpec inverter controls (123) or, for a microinverter, the
/// DTU's limit topic on the home broker.
async fn apply_setpoint(
    sources: &mut [Source],
    home: Option<&HomeCommands>,
    releases: &mut Vec<Release>,
    site: gridmesh_core::SiteId,
    incoming: &uplink::Incoming,
) -> gridmesh_wire::SetpointResult {
    use crate::setpoints::{Decision, answer, decide, limits_from, plan};
    use gridmesh_wire::SetpointOutcome;
    let sp = &incoming.setpoint;
    let now = Utc::now();
    let refuse = |reason: String| answer(sp, now, SetpointOutcome::Refused, None, reason);
    let dtu = home.and_then(|h| h.limit.clone().map(|l| (h, l)));
    if sources.is_empty() && dtu.is_none() {
        return refuse("this agent has no device to control (no SunSpec device, no DTU limit topic)".into());
    }
    let mut device = None;
    let mut blocks = Vec::new();
    if let Some(source) = sources.first_mut() {
        let d = match source.main_device().await {
            Ok(d) => d,
            Err(e) => return refuse(format!("the device is not reachable: {e}")),
        };
        blocks = match d.read_models().await {
            Ok(b) => b,
            Err(e) => return refuse(format!("the device is not readable: {e}")),
        };
        device = Some(d);
    }
    let zero = gridmesh_core::SetpointLimits {
        max_charge: Watts(0),
        max_discharge: Watts(0),
        rated_pv: Watts(0),
        import_limit: Watts(0),
        export_limit: Watts(0),
    };
    let mut limits = limits_from(&blocks, zero);
    // A PV limit goes to SunSpec 123 when the device has it, else to the DTU.
    let via_dtu = dtu.as_ref().filter(|_| sp.pv_limit.is_some() && !blocks.iter().any(|b| b.id == 123));
    if let Some((_, l)) = via_dtu {
        limits.rated_pv = Watts(l.rated_w);
    }
    let (applied, clamped) = match decide(sp, incoming.signed_by_server, site, now, &limits) {
        Decision::Answer(outcome, reason) => return answer(sp, now, outcome, None, reason),
        Decision::Apply { setpoint, clamped } => (setpoint, clamped),
    };
    let mut on_sunspec = applied;
    if via_dtu.is_some() {
        on_sunspec.pv_limit = None;
    }
    let writes = match plan(&on_sunspec, &blocks, &limits, now) {
        Ok(w) => w,
        Err(reason) => return refuse(reason),
    };
    if !writes.is_empty() {
        let Some(device) = device else { return refuse("no SunSpec device for these controls".into()) };
        for w in &writes {
            if let Err(e) = device.write_point(w.model, w.point, &w.words).await {
                return refuse(format!("the device refused a control write: {e}"));
            }
        }
    }
    if let (Some((h, l)), Some(pv)) = (via_dtu, applied.pv_limit) {
        let payload = l.payload(pv.get());
        if let Err(e) = h.client.publish(&l.topic, rumqttc::QoS::AtLeastOnce, false, payload.clone()).await {
            return refuse(format!("the home broker did not take the limit command: {e}"));
        }
        tracing::info!(topic = %l.topic, %payload, "inverter limit sent to the DTU");
        releases.retain(|r| r.topic != l.topic);
        releases.push(Release {
            topic: l.topic.clone(),
            payload: l.release_payload(),
            at: sp.reverts_at(now),
        });
    }
    let (outcome, reason) = if clamped {
        (SetpointOutcome::Clamped, "clamped to the device's rated limits".to_owned())
    } else {
        (SetpointOutcome::Applied, String::new())
    };
    answer(sp, now, outcome, Some(&applied), reason)
}

/// Hands back every DTU limit whose time is up (all of them when `all`).
async fn release_due(home: Option<&HomeCommands>, releases: &mut Vec<Release>, all: bool) {
    let Some(h) = home else { return };
    let now = Utc::now();
    let (due, keep): (Vec<Release>, Vec<Release>) = releases.drain(..).partition(|r| all || r.at <= now);
    *releases = keep;
    for r in due {
        match h.client.publish(&r.topic, rumqttc::QoS::AtLeastOnce, false, r.payload.clone()).await {
            Ok(()) => tracing::info!(topic = %r.topic, payload = %r.payload, "inverter limit handed back"),
            Err(e) => tracing::warn!(topic = %r.topic, error = %e, "could not hand back the inverter limit"),
        }
    }
}

/// The uplink's settings from the configuration (TLS files read here).
///
/// # Errors
/// A bad broker URL or an unreadable certificate file.
pub fn uplink_options(cfg: &AgentConfig, agent: gridmesh_core::AgentId) -> anyhow::Result<UplinkOptions> {
    let broker = cfg.broker().map_err(anyhow::Error::msg).context("central.url")?;
    let read = |p: &std::path::PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let tls = match &cfg.central.ca_file {
        Some(ca) => {
            let client = match (&cfg.central.client_cert, &cfg.central.client_key) {
                (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
                _ => None,
            };
            Some(crate::uplink::TlsFiles { ca: read(ca)?, client })
        }
        None => None,
    };
    if broker.tls && tls.is_none() {
        anyhow::bail!("central.ca_file is required for mqtts://");
    }
    Ok(UplinkOptions {
        broker,
        client_id: format!("gridmesh-agent-{agent}"),
        tls,
        server_key: cfg.central.server_key.as_deref().map(gridmesh_wire::PublicKey::from_hex).transpose()?,
        window: 200,
        resend_after: Duration::from_secs(20),
    })
}

/// Runs the agent until `stop` turns true.
///
/// # Errors
/// The key or the buffer cannot be used, or the uplink fails on the disk.
pub async fn run(cfg: AgentConfig, key: KeyPair, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let site = cfg
        .site
        .context("`site` is not set in the configuration: enrol first (gridmesh-agent enroll --code)")?;
    let agent = cfg
        .agent
        .context("`agent` is not set in the configuration: enrol first (gridmesh-agent enroll --code)")?;
    let (buffer, recovered) = Buffer::open(&cfg.buffer.dir, cfg.buffer.max_mib * 1024 * 1024)
        .with_context(|| format!("opening the disk buffer {}", cfg.buffer.dir.display()))?;
    let mut next_seq = buffer.last_seq().map_or(0, |s| s + 1);
    tracing::info!(pending = recovered.pending, next_seq, "disk buffer opened");
    let buffer = Arc::new(Mutex::new(buffer));
    let options = uplink_options(&cfg, agent)?;
    let (setpoint_tx, mut setpoint_rx) = tokio::sync::mpsc::channel(16);
    let (answer_tx, answer_rx) = tokio::sync::mpsc::channel(16);
    let commands = uplink::Commands { setpoints: setpoint_tx, answers: answer_rx, key: key.clone() };
    let up = tokio::spawn(uplink::run(site, agent, Arc::clone(&buffer), options, commands, stop.clone()));
    let home = crate::home::devices(&cfg.mqtt_device)?;
    let mut home_commands = None;
    let mut home_task = None;
    // The home link stops after the main loop, so that the last commands (handing the
    // inverters their power back) still go out.
    let (home_stop, home_stop_rx) = watch::channel(false);
    if let Some(b) = &cfg.home_broker {
        let (host, port) = b.host_port().map_err(anyhow::Error::msg).context("home_broker.address")?;
        let credentials = b.username.clone().map(|u| (u, b.password.clone().unwrap_or_default()));
        let (client, events) = crate::home::connect(host, port, credentials);
        home_commands =
            Some(HomeCommands { client: client.clone(), limit: crate::home::limit_command(&home) });
        home_task = Some(tokio::spawn(crate::home::run(client, events, Arc::clone(&home), home_stop_rx)));
    }
    let mut releases: Vec<Release> = Vec::new();
    let poll = Duration::from_millis(cfg.poll_ms);
    let device_timeout = poll.max(Duration::from_secs(2));
    let mut sources: Vec<Source> =
        cfg.sunspec.iter().cloned().map(|d| Source::new(d, device_timeout)).collect();
    let mut every = tokio::time::interval(poll);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut readings = Vec::with_capacity(cfg.batch_readings);
    let mut stop_rx = stop.clone();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            Some(incoming) = setpoint_rx.recv() => {
                let answer =
                    apply_setpoint(&mut sources, home_commands.as_ref(), &mut releases, site, &incoming).await;
                tracing::info!(command = %answer.command, outcome = ?answer.outcome, reason = %answer.reason, "setpoint answered");
                let _ = answer_tx.send(answer).await;
                continue;
            }
            changed = stop_rx.changed() => {
                if changed.is_err() || *stop_rx.borrow() {
                    break;
                }
                continue;
            }
        }
        release_due(home_commands.as_ref(), &mut releases, false).await;
        let mut combined = Readout::default();
        for s in &mut sources {
            match s.read().await {
                Ok(r) => merge(&mut combined, r),
                Err(e) => s.report(e),
            }
        }
        for r in crate::home::readouts(&home) {
            merge(&mut combined, r);
        }
        readings.push(to_reading(&combined));
        if readings.len() >= cfg.batch_readings {
            let batch =
                TelemetryBatch { agent, site, first_seq: next_seq, readings: std::mem::take(&mut readings) };
            let last = batch.last_seq();
            let bytes =
                gridmesh_wire::encode(&Message::Telemetry(batch), &key).context("encoding a batch")?;
            buffer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .append(last, &bytes)
                .context("writing the disk buffer")?;
            next_seq = last + 1;
        }
    }
    if !releases.is_empty() {
        // Stopping: hand the inverters their full power back before the home link goes.
        release_due(home_commands.as_ref(), &mut releases, true).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = home_stop.send(true);
    up.await.context("the uplink task")??;
    if let Some(t) = home_task {
        let _ = t.await;
    }
    Ok(())
}
