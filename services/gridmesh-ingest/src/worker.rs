//! The ingest worker: MQTT telemetry in, PostgreSQL rows out, acknowledgements after commit.
//!
//! Two tasks. The receiver polls the MQTT connection (MQTT 5, persistent session, manual
//! acknowledgements) and hands every telemetry publish to the writer. The writer gathers
//! publishes for a few milliseconds, decodes and verifies each, runs the plausibility checks,
//! stores the group in one transaction, and only then acknowledges the publishes to the broker
//! and sends each agent a signed `TelemetryCommitted`. A crash before the commit leaves the
//! publishes unacknowledged, so the broker delivers them again; storage is idempotent, so the
//! effect is exactly once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use gridmesh_core::{AgentId, Reading, ReadingFlags, Site, SiteId};
use gridmesh_db::{AgentKey, DbError, IngestRow, Pool};
use gridmesh_wire::topics::{self, Channel};
use gridmesh_wire::{Ack, KeyPair, Message, PublicKey, TelemetryBatch, TelemetryCommitted};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::{AsyncClient, Event};
use tokio::sync::{mpsc, watch};

use crate::plausibility::{self, CounterTrail, Rules};

/// Where the broker is: the address type every gridmesh process uses.
pub use gridmesh_mqtt::BrokerAddr;

/// Settings of the worker.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// The central broker.
    pub broker: BrokerAddr,
    /// MQTT client id; keep it stable per replica so the broker keeps the session (and the
    /// unacknowledged messages) across restarts.
    pub client_id: String,
    /// Shared-subscription group; replicas in the same group split the telemetry.
    pub share_group: Option<String>,
    /// Most readings stored in one transaction.
    pub max_group_readings: usize,
    /// Longest a publish waits for others to share its transaction.
    pub max_wait: Duration,
    /// Most unacknowledged publishes the broker may send (MQTT 5 receive maximum).
    pub receive_maximum: u16,
    /// Plausibility tolerances.
    pub rules: Rules,
    /// Signs the commit acknowledgements sent to agents.
    pub server_key: KeyPair,
    /// How long enrolled keys and site profiles are cached before being read again (so a
    /// revocation takes effect within this time).
    pub cache_ttl: Duration,
    /// True while the worker's broker session is up; `/readyz` of a process running ingest
    /// reports it.
    pub link_up: Arc<AtomicBool>,
    /// Readings older than this many days are not stored (counted as `unstorable_time`): keep
    /// it within the raw-data retention, or late data would recreate dropped partitions.
    pub max_age_days: u64,
}

impl IngestConfig {
    /// Defaults for a broker and key: 25 ms gathering, up to 20 000 readings a transaction.
    #[must_use]
    pub fn new(broker: BrokerAddr, client_id: String, server_key: KeyPair) -> Self {
        Self {
            broker,
            client_id,
            share_group: Some("gridmesh-ingest".into()),
            max_group_readings: 20_000,
            max_wait: Duration::from_millis(25),
            receive_maximum: 4_000,
            rules: Rules::default(),
            server_key,
            cache_ttl: Duration::from_secs(30),
            link_up: Arc::new(AtomicBool::new(false)),
            max_age_days: gridmesh_db::TELEMETRY_DAYS_BACK,
        }
    }
}

/// Why a publish was refused. Refused publishes are acknowledged (they will never succeed)
/// and counted by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The topic is not a telemetry topic of the layout.
    Topic,
    /// The payload did not decode (malformed, oversized, unknown version, bad signature).
    Decode,
    /// A message other than telemetry on the telemetry topic.
    NotTelemetry,
    /// The site in the message differs from the topic's.
    SiteMismatch,
    /// The signer is not an enrolled, unrevoked key.
    UnknownKey,
    /// The key is enrolled for another agent or site than the message names.
    KeyMismatch,
    /// The database refused the batch (for example an agent reporting for another site).
    Refused,
}

impl Rejection {
    /// Label used in metrics and logs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Rejection::Topic => "topic",
            Rejection::Decode => "decode",
            Rejection::NotTelemetry => "not_telemetry",
            Rejection::SiteMismatch => "site_mismatch",
            Rejection::UnknownKey => "unknown_or_revoked_key",
            Rejection::KeyMismatch => "key_mismatch",
            Rejection::Refused => "refused_by_database",
        }
    }
}

/// Logs a reason at most once per window, with how many were suppressed.
struct RateLimitedLog {
    window: Duration,
    last: HashMap<&'static str, (Instant, u64)>,
}

impl RateLimitedLog {
    fn new(window: Duration) -> Self {
        Self { window, last: HashMap::new() }
    }

    fn warn(&mut self, reason: &'static str, topic: &str, detail: &str) {
        let now = Instant::now();
        let entry = self.last.entry(reason).or_insert((now - self.window * 2, 0));
        if now.duration_since(entry.0) >= self.window {
            tracing::warn!(reason, topic, detail, suppressed = entry.1, "telemetry refused");
            *entry = (now, 0);
        } else {
            entry.1 += 1;
        }
    }
}

struct Cached<T> {
    value: T,
    at: Instant,
}

/// A publish taken from the broker, with what the writer made of it.
struct Incoming {
    publish: Publish,
    received: chrono::DateTime<Utc>,
}

struct Accepted {
    batch: TelemetryBatch,
}

/// Runs the worker until `shutdown` completes. Reconnects to the broker by itself; waits for
/// the database when it is away (the broker keeps the unacknowledged messages meanwhile).
///
/// # Errors
/// Only when the worker cannot start at all.
pub async fn run(
    pool: Pool,
    config: IngestConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut options =
        gridmesh_mqtt::options(&config.broker, config.client_id.clone(), Duration::from_secs(10), None)
            .context("the ingest broker address")?;
    options
        .set_clean_start(false)
        .set_session_expiry_interval(Some(24 * 3600))
        .set_receive_maximum(Some(config.receive_maximum))
        .set_manual_acks(true)
        .set_max_packet_size(Some(1024 * 1024));
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    let (tx, rx) = mpsc::channel::<Incoming>(usize::from(config.receive_maximum) + 64);
    let (stop_tx, stop_rx) = watch::channel(false);
    let subscription = topics::ingest_subscription(config.share_group.as_deref());
    tracing::info!(broker = ?config.broker, client_id = %config.client_id, %subscription, "ingest starting");

    let receiver_client = client.clone();
    let link_up = Arc::clone(&config.link_up);
    let mut receiver_stop = stop_rx.clone();
    let receiver = tokio::spawn(async move {
        // Down again when this task ends, however it ends.
        let _down_on_exit = LinkDown(Arc::clone(&link_up));
        let mut logged_down = false;
        loop {
            let event = tokio::select! {
                _ = receiver_stop.changed() => break,
                event = eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    tracing::info!(session_present = ack.session_present, "ingest connected to the broker");
                    logged_down = false;
                    link_up.store(true, Ordering::Relaxed);
                    metrics::gauge!("gridmesh_ingest_broker_connected").set(1.0);
                    if let Err(e) = receiver_client.subscribe(subscription.clone(), QoS::AtLeastOnce).await {
                        tracing::warn!(error = %e, "cannot subscribe to telemetry");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    // Never blocks in practice: the channel holds more than the broker may send
                    // unacknowledged (receive maximum).
                    if tx.send(Incoming { publish, received: Utc::now() }).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    link_up.store(false, Ordering::Relaxed);
                    metrics::gauge!("gridmesh_ingest_broker_connected").set(0.0);
                    if !logged_down {
                        tracing::warn!(error = %e, "ingest lost the broker; reconnecting");
                        logged_down = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });

    let mut writer = Writer::new(pool, client.clone(), config);
    let (writer_stop_tx, writer_stop) = watch::channel(false);
    let writer_task = tokio::spawn(async move { writer.run(rx, writer_stop).await });

    shutdown.await;
    tracing::info!("ingest stopping: finishing the transaction in progress");
    let _ = writer_stop_tx.send(true);
    let _ = writer_task.await;
    // The receiver keeps polling a moment so the last acknowledgements reach the broker.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), client.disconnect()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), receiver).await;
    tracing::info!("ingest stopped");
    Ok(())
}

/// Marks the broker session down when dropped.
struct LinkDown(Arc<AtomicBool>);

impl Drop for LinkDown {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// A site's ratings now and before.
type Profile = (Site, Vec<(chrono::DateTime<Utc>, Site)>);

struct Writer {
    pool: Pool,
    client: AsyncClient,
    config: IngestConfig,
    keys: HashMap<PublicKey, Cached<Option<AgentKey>>>,
    /// Each site's current ratings and its earlier ones (oldest first, each valid until its time).
    profiles: HashMap<SiteId, Cached<Option<Profile>>>,
    previous: HashMap<AgentId, (u64, Reading)>,
    /// Each site's recent counters by measurement time, for the counter-jump check across
    /// batches (and agents).
    trails: HashMap<SiteId, CounterTrail>,
    log: RateLimitedLog,
}

impl Writer {
    fn new(pool: Pool, client: AsyncClient, config: IngestConfig) -> Self {
        Self {
            pool,
            client,
            config,
            keys: HashMap::new(),
            profiles: HashMap::new(),
            previous: HashMap::new(),
            trails: HashMap::new(),
            log: RateLimitedLog::new(Duration::from_secs(60)),
        }
    }

    async fn run(&mut self, mut rx: mpsc::Receiver<Incoming>, mut stop: watch::Receiver<bool>) {
        loop {
            let first = tokio::select! {
                _ = stop.changed() => return,
                m = rx.recv() => match m { Some(m) => m, None => return },
            };
            let deadline = tokio::time::Instant::now() + self.config.max_wait;
            let mut group = Vec::new();
            let mut readings = self.admit(first, &mut group).await;
            while readings < self.config.max_group_readings {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(m)) => readings += self.admit(m, &mut group).await,
                    Ok(None) | Err(_) => break,
                }
            }
            self.store(group, &mut stop).await;
        }
    }

    /// Decodes and verifies one publish; returns how many readings it adds to the group.
    async fn admit(
        &mut self,
        incoming: Incoming,
        group: &mut Vec<(Incoming, Result<Accepted, Rejection>)>,
    ) -> usize {
        let verdict = self.verify(&incoming).await;
        let n = verdict.as_ref().map_or(0, |a| a.batch.readings.len());
        group.push((incoming, verdict));
        n
    }

    async fn verify(&mut self, incoming: &Incoming) -> Result<Accepted, Rejection> {
        let topic = String::from_utf8_lossy(&incoming.publish.topic).into_owned();
        let reject = |me: &mut Self, r: Rejection, detail: &str| {
            metrics::counter!("gridmesh_ingest_rejected_total", "reason" => r.as_str()).increment(1);
            me.log.warn(r.as_str(), &topic, detail);
            Err(r)
        };
        let site = match topics::parse(&topic) {
            Ok((site, Channel::Telemetry)) => site,
            Ok((_, other)) => {
                return reject(self, Rejection::Topic, &format!("channel {other} is not telemetry"));
            }
            Err(e) => return reject(self, Rejection::Topic, &e.to_string()),
        };
        let signed = match gridmesh_wire::decode(&incoming.publish.payload) {
            Ok(s) => s,
            Err(e) => return reject(self, Rejection::Decode, &e.to_string()),
        };
        let Message::Telemetry(batch) = signed.message else {
            return reject(self, Rejection::NotTelemetry, "a message other than telemetry");
        };
        if batch.site != site {
            return reject(self, Rejection::SiteMismatch, &format!("message names site {}", batch.site));
        }
        match self.key(signed.signer).await {
            Some(key) if key.agent == batch.agent && key.site == batch.site => Ok(Accepted { batch }),
            Some(key) => reject(
                self,
                Rejection::KeyMismatch,
                &format!("key is enrolled for agent {} at site {}", key.agent, key.site),
            ),
            None => reject(
                self,
                Rejection::UnknownKey,
                &format!("signer {} is not enrolled or revoked", signed.signer),
            ),
        }
    }

    /// The enrolment of `signer`, from the cache or the database. While the database is away
    /// this waits (nothing is acknowledged meanwhile, so nothing is lost).
    async fn key(&mut self, signer: PublicKey) -> Option<AgentKey> {
        loop {
            match self.key_once(signer).await {
                Ok(key) => return key,
                Err(e) => {
                    metrics::counter!("gridmesh_ingest_commit_retries_total").increment(1);
                    self.log.warn("key_lookup_failed", "", &e.to_string());
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    async fn key_once(&mut self, signer: PublicKey) -> Result<Option<AgentKey>, DbError> {
        let ttl = self.config.cache_ttl;
        if let Some(c) = self.keys.get(&signer) {
            // Unknown keys are re-read sooner, so a fresh enrolment works quickly.
            let fresh = if c.value.is_some() { ttl } else { ttl.min(Duration::from_secs(5)) };
            if c.at.elapsed() < fresh {
                return Ok(c.value.clone());
            }
        }
        let value = gridmesh_db::find_active_key(&self.pool, signer.as_bytes()).await?;
        // Random signers must not grow the cache without end.
        if self.keys.len() >= 200_000 {
            self.keys.clear();
        }
        self.keys.insert(signer, Cached { value: value.clone(), at: Instant::now() });
        Ok(value)
    }

    async fn profile(&mut self, site: SiteId) -> Option<Profile> {
        if let Some(c) = self.profiles.get(&site)
            && c.at.elapsed() < self.config.cache_ttl
        {
            return c.value.clone();
        }
        // Waits for the database rather than storing readings unchecked.
        let value = loop {
            let loaded = match gridmesh_db::get_site(&self.pool, site).await {
                Ok(Some(s)) => gridmesh_db::rating_history(&self.pool, &s).await.map(|h| Some((s, h))),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            };
            match loaded {
                Ok(v) => break v,
                Err(e) => {
                    self.log.warn("profile_lookup_failed", "", &e.to_string());
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        self.profiles.insert(site, Cached { value: value.clone(), at: Instant::now() });
        value
    }

    async fn previous(&mut self, agent: AgentId, site: SiteId) -> Option<(u64, Reading)> {
        if let Some(p) = self.previous.get(&agent) {
            return Some(*p);
        }
        let stored = gridmesh_db::latest_reading(&self.pool, site).await.ok().flatten()?;
        (stored.agent == agent).then_some((stored.seq, stored.reading))
    }

    /// The site's counter trail: this writer's own, or, the first time it sees the site, one
    /// starting at the site's latest stored reading (empty for a site without readings). Waits
    /// for the database rather than letting a jump through unchecked.
    async fn trail(&mut self, site: SiteId) -> CounterTrail {
        if let Some(t) = self.trails.get(&site) {
            return *t;
        }
        loop {
            match gridmesh_db::latest_reading(&self.pool, site).await {
                Ok(Some(stored)) => return CounterTrail::starting_at(&stored.reading),
                Ok(None) => return CounterTrail::default(),
                Err(e) => {
                    self.log.warn("latest_lookup_failed", "", &e.to_string());
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Flags, stores, acknowledges. Retries while the database is away.
    async fn store(
        &mut self,
        group: Vec<(Incoming, Result<Accepted, Rejection>)>,
        stop: &mut watch::Receiver<bool>,
    ) {
        let started = Instant::now();
        // Flags per reading, in each agent's sequence order.
        let mut flagged: Vec<(usize, Vec<ReadingFlags>)> = Vec::new();
        for (i, (incoming, verdict)) in group.iter().enumerate() {
            let Ok(accepted) = verdict else { continue };
            let batch = &accepted.batch;
            let profile = self.profile(batch.site).await;
            let mut prev = self.previous(batch.agent, batch.site).await;
            let mut trail = self.trail(batch.site).await;
            let rules = &self.config.rules;
            let mut flags = Vec::with_capacity(batch.readings.len());
            for (seq, r) in batch.sequenced() {
                let before = prev.filter(|(s, _)| *s < seq).map(|(_, r)| r);
                let f = profile.as_ref().map_or(ReadingFlags::NONE, |(current, earlier)| {
                    let rated = plausibility::rated_at(current, earlier, r.at);
                    let mut f = plausibility::check(rated, before.as_ref(), r, incoming.received, rules);
                    if trail.jumped(rated, r, rules) {
                        f |= ReadingFlags::COUNTER_JUMP;
                    }
                    f
                });
                flags.push(f);
                if prev.is_none_or(|(s, _)| seq > s) {
                    prev = Some((seq, *r));
                }
                // Like `site_latest`, the trail never takes a reading from a clock running ahead.
                if r.at <= incoming.received + rules.max_future {
                    trail.advance(r, rules);
                }
            }
            if let Some(p) = prev {
                self.previous.insert(batch.agent, p);
            }
            self.trails.insert(batch.site, trail);
            flagged.push((i, flags));
        }
        let mut rows = Vec::new();
        let mut outside = 0_u64;
        let now = Utc::now();
        let window = (
            now - chrono::Days::new(self.config.max_age_days.min(gridmesh_db::TELEMETRY_DAYS_BACK)),
            now + chrono::Days::new(gridmesh_db::TELEMETRY_DAYS_AHEAD),
        );
        for (i, flags) in &flagged {
            let Ok(accepted) = &group[*i].1 else { continue };
            let b = &accepted.batch;
            for ((seq, r), f) in b.sequenced().zip(flags) {
                // A time no partition can hold (years off) cannot be stored; count it. Its
                // sequence number stays a visible gap.
                if r.at.date_naive() < window.0.date_naive() || r.at.date_naive() > window.1.date_naive() {
                    outside += 1;
                    continue;
                }
                rows.push(IngestRow { agent: b.agent, site: b.site, seq, reading: r, flags: *f });
            }
        }
        if outside > 0 {
            metrics::counter!("gridmesh_ingest_readings_total", "result" => "unstorable_time")
                .increment(outside);
            self.log.warn(
                "unstorable_time",
                "",
                &format!("{outside} readings older than the retention, or days ahead, were not stored"),
            );
        }
        let mut refused: Vec<usize> = Vec::new();
        let report = loop {
            match gridmesh_db::commit_ingest(&self.pool, &rows).await {
                Ok(report) => break Some(report),
                Err(e) if e.is_retryable() => {
                    metrics::counter!("gridmesh_ingest_commit_retries_total").increment(1);
                    tracing::warn!(error = %e, "ingest commit failed; retrying");
                    tokio::select! {
                        _ = stop.changed() => return,
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
                Err(e) => {
                    // One batch poisons the group (an agent reporting for a site not its own,
                    // say): store batch by batch to find it.
                    tracing::warn!(error = %e, "ingest commit refused; storing batch by batch");
                    match self.store_one_by_one(&group, &rows, stop).await {
                        Some(r) => refused = r,
                        // Stopping: acknowledge nothing, the broker delivers it all again.
                        None => return,
                    }
                    break None;
                }
            }
        };
        if let Some(report) = &report {
            metrics::counter!("gridmesh_ingest_readings_total", "result" => "stored")
                .increment(report.inserted);
            metrics::counter!("gridmesh_ingest_readings_total", "result" => "duplicate")
                .increment(report.duplicates);
            if !report.reused.is_empty() {
                metrics::counter!("gridmesh_ingest_readings_total", "result" => "sequence_reused")
                    .increment(report.reused.len() as u64);
                tracing::warn!(
                    count = report.reused.len(),
                    "sequence numbers reused: a cloned device or a shared key"
                );
            }
        }
        let flagged_count: usize = rows.iter().filter(|r| !r.flags.is_empty()).count();
        metrics::counter!("gridmesh_ingest_readings_total", "result" => "flagged")
            .increment(flagged_count as u64);
        metrics::histogram!("gridmesh_ingest_commit_seconds").record(started.elapsed().as_secs_f64());
        let oldest_ms =
            group.iter().map(|(i, _)| (Utc::now() - i.received).num_milliseconds()).max().unwrap_or(0);
        tracing::debug!(
            batches = group.len(),
            readings = rows.len(),
            store_ms = started.elapsed().as_secs_f64() * 1e3,
            oldest_ms,
            "group stored"
        );
        // Acknowledge after the commit: the broker may forget the publishes now, and the
        // agents may drop the readings from their disk buffers.
        for (i, (incoming, verdict)) in group.iter().enumerate() {
            let _ = self.client.ack(&incoming.publish).await;
            if let Ok(accepted) = verdict
                && !refused.contains(&i)
            {
                self.send_commit_ack(&accepted.batch).await;
                let lag = (Utc::now() - incoming.received).num_microseconds().unwrap_or(0) as f64 / 1e6;
                metrics::histogram!("gridmesh_ingest_receive_to_commit_seconds").record(lag);
            }
        }
    }

    /// Stores each batch on its own; returns the indices of the batches the database refused,
    /// or `None` when told to stop before it finished.
    async fn store_one_by_one(
        &mut self,
        group: &[(Incoming, Result<Accepted, Rejection>)],
        rows: &[IngestRow<'_>],
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Vec<usize>> {
        let mut refused = Vec::new();
        for (i, (incoming, verdict)) in group.iter().enumerate() {
            let Ok(accepted) = verdict else { continue };
            let mine: Vec<IngestRow<'_>> = rows
                .iter()
                .filter(|r| {
                    r.agent == accepted.batch.agent && accepted.batch.sequenced().any(|(s, _)| s == r.seq)
                })
                .copied()
                .collect();
            loop {
                match gridmesh_db::commit_ingest(&self.pool, &mine).await {
                    Ok(_) => break,
                    Err(e) if e.is_retryable() => {
                        tokio::select! {
                            _ = stop.changed() => return None,
                            () = tokio::time::sleep(Duration::from_millis(500)) => {}
                        }
                    }
                    Err(e) => {
                        metrics::counter!("gridmesh_ingest_rejected_total", "reason" => Rejection::Refused.as_str()).increment(1);
                        let topic = String::from_utf8_lossy(&incoming.publish.topic).into_owned();
                        self.log.warn(Rejection::Refused.as_str(), &topic, &e.to_string());
                        refused.push(i);
                        break;
                    }
                }
            }
        }
        Some(refused)
    }

    async fn send_commit_ack(&self, batch: &TelemetryBatch) {
        let ack = Message::Ack(Ack::TelemetryCommitted(TelemetryCommitted {
            agent: batch.agent,
            site: batch.site,
            first_seq: batch.first_seq,
            last_seq: batch.last_seq(),
        }));
        match gridmesh_wire::encode(&ack, &self.config.server_key) {
            Ok(bytes) => {
                let topic = topics::topic(batch.site, Channel::TelemetryAck);
                if let Err(e) = self.client.publish(topic, QoS::AtLeastOnce, false, bytes).await {
                    tracing::warn!(error = %e, "cannot queue the commit acknowledgement");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode a commit acknowledgement"),
        }
    }
}
