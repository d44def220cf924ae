//! Command line and environment: one typed configuration per subcommand.
//!
//! Every setting has a flag and an environment variable (`GRIDMESH_*`); flags win. Secrets in
//! URLs are hidden from `Debug` and from logs.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use gridmesh_core::{Role, UserId};
use url::Url;

/// Agents with an active key a home may have unless configured otherwise.
pub const DEFAULT_MAX_AGENTS_PER_SITE: u32 = 4;

/// Default database, as created by `scripts/setup`.
pub const DEFAULT_DATABASE_URL: &str = "postgres://gridmesh:gridmesh@127.0.0.1:5432/gridmesh";

/// gridmesh: energy grid coordination for homes with solar and batteries.
#[derive(Debug, Parser)]
#[command(name = "gridmesh", version, propagate_version = true)]
pub struct Cli {
    /// Log output: `pretty` for people, `json` for log collectors.
    #[arg(long, env = "GRIDMESH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,

    /// Which logs to show, as a tracing filter (`info`, `gridmesh_server=debug,info`, ...).
    #[arg(long, env = "GRIDMESH_LOG", default_value = "info", global = true)]
    pub log_filter: String,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the central service: apply pending migrations, then serve the HTTP API (health,
    /// readiness, metrics, /v1) until SIGTERM or Ctrl-C, and keep the broker link up.
    Serve(ServeConfig),
    /// Run only the telemetry ingest worker (with /healthz, /readyz and /metrics on
    /// --http-bind): for scaling ingest out in replicas that share the telemetry.
    Ingest(ServeConfig),
    /// Apply pending database migrations and exit. `serve` does this too; run it alone to
    /// migrate ahead of a rolling deployment.
    Migrate(DbConfig),
    /// Manage user accounts (for bootstrapping the first operator; later, the API does it).
    #[command(subcommand)]
    User(UserCommand),
    /// Issue and revoke API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Check a settlement line against its on-chain anchor (or a given root) and print a
    /// verdict; exits 0 only when the line is included.
    Verify(VerifyArgs),
    /// Chain tools: deploy the contracts.
    #[command(subcommand)]
    Chain(ChainCommand),
    /// Solve a balancing instance file and print a summary (cost, binding constraints, node
    /// peaks before and after); the instance format is in docs/optimizer.md.
    Optimize(OptimizeArgs),
    /// The grid as a file: import a whole grid (CSV or JSON, all or nothing, --dry-run to see
    /// what would change), export it, or show it as a tree.
    #[command(subcommand)]
    Grid(GridCommand),
    /// Homes: list them (or those waiting for their feeder), show one, assign one to its feeder.
    #[command(subcommand)]
    Site(SiteCommand),
    /// Utility requests on a node's (or the whole area's) net power, which the dispatch loop
    /// plans around.
    #[command(subcommand)]
    Request(RequestCommand),
}

/// `gridmesh optimize`.
#[derive(Debug, Clone, Args)]
pub struct OptimizeArgs {
    /// The instance, JSON (docs/optimizer.md).
    #[arg(long)]
    pub input: std::path::PathBuf,
    /// Where to write the whole plan, JSON.
    #[arg(long)]
    pub output: Option<std::path::PathBuf>,
    /// Which solver: the structured interior-point method, or HiGHS on the monolithic LP.
    #[arg(long, value_enum, default_value_t = SolverArg::Ipm)]
    pub solver: SolverArg,
}

/// `--solver` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SolverArg {
    /// gridmesh's structured interior-point solver.
    Ipm,
    /// HiGHS (interior point) on the monolithic formulation: the reference.
    Highs,
}

/// `gridmesh request ...`.
#[derive(Debug, Subcommand)]
pub enum RequestCommand {
    /// Add a request and print its id.
    Add {
        #[command(flatten)]
        db: DbConfig,
        /// The grid node (feeder or transformer id); without it, the whole area.
        #[arg(long)]
        node: Option<uuid::Uuid>,
        /// Target, cap or floor on the net power (import positive).
        #[arg(long, value_enum)]
        kind: RequestKindArg,
        /// The power, kW (negative for export), e.g. 40 or -12.5.
        #[arg(long, allow_negative_numbers = true)]
        kw: f64,
        /// Window start, RFC 3339 (default: now).
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// Window end, RFC 3339; or give --minutes.
        #[arg(long, conflicts_with = "minutes")]
        to: Option<chrono::DateTime<chrono::Utc>>,
        /// Window length from --from, minutes.
        #[arg(long)]
        minutes: Option<u32>,
        /// Price of deviation, minor units per kWh.
        #[arg(long, default_value_t = 500)]
        price: i64,
    },
    /// List requests in force now or later.
    List {
        #[command(flatten)]
        db: DbConfig,
    },
    /// Withdraw a request.
    Cancel {
        #[command(flatten)]
        db: DbConfig,
        /// The request's id.
        id: uuid::Uuid,
    },
}

/// `gridmesh grid ...`.
#[derive(Debug, Subcommand)]
pub enum GridCommand {
    /// Import a grid file (`.csv` or `.json`; nodes matched by code, so the same file twice
    /// changes nothing); prints each change and warnings.
    Import {
        #[command(flatten)]
        db: DbConfig,
        /// The file.
        file: std::path::PathBuf,
        /// Only print what would change.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the grid as a file that imports back unchanged.
    Export {
        #[command(flatten)]
        db: DbConfig,
        /// csv or json.
        #[arg(long, value_enum, default_value_t = GridFormatArg::Csv)]
        format: GridFormatArg,
    },
    /// Print the grid as a tree with limits and homes per feeder.
    Show {
        #[command(flatten)]
        db: DbConfig,
    },
}

/// `gridmesh site ...`.
#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// One line a home: id, owner, feeder, name, ratings.
    List {
        #[command(flatten)]
        db: DbConfig,
        /// Only the homes waiting for their feeder.
        #[arg(long)]
        pending: bool,
    },
    /// A home's details, its agents and its latest reading.
    Show {
        #[command(flatten)]
        db: DbConfig,
        /// The home's id.
        id: gridmesh_core::SiteId,
    },
    /// Put a pending home on its feeder (by the feeder's code or id).
    Assign {
        #[command(flatten)]
        db: DbConfig,
        /// The home's id.
        id: gridmesh_core::SiteId,
        /// The feeder: its code (as in the grid file) or its id.
        #[arg(long)]
        feeder: String,
    },
}

/// `--format` of `gridmesh grid export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GridFormatArg {
    /// CSV with a header row.
    Csv,
    /// JSON.
    Json,
}

/// `--kind` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RequestKindArg {
    /// Follow the power.
    Target,
    /// Stay at or below it.
    Cap,
    /// Stay at or above it.
    Floor,
}

/// Database settings shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct DbConfig {
    /// PostgreSQL URL: postgres://user:password@host:port/database
    #[arg(long, env = "GRIDMESH_DATABASE_URL", default_value = DEFAULT_DATABASE_URL, value_parser = SecretParser(parse_database_url), hide_env_values = true)]
    pub database_url: SecretUrl,

    /// How long to keep retrying an unreachable database at start-up, in seconds.
    #[arg(long, env = "GRIDMESH_DB_CONNECT_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub db_connect_timeout: Duration,

    /// Most database connections the service holds open.
    #[arg(long, env = "GRIDMESH_DB_MAX_CONNECTIONS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,
}

/// Settings of `gridmesh serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Database settings.
    #[command(flatten)]
    pub db: DbConfig,

    /// Address the HTTP API listens on (host:port; port 0 picks a free port).
    #[arg(long, env = "GRIDMESH_HTTP_BIND", default_value = "127.0.0.1:8080")]
    pub http_bind: SocketAddr,

    /// MQTT broker URL: mqtt://[user:password@]host[:port]
    #[arg(long, env = "GRIDMESH_MQTT_URL", default_value = "mqtt://127.0.0.1:1883", value_parser = SecretParser(parse_mqtt_url), hide_env_values = true)]
    pub mqtt_url: MqttUrl,

    /// The broker URL agents should use, told to each agent when it enrols with a code (for
    /// example mqtts://broker.example:8883); without it agents keep the URL they were set up with.
    #[arg(long, env = "GRIDMESH_AGENT_BROKER_URL", value_parser = parse_agent_broker_url)]
    pub agent_broker_url: Option<String>,

    /// Most agents with an active key one home may have; enrolling another is refused until
    /// one is revoked.
    #[arg(long, env = "GRIDMESH_MAX_AGENTS_PER_SITE", default_value_t = DEFAULT_MAX_AGENTS_PER_SITE, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_agents_per_site: u32,

    /// MQTT client id prefix; a random suffix keeps replicas apart.
    #[arg(long, env = "GRIDMESH_MQTT_CLIENT_ID", default_value = "gridmesh-server")]
    pub mqtt_client_id: String,

    /// Background jobs this process runs, comma-separated: dispatch, market, settlement, anchor,
    /// partitions, retention, or all / none. Default: all for `serve`, partitions and retention
    /// for `ingest`. Several processes may run the same job: one holds its lease (a PostgreSQL
    /// advisory lock) and runs it, the others stand by. The --no-* flags below take a job out.
    #[arg(long, env = "GRIDMESH_JOBS", value_enum, value_delimiter = ',')]
    pub jobs: Option<Vec<crate::jobs::JobArg>>,

    /// Seconds to let in-flight requests finish after SIGTERM before exiting.
    #[arg(long, env = "GRIDMESH_SHUTDOWN_GRACE", default_value = "10", value_parser = parse_seconds)]
    pub shutdown_grace: Duration,

    /// Telemetry ingest settings.
    #[command(flatten)]
    pub ingest: IngestArgs,

    #[command(flatten)]
    pub market: MarketArgs,

    #[command(flatten)]
    pub settlement: SettlementArgs,

    #[command(flatten)]
    pub chain: ChainArgs,

    #[command(flatten)]
    pub dispatch: DispatchArgs,
}

/// Grid balancing: the closed loop that plans the batteries and sends setpoints.
#[derive(Debug, Clone, Args)]
pub struct DispatchArgs {
    /// Run no dispatch loop in this process (no plans, no setpoints).
    #[arg(long, env = "GRIDMESH_NO_DISPATCH")]
    pub no_dispatch: bool,

    /// Length of a dispatch step, seconds (a plan is made and setpoints are sent each step).
    #[arg(long, env = "GRIDMESH_DISPATCH_STEP_SECONDS", default_value_t = gridmesh_optimizer::grid::DEFAULT_STEP_SECONDS, value_parser = clap::value_parser!(u32).range(10..=3_600))]
    pub dispatch_step_seconds: u32,

    /// Steps in the planning horizon (96 steps of 15 minutes = one day).
    #[arg(long, env = "GRIDMESH_DISPATCH_STEPS", default_value_t = gridmesh_optimizer::grid::DEFAULT_STEPS, value_parser = clap::value_parser!(u32).range(1..=1_440))]
    pub dispatch_steps: u32,

    /// Battery wear the plan counts, minor units per kWh charged or discharged.
    #[arg(long, env = "GRIDMESH_DISPATCH_DEGRADATION", default_value_t = gridmesh_optimizer::grid::DEFAULT_DEGRADATION, value_parser = clap::value_parser!(i64).range(0..=1_000_000))]
    pub dispatch_degradation: i64,
}

/// Settlement: when a period settles and at which prices.
#[derive(Debug, Clone, Args)]
pub struct SettlementArgs {
    /// Run no settlement, anchoring or reward job in this process.
    #[arg(long, env = "GRIDMESH_NO_SETTLEMENT")]
    pub no_settlement: bool,

    /// Seconds after a period ends at which it settles even if some sites have not reported.
    #[arg(long, env = "GRIDMESH_SETTLEMENT_GRACE", default_value = "300", value_parser = parse_seconds)]
    pub settlement_grace: Duration,

    /// The utility's price for energy drawn beyond the market position, minor units per kWh.
    #[arg(long, env = "GRIDMESH_TARIFF_IMPORT", default_value_t = crate::jobs::settlement::DEFAULT_TARIFFS.import_price, value_parser = clap::value_parser!(i64).range(0..=1_000_000))]
    pub tariff_import: i64,

    /// The utility's price for energy delivered beyond the market position, minor units per kWh.
    #[arg(long, env = "GRIDMESH_TARIFF_FEED_IN", default_value_t = crate::jobs::settlement::DEFAULT_TARIFFS.feed_in_price, value_parser = clap::value_parser!(i64).range(0..=1_000_000))]
    pub tariff_feed_in: i64,

    /// Network fee on gross metered import, minor units per kWh.
    #[arg(long, env = "GRIDMESH_TARIFF_GRID_FEE", default_value_t = crate::jobs::settlement::DEFAULT_TARIFFS.grid_fee_per_kwh, value_parser = clap::value_parser!(i64).range(0..=1_000_000))]
    pub tariff_grid_fee: i64,

    /// Fixed fee per site and UTC day, minor units.
    #[arg(long, env = "GRIDMESH_TARIFF_DAILY_FEE", default_value_t = crate::jobs::settlement::DEFAULT_TARIFFS.daily_fee, value_parser = clap::value_parser!(i64).range(0..=1_000_000))]
    pub tariff_daily_fee: i64,
}

/// The EVM chain settlement roots are anchored on.
#[derive(Debug, Clone, Args)]
pub struct ChainArgs {
    /// JSON-RPC endpoint; without it nothing is anchored or published.
    #[arg(long, env = "GRIDMESH_CHAIN_RPC_URL")]
    pub chain_rpc_url: Option<String>,

    /// The contracts' addresses, as written by `gridmesh chain deploy`.
    #[arg(long, env = "GRIDMESH_CHAIN_DEPLOYMENT", default_value = ".gridmesh/contracts.json")]
    pub chain_deployment: std::path::PathBuf,

    /// File holding the operator's private key (hex); read once, never logged.
    #[arg(long, env = "GRIDMESH_OPERATOR_KEY_FILE")]
    pub operator_key_file: Option<std::path::PathBuf>,

    /// The operator's private key itself (hex), instead of a file.
    #[arg(long = "operator-key", env = "GRIDMESH_OPERATOR_KEY", hide_env_values = true, hide = true)]
    pub operator_key: Option<SecretString>,

    /// Blocks to wait on top of an anchoring transaction before it counts as confirmed.
    #[arg(long, env = "GRIDMESH_CHAIN_CONFIRMATIONS", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub chain_confirmations: u64,

    /// Seconds to wait for a transaction's receipt before checking the chain and re-sending.
    #[arg(long, env = "GRIDMESH_CHAIN_TX_TIMEOUT", default_value = "60", value_parser = parse_seconds)]
    pub chain_tx_timeout: Duration,
}

/// A secret from the command line or the environment: hidden from `Debug`.
#[derive(Clone)]
pub struct SecretString(pub String);

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(***)")
    }
}

impl FromStr for SecretString {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl ChainArgs {
    /// The operator key, from the environment/flag or the file.
    ///
    /// # Errors
    /// An unreadable file (named).
    pub fn operator_key(&self) -> Result<Option<String>, String> {
        if let Some(k) = &self.operator_key {
            return Ok(Some(k.0.trim().to_owned()));
        }
        match &self.operator_key_file {
            Some(path) => std::fs::read_to_string(path)
                .map(|s| Some(s.trim().to_owned()))
                .map_err(|e| format!("cannot read the operator key file {}: {e}", path.display())),
            None => Ok(None),
        }
    }
}

/// `gridmesh verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The site whose line to check.
    #[arg(long)]
    pub site: Option<gridmesh_core::SiteId>,
    /// The period's start (RFC 3339, e.g. 2026-12-01T18:15:00Z).
    #[arg(long)]
    pub period: Option<chrono::DateTime<chrono::Utc>>,
    /// A saved proof (the JSON of GET /v1/settlements/{period}/sites/{site}); otherwise it is
    /// fetched from --api-url.
    #[arg(long)]
    pub proof_file: Option<std::path::PathBuf>,
    /// The gridmesh API to fetch the proof from.
    #[arg(long, env = "GRIDMESH_API_URL", default_value = "http://127.0.0.1:8080")]
    pub api_url: String,
    /// API token for --api-url.
    #[arg(long, env = "GRIDMESH_API_TOKEN", hide_env_values = true)]
    pub token: Option<SecretString>,
    /// JSON-RPC endpoint to read the anchored root from.
    #[arg(long, env = "GRIDMESH_CHAIN_RPC_URL")]
    pub rpc_url: Option<String>,
    /// The SettlementAnchor contract (default: the one named in the proof).
    #[arg(long)]
    pub contract: Option<String>,
    /// Check offline against this root (hex) instead of the chain.
    #[arg(long)]
    pub root: Option<String>,
}

/// `gridmesh chain ...`.
#[derive(Debug, Subcommand)]
pub enum ChainCommand {
    /// Deploy SettlementAnchor, MeterRegistry and RewardDistributor (with its token), with the
    /// operator as owner and operator, and write their addresses to --chain-deployment.
    Deploy {
        #[command(flatten)]
        chain: ChainArgs,
        /// First period with token rewards (RFC 3339); default: the current period.
        #[arg(long)]
        genesis: Option<chrono::DateTime<chrono::Utc>>,
    },
}

/// The peer-to-peer market: rules, and the jobs that clear it and trade for strategies.
#[derive(Debug, Clone, Args)]
pub struct MarketArgs {
    /// Run neither the clearing job nor the strategy job in this process (the API still works).
    #[arg(long, env = "GRIDMESH_NO_MARKET")]
    pub no_market: bool,

    /// Seconds before a delivery period starts at which its order book closes and it clears.
    #[arg(long, env = "GRIDMESH_MARKET_GATE_CLOSURE", default_value_t = 300, value_parser = clap::value_parser!(u32).range(0..=86_400))]
    pub market_gate_closure: u32,

    /// How trades are priced: one price per zone, or each side at its own limit.
    #[arg(long, env = "GRIDMESH_MARKET_PRICING", value_enum, default_value_t = PricingArg::PayAsClear)]
    pub market_pricing: PricingArg,

    /// Highest limit price, minor currency units per kWh.
    #[arg(long, env = "GRIDMESH_MARKET_MAX_PRICE", default_value_t = 10_000, value_parser = clap::value_parser!(i64).range(1..=1_000_000_000))]
    pub market_max_price: i64,

    /// Largest order, Wh per period.
    #[arg(long, env = "GRIDMESH_MARKET_MAX_ORDER_WH", default_value_t = 1_000_000, value_parser = clap::value_parser!(i64).range(1..=1_000_000_000_000))]
    pub market_max_order_wh: i64,

    /// How far ahead orders may be placed, days.
    #[arg(long, env = "GRIDMESH_MARKET_HORIZON_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=366))]
    pub market_horizon_days: u32,

    /// Network fee per kWh for each feeder a trade's path touches, minor units.
    #[arg(long, env = "GRIDMESH_MARKET_FEE_FEEDER", default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..=1_000_000))]
    pub market_fee_feeder: i64,

    /// Network fee per kWh for each transformer a trade's path crosses, minor units.
    #[arg(long, env = "GRIDMESH_MARKET_FEE_TRANSFORMER", default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..=1_000_000))]
    pub market_fee_transformer: i64,

    /// Seconds between the market jobs' checks for periods to clear and strategies to run.
    #[arg(long, env = "GRIDMESH_MARKET_TICK", default_value = "5", value_parser = parse_seconds)]
    pub market_tick: Duration,
}

/// `--market-pricing` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PricingArg {
    /// Uniform price per zone.
    PayAsClear,
    /// Each side at its own limit price.
    PayAsBid,
}

/// Settings of the telemetry ingest worker (part of `serve`, or alone as `ingest`).
#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Do not run the ingest worker in this process (run `gridmesh ingest` replicas instead).
    #[arg(long, env = "GRIDMESH_NO_INGEST")]
    pub no_ingest: bool,

    /// MQTT client id of the ingest worker. Keep it stable per replica: the broker keeps the
    /// unacknowledged telemetry of that id across restarts.
    #[arg(long, env = "GRIDMESH_INGEST_CLIENT_ID", default_value = "gridmesh-ingest-1")]
    pub ingest_client_id: String,

    /// Shared-subscription group: replicas with the same group split the telemetry. Empty for a
    /// plain subscription.
    #[arg(long, env = "GRIDMESH_INGEST_GROUP", default_value = "gridmesh-ingest")]
    pub ingest_group: String,

    /// Most readings stored in one transaction.
    #[arg(long, env = "GRIDMESH_INGEST_MAX_GROUP", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub ingest_max_group: u32,

    /// Milliseconds a batch may wait for others to share its transaction.
    #[arg(long, env = "GRIDMESH_INGEST_MAX_WAIT_MS", default_value_t = 25, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub ingest_max_wait_ms: u32,

    /// Days of raw telemetry to keep (15-minute energy is kept for good); 0 keeps everything.
    #[arg(long, env = "GRIDMESH_RAW_RETENTION_DAYS", default_value_t = 400)]
    pub raw_retention_days: u32,

    /// File with the server's ed25519 signing key (64 hex digits); created, readable only by
    /// its owner, when missing. Agents verify commit acknowledgements and setpoints with it.
    #[arg(long, env = "GRIDMESH_SERVER_KEY_FILE", default_value = ".gridmesh/server.key")]
    pub server_key_file: std::path::PathBuf,
}

/// `gridmesh user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user and print its id.
    Add {
        /// Database settings.
        #[command(flatten)]
        db: DbConfig,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Role: homeowner, prosumer, utility, regulator or operator.
        #[arg(long)]
        role: Role,
        /// Contact email.
        #[arg(long)]
        email: Option<String>,
    },
    /// List users (id, role, name).
    List {
        /// Database settings.
        #[command(flatten)]
        db: DbConfig,
        /// Only this role.
        #[arg(long)]
        role: Option<Role>,
    },
}

/// `gridmesh token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token for a user and print it. It is shown once; only its hash is stored.
    Issue {
        /// Database settings.
        #[command(flatten)]
        db: DbConfig,
        /// The user's id.
        #[arg(long)]
        user: UserId,
        /// A label to tell tokens apart.
        #[arg(long, default_value = "")]
        label: String,
        /// Days until the token expires (never, if not given).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
        expires_in_days: Option<u32>,
    },
    /// Revoke a token by its id.
    Revoke {
        /// Database settings.
        #[command(flatten)]
        db: DbConfig,
        /// The token's id (printed by `issue`).
        id: uuid::Uuid,
    },
}

/// A URL whose password never appears in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(Url);

impl SecretUrl {
    /// The full URL, password included: pass it to the client library, never to a log.
    #[must_use]
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// The URL with the password (in the user part or a `password=` query parameter) replaced
    /// by `***`, for logs and messages.
    #[must_use]
    pub fn redacted(&self) -> String {
        let mut u = self.0.clone();
        if u.password().is_some() {
            // Setting a password only fails for URLs that cannot have one.
            let _ = u.set_password(Some("***"));
        }
        if u.query_pairs().any(|(k, _)| k == "password") {
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "password" { "***".to_owned() } else { v.into_owned() };
                    (k.into_owned(), v)
                })
                .collect();
            u.query_pairs_mut().clear().extend_pairs(pairs);
        }
        u.to_string()
    }

    /// The parsed URL.
    #[must_use]
    pub fn url(&self) -> &Url {
        &self.0
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The central broker's address: the one broker-address type every gridmesh process uses.
pub type MqttUrl = gridmesh_mqtt::BrokerAddr;

/// Parses `--agent-broker-url`: a broker URL without credentials (each agent has its own).
fn parse_agent_broker_url(s: &str) -> Result<String, String> {
    let addr = MqttUrl::parse(s).map_err(|e| e.to_string())?;
    if addr.username.is_some() {
        return Err("no credentials in the agents' broker URL: each agent gets its own".into());
    }
    Ok(addr.to_string())
}

/// Parses `--mqtt-url`. The server talks to its broker without TLS for now (run it next to the
/// broker, or behind a TLS-terminating proxy), so `mqtts://` is refused with that reason.
fn parse_mqtt_url(s: &str) -> Result<MqttUrl, String> {
    let addr = MqttUrl::parse(s).map_err(|e| e.to_string())?;
    if addr.tls {
        return Err(format!(
            "TLS to the central broker is not supported by the server yet; run it next to the broker and use mqtt:// ({})",
            gridmesh_mqtt::URL_FORM
        ));
    }
    Ok(addr)
}

/// A value parser whose errors name the setting and the expected form but never repeat the
/// value, which may hold a password (clap's own errors echo it).
#[derive(Clone)]
struct SecretParser<T>(fn(&str) -> Result<T, String>);

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for SecretParser<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let name = arg.map_or_else(
            || "value".to_owned(),
            |a| {
                let env = a.get_env().map(|e| format!(" ({})", e.to_string_lossy())).unwrap_or_default();
                format!("{a}{env}")
            },
        );
        let fail = |reason: String| {
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("invalid {name}: {reason}\n"))
                .with_cmd(cmd)
        };
        let text = value.to_str().ok_or_else(|| fail("not valid UTF-8".into()))?;
        (self.0)(text).map_err(fail)
    }
}

fn parse_database_url(s: &str) -> Result<SecretUrl, String> {
    const FORM: &str = "expected postgres://user:password@host:port/database";
    let url = Url::parse(s).map_err(|e| format!("{e}; {FORM}"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(format!("unknown scheme {:?}; {FORM}", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) && !url.query().is_some_and(|q| q.contains("host=")) {
        return Err(format!("no host; {FORM}"));
    }
    Ok(SecretUrl(url))
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: u64 = s
        .trim()
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("expected a whole number of seconds such as 30, got {s:?}"))?;
    if secs > 86_400 {
        return Err(format!("expected at most 86400 seconds, got {secs}"));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let db = parse_database_url("postgres://u:hunter2@db:5432/x").unwrap();
        assert!(!format!("{db:?}").contains("hunter2"));
        assert!(db.expose().contains("hunter2"));
        let mqtt = parse_mqtt_url("mqtt://u:hunter2@broker").unwrap();
        assert!(!format!("{mqtt:?}").contains("hunter2"));
        assert_eq!(mqtt.password(), Some("hunter2"));
        assert_eq!(mqtt.port, 1883);
    }

    #[test]
    fn credentials_are_percent_decoded_and_query_passwords_hidden() {
        let mqtt = parse_mqtt_url("mqtt://ops%40site:p%40ss%3Aw@broker").unwrap();
        assert_eq!(mqtt.username.as_deref(), Some("ops@site"));
        assert_eq!(mqtt.password(), Some("p@ss:w"));
        let db = parse_database_url("postgres://db/x?user=u&password=hunter2").unwrap();
        assert!(!db.redacted().contains("hunter2"), "{}", db.redacted());
        assert!(db.redacted().contains("user=u"));
    }

    #[test]
    fn bad_settings_name_the_expected_form() {
        assert!(parse_mqtt_url("localhost:1883").unwrap_err().contains("expected mqtt://"));
        assert!(parse_mqtt_url("http://x").unwrap_err().contains("unknown scheme"));
        assert!(parse_mqtt_url("mqtts://x").unwrap_err().contains("TLS"));
        assert!(parse_database_url("mysql://x/y").unwrap_err().contains("expected postgres://"));
        assert!(parse_seconds("soon").unwrap_err().contains("whole number of seconds"));
        assert_eq!(parse_seconds("15s").unwrap(), Duration::from_secs(15));
    }

    #[test]
    fn the_environment_configures_serve() {
        let cli = Cli::try_parse_from([
            "gridmesh",
            "serve",
            "--http-bind",
            "0.0.0.0:9000",
            "--mqtt-url",
            "mqtt://broker:1884",
        ])
        .unwrap();
        let Command::Serve(cfg) = cli.command else { panic!("expected serve") };
        assert_eq!(cfg.http_bind.port(), 9000);
        assert_eq!(cfg.mqtt_url.host, "broker");
        assert_eq!(cfg.mqtt_url.port, 1884);
        assert!(Cli::try_parse_from(["gridmesh", "serve", "--http-bind", "nope"]).is_err());
        assert_eq!(parse_agent_broker_url("mqtts://broker.example").unwrap(), "mqtts://broker.example:8883");
        assert!(parse_agent_broker_url("mqtts://u:p@broker").unwrap_err().contains("no credentials"));
        assert!(parse_agent_broker_url("broker:1883").unwrap_err().contains("expected mqtt://"));
        assert!(Cli::try_parse_from(["gridmesh", "frobnicate"]).is_err());
    }
}
