//! The subcommands of the `gridmesh` binary.

use std::io::Write;

use anyhow::Context;
use chrono::{Duration, Utc};
use gridmesh_db::{NewUser, UserFilter};
use tokio::net::TcpListener;

use crate::config::{
    ChainCommand, Cli, Command, OptimizeArgs, RequestCommand, RequestKindArg, SolverArg, TokenCommand,
    UserCommand, VerifyArgs,
};
use crate::serve::{self, connect_db};

/// Runs the subcommand chosen on the command line.
///
/// # Errors
/// Whatever stopped it, with context for the operator.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(config) => run_service(config, serve::Role::Serve).await,
        Command::Ingest(config) => run_service(config, serve::Role::Ingest).await,
        Command::Migrate(db) => {
            let pool = connect_db(&db).await?;
            serve::migrate(&pool).await?;
            pool.close().await;
            Ok(())
        }
        Command::User(UserCommand::Add { db, name, role, email }) => {
            let pool = connect_db(&db).await?;
            let user = gridmesh_db::create_user(&pool, &NewUser { name, email, role })
                .await
                .context("creating the user")?;
            out(format_args!("{}\n", user.id))
        }
        Command::User(UserCommand::List { db, role }) => {
            let pool = connect_db(&db).await?;
            let users = gridmesh_db::list_users(&pool, &UserFilter { role, after: None, limit: 1000 })
                .await
                .context("listing users")?;
            let mut text = String::new();
            for u in users {
                text.push_str(&format!("{}\t{}\t{}\n", u.id, u.role, u.name));
            }
            out(format_args!("{text}"))
        }
        Command::Token(TokenCommand::Issue { db, user, label, expires_in_days }) => {
            let pool = connect_db(&db).await?;
            let expires = expires_in_days.map(|d| Utc::now() + Duration::days(i64::from(d)));
            let (meta, token) = gridmesh_db::issue_token(&pool, user, &label, expires)
                .await
                .map_err(|e| match e.constraint() {
                    Some("api_tokens_user_id_fkey") => anyhow::anyhow!("no user with id {user}"),
                    _ => anyhow::Error::new(e),
                })
                .context("issuing the token")?;
            eprintln!("token id {} (use it to revoke); the token below is shown only once:", meta.id);
            out(format_args!("{token}\n"))
        }
        Command::Verify(args) => {
            let code = verify(&args).await;
            std::process::exit(code)
        }
        Command::Chain(ChainCommand::Deploy { chain, genesis }) => {
            let url = chain
                .chain_rpc_url
                .clone()
                .context("--chain-rpc-url (GRIDMESH_CHAIN_RPC_URL) is required")?;
            let key = chain
                .operator_key()
                .map_err(anyhow::Error::msg)?
                .context("an operator key is required (GRIDMESH_OPERATOR_KEY or --operator-key-file)")?;
            let client = gridmesh_chain::Chain::connect(&url, Some(gridmesh_chain::parse_key(&key)?))
                .await
                .context("connecting to the chain")?;
            let genesis = gridmesh_core::Period::containing(genesis.unwrap_or_else(Utc::now));
            let deployment = client.deploy(genesis).await.context("deploying the contracts")?;
            let file = crate::jobs::anchor::DeploymentFile { deployment, genesis_period: genesis.index() };
            let text = serde_json::to_string_pretty(&file).context("encoding the deployment")?;
            if let Some(dir) = chain.chain_deployment.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(&chain.chain_deployment, format!("{text}\n"))
                .with_context(|| format!("writing {}", chain.chain_deployment.display()))?;
            out(format_args!("{text}\n"))
        }
        Command::Optimize(args) => optimize(&args),
        Command::Request(command) => request(command).await,
        Command::Grid(command) => grid(command).await,
        Command::Site(command) => site(command).await,
        Command::Token(TokenCommand::Revoke { db, id }) => {
            let pool = connect_db(&db).await?;
            if gridmesh_db::revoke_token(&pool, id).await.context("revoking the token")? {
                out(format_args!("revoked {id}\n"))
            } else {
                anyhow::bail!("no live token with id {id}")
            }
        }
    }
}

/// `gridmesh grid ...`: the same checks and changes as `POST /v1/grid/import`.
async fn grid(command: crate::config::GridCommand) -> anyhow::Result<()> {
    use crate::config::{GridCommand, GridFormatArg};
    match command {
        GridCommand::Import { db, file, dry_run } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let json = file.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
            let parsed = if json {
                gridmesh_core::grid_file::GridFile::from_json(&text)
            } else {
                gridmesh_core::grid_file::GridFile::from_csv(&text)
            };
            let refused = |errors: Vec<gridmesh_core::grid_file::GridFileError>| {
                let list: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
                anyhow::anyhow!("{} was refused, nothing was changed:\n{}", file.display(), list.join("\n"))
            };
            let parsed = parsed.map_err(refused)?;
            let pool = connect_db(&db).await?;
            let plan = gridmesh_db::import_grid(&pool, dry_run, |stored, homes| {
                gridmesh_core::grid_file::plan(&parsed, stored, homes, gridmesh_core::GridNodeId::new_random)
            })
            .await
            .context("importing the grid")?
            .map_err(refused)?;
            let mut text = String::new();
            for c in &plan.changes {
                text.push_str(&format!("{}\t{}\n", c.code(), c.describe().join(", ")));
            }
            for w in &plan.warnings {
                text.push_str(&format!("warning: {w}\n"));
            }
            let verb = if dry_run { "would change" } else { "changed" };
            text.push_str(&format!("{verb} {} node(s), {} unchanged\n", plan.changes.len(), plan.unchanged));
            out(format_args!("{text}"))
        }
        GridCommand::Export { db, format } => {
            let pool = connect_db(&db).await?;
            let file = gridmesh_core::grid_file::export(&gridmesh_db::stored_grid(&pool).await?);
            match format {
                GridFormatArg::Csv => out(format_args!("{}", file.to_csv())),
                GridFormatArg::Json => out(format_args!("{}", file.to_json())),
            }
        }
        GridCommand::Show { db } => {
            let pool = connect_db(&db).await?;
            let stored = gridmesh_db::stored_grid(&pool).await?;
            let homes = gridmesh_db::homes_import_by_feeder(&pool).await?;
            let topology = gridmesh_db::load_topology(&pool).await?;
            let mut text = String::new();
            let mut stack: Vec<(gridmesh_core::GridNodeId, usize)> =
                stored.iter().filter(|s| s.node.parent.is_none()).rev().map(|s| (s.node.id, 0)).collect();
            while let Some((id, depth)) = stack.pop() {
                let Some(s) = stored.iter().find(|s| s.node.id == id) else { continue };
                let n = &s.node;
                let sites = topology.sites_on(id).len();
                text.push_str(&format!(
                    "{}{} {} ({}) import {} kW, export {} kW{}\n",
                    "  ".repeat(depth),
                    n.kind.as_str(),
                    n.name,
                    s.file_code(),
                    n.import_limit.get() as f64 / 1_000.0,
                    n.export_limit.get() as f64 / 1_000.0,
                    if n.kind == gridmesh_core::GridNodeKind::Feeder {
                        format!(
                            ", {sites} home(s) up to {} kW",
                            homes.get(&id).copied().unwrap_or(0) as f64 / 1_000.0
                        )
                    } else {
                        String::new()
                    }
                ));
                stack.extend(
                    stored.iter().filter(|c| c.node.parent == Some(id)).rev().map(|c| (c.node.id, depth + 1)),
                );
            }
            out(format_args!("{text}"))
        }
    }
}

/// `gridmesh site ...`.
async fn site(command: crate::config::SiteCommand) -> anyhow::Result<()> {
    use crate::config::SiteCommand;
    let kw = |w: gridmesh_core::Watts| w.get() as f64 / 1_000.0;
    match command {
        SiteCommand::List { db, pending } => {
            let pool = connect_db(&db).await?;
            let mut text = String::new();
            let line = |text: &mut String, h: &gridmesh_db::Home| {
                let s = &h.site;
                text.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\tPV {} kW\timport {} kW\t{}\n",
                    s.id,
                    s.owner,
                    h.status().as_str(),
                    s.feeder.map_or_else(|| "-".to_owned(), |f| f.to_string()),
                    s.name,
                    kw(s.rated_pv),
                    kw(s.grid.import_limit),
                    h.address.as_deref().unwrap_or("")
                ));
            };
            if pending {
                for h in gridmesh_db::pending_homes(&pool, None).await? {
                    line(&mut text, &h);
                }
            } else {
                let mut after = None;
                loop {
                    let page = gridmesh_db::list_homes(&pool, None, after, 1_000).await?;
                    for h in &page {
                        line(&mut text, h);
                    }
                    match page.last() {
                        Some(last) if page.len() == 1_000 => after = Some(last.site.id),
                        _ => break,
                    }
                }
            }
            out(format_args!("{text}"))
        }
        SiteCommand::Show { db, id } => {
            let pool = connect_db(&db).await?;
            let Some(h) = gridmesh_db::get_home(&pool, id).await? else {
                anyhow::bail!("no home with id {id}");
            };
            let s = &h.site;
            let mut text = format!(
                "{} ({})\nowner {}\nstatus {}\nfeeder {}\nPV {} kW{}, import {} kW, export {} kW{}\n",
                s.name,
                s.id,
                s.owner,
                h.status().as_str(),
                s.feeder.map_or_else(|| "none yet (pending)".to_owned(), |f| f.to_string()),
                kw(s.rated_pv),
                s.pv_orientation
                    .map_or(String::new(), |o| format!(" facing {}° tilted {}°", o.azimuth_deg, o.tilt_deg)),
                kw(s.grid.import_limit),
                kw(s.grid.export_limit),
                s.battery.map_or(String::new(), |b| format!(
                    ", battery {} kWh",
                    b.capacity.get() as f64 / 1_000.0
                ))
            );
            if let Some(a) = &h.address {
                text.push_str(&format!("address {a}\n"));
            }
            text.push_str(&format!("registered at {}\n", h.registered_at));
            if let Some(at) = h.assigned_at {
                text.push_str(&format!("assigned at {at}\n"));
            }
            if let Some(at) = h.decommissioned_at {
                text.push_str(&format!("decommissioned at {at}\n"));
            }
            for a in gridmesh_db::list_agents(&pool, id).await? {
                text.push_str(&format!(
                    "agent {} {:?}: {}, next seq {}, {} missing, last seen {}\n",
                    a.agent,
                    a.name,
                    if a.active_key.is_some() { "active" } else { "revoked" },
                    a.next_seq,
                    a.missing,
                    a.last_seen.map_or_else(|| "never".to_owned(), |t| t.to_string())
                ));
            }
            out(format_args!("{text}"))
        }
        SiteCommand::Assign { db, id, feeder } => {
            let pool = connect_db(&db).await?;
            let stored = gridmesh_db::stored_grid(&pool).await?;
            let node = stored
                .iter()
                .find(|s| s.code.as_deref() == Some(feeder.as_str()) || s.node.id.to_string() == feeder)
                .with_context(|| format!("no grid node with code or id {feeder:?}"))?;
            match gridmesh_db::assign_home(&pool, id, node.node.id).await {
                Ok(Some(site)) => {
                    out(format_args!("{} is on feeder {} ({})\n", site.id, node.file_code(), node.node.name))
                }
                Ok(None) => match gridmesh_db::get_home(&pool, id).await? {
                    Some(h) => anyhow::bail!("the home {id} is {}, not pending", h.status().as_str()),
                    None => anyhow::bail!("no home with id {id}"),
                },
                Err(e) if e.constraint() == Some("sites_feeder") => {
                    anyhow::bail!(
                        "{} is a {}, not a feeder: homes hang off feeders",
                        node.file_code(),
                        node.node.kind.as_str()
                    )
                }
                Err(e) => Err(anyhow::Error::new(e).context("assigning the home")),
            }
        }
    }
}

/// `gridmesh optimize`: solves an instance file, prints the summary, writes the plan.
fn optimize(args: &OptimizeArgs) -> anyhow::Result<()> {
    let path = &args.input;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let instance: gridmesh_optimizer::Instance = serde_json::from_str(&text)
        .with_context(|| format!("{} is not an optimizer instance", path.display()))?;
    instance.validate().with_context(|| format!("{} was refused", path.display()))?;
    let plan = match args.solver {
        SolverArg::Ipm => {
            gridmesh_optimizer::ipm::solve(&instance, &gridmesh_optimizer::ipm::IpmOptions::default())
        }
        SolverArg::Highs => gridmesh_optimizer::reference::solve(&instance),
    }
    .context("solving")?;
    if let Some(output) = &args.output {
        let json = serde_json::to_string_pretty(&plan).context("encoding the plan")?;
        std::fs::write(output, format!("{json}\n"))
            .with_context(|| format!("writing {}", output.display()))?;
    }
    out(format_args!("{}", plan.summary(&instance)))?;
    if let Some(output) = &args.output {
        out(format_args!("plan written to {}\n", output.display()))?;
    }
    Ok(())
}

/// `gridmesh request add | list | cancel`.
async fn request(command: RequestCommand) -> anyhow::Result<()> {
    match command {
        RequestCommand::Add { db, node, kind, kw, from, to, minutes, price } => {
            if !kw.is_finite() || kw.abs() > 1e9 {
                anyhow::bail!("--kw must be a finite number of kW, got {kw}");
            }
            let from = from.unwrap_or_else(Utc::now);
            let to = match (to, minutes) {
                (Some(t), _) => t,
                (None, Some(m)) => from + Duration::minutes(i64::from(m)),
                (None, None) => anyhow::bail!("give the window's end: --to or --minutes"),
            };
            if to <= from {
                anyhow::bail!("the window must end after it starts ({from} to {to})");
            }
            if price < 0 {
                anyhow::bail!("--price must not be negative");
            }
            let pool = connect_db(&db).await?;
            let new = gridmesh_db::NewUtilityRequest {
                node: node.map(gridmesh_core::GridNodeId),
                kind: match kind {
                    RequestKindArg::Target => gridmesh_db::RequestKind::Target,
                    RequestKindArg::Cap => gridmesh_db::RequestKind::Cap,
                    RequestKindArg::Floor => gridmesh_db::RequestKind::Floor,
                },
                power_w: (kw * 1_000.0).round() as i64,
                starts_at: from,
                ends_at: to,
                price_minor_per_kwh: price,
            };
            let r = gridmesh_db::create_utility_request(&pool, &new, None).await.map_err(|e| {
                match e.constraint() {
                    Some("utility_requests_node_id_fkey") => {
                        anyhow::anyhow!(
                            "no grid node with id {}",
                            node.map(|n| n.to_string()).unwrap_or_default()
                        )
                    }
                    _ => anyhow::Error::new(e),
                }
            })?;
            out(format_args!("{}\n", r.id))
        }
        RequestCommand::List { db } => {
            let pool = connect_db(&db).await?;
            let now = Utc::now();
            let list = gridmesh_db::utility_requests_between(&pool, now, now + Duration::days(3650)).await?;
            let mut text = String::new();
            for r in list {
                let q = &r.request;
                text.push_str(&format!(
                    "{}\t{}\t{}\t{} kW\t{} .. {}\t{} per kWh\n",
                    r.id,
                    q.node.map_or_else(|| "area".to_owned(), |n| n.to_string()),
                    q.kind.as_str(),
                    q.power_w as f64 / 1_000.0,
                    q.starts_at,
                    q.ends_at,
                    q.price_minor_per_kwh
                ));
            }
            out(format_args!("{text}"))
        }
        RequestCommand::Cancel { db, id } => {
            let pool = connect_db(&db).await?;
            if gridmesh_db::cancel_utility_request(&pool, id).await? {
                out(format_args!("withdrawn {id}\n"))
            } else {
                anyhow::bail!("no request in force with id {id}")
            }
        }
    }
}

async fn run_service(config: crate::config::ServeConfig, role: serve::Role) -> anyhow::Result<()> {
    tracing::debug!(?config, ?role, "configuration");
    let listener = TcpListener::bind(config.http_bind).await.with_context(|| {
        format!("cannot listen on {} (GRIDMESH_HTTP_BIND / --http-bind)", config.http_bind)
    })?;
    let service = serve::start(&config, role).await?;
    service.run(listener, serve::shutdown_signal(), config.shutdown_grace).await
}

/// `gridmesh verify`: prints a verdict and returns the exit code (0 included, 2 mismatch, 3 bad
/// input, 4 wrong period or site, 5 RPC unreachable, 6 not anchored).
async fn verify(args: &VerifyArgs) -> i32 {
    use crate::proof::{Verdict, VerifyError, fold_document, parse_hash, verdict};
    let period = match args.period.map(gridmesh_core::Period::starting_at).transpose() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: --period: {e}");
            return 3;
        }
    };
    let result: Result<(Verdict, String, String), VerifyError> = async {
        let doc = load_proof(args, period).await?;
        let (line, computed) = fold_document(&doc, period, args.site)?;
        let (expected, source) = match (&args.root, &args.rpc_url) {
            (Some(root), _) => (parse_hash(root, "--root")?, "the root given with --root".to_owned()),
            (None, Some(url)) => {
                let contract = args
                    .contract
                    .clone()
                    .or_else(|| doc.anchor.as_ref().map(|a| a.contract.clone()))
                    .ok_or_else(|| VerifyError::BadInput("no contract: pass --contract".into()))?;
                let address: alloy::primitives::Address = contract.parse().map_err(|_| {
                    VerifyError::BadInput(format!("--contract {contract:?} is not an address"))
                })?;
                let chain = gridmesh_chain::Chain::connect(url, None).await.map_err(|e| match e {
                    gridmesh_chain::ChainError::BadUrl { .. } => VerifyError::BadInput(e.to_string()),
                    other => VerifyError::Unreachable(other.to_string()),
                })?;
                let anchored = chain
                    .anchored(address, line.period)
                    .await
                    .map_err(|e| VerifyError::Unreachable(e.to_string()))?
                    .ok_or_else(|| {
                        VerifyError::NotAnchored(format!(
                            "period {} has no root in contract {contract} on chain {}",
                            line.period,
                            chain.chain_id()
                        ))
                    })?;
                (
                    anchored.root.0,
                    format!(
                        "the root anchored in block {} of chain {} (contract {contract})",
                        anchored.block_number,
                        chain.chain_id()
                    ),
                )
            }
            (None, None) => {
                return Err(VerifyError::BadInput(
                    "pass --rpc-url to check against the chain, or --root to check offline".into(),
                ));
            }
        };
        Ok((verdict(&computed, &expected), format!("site {} in period {}", line.site, line.period), source))
    }
    .await;
    match result {
        Ok((Verdict::Included, what, source)) => {
            let _ = out(format_args!("OK: the settlement line of {what} is in {source}\n"));
            0
        }
        Ok((Verdict::Mismatch { computed, expected }, what, source)) => {
            eprintln!(
                "FAILED: the line does not match {source} ({what}): line and proof give {computed}, expected {expected}. The line was changed, or the proof is not for it."
            );
            2
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

async fn load_proof(
    args: &VerifyArgs,
    period: Option<gridmesh_core::Period>,
) -> Result<crate::proof::ProofDocument, crate::proof::VerifyError> {
    use crate::proof::VerifyError;
    let text = match &args.proof_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| VerifyError::BadInput(format!("{}: {e}", path.display())))?,
        None => {
            let (Some(site), Some(period)) = (args.site, period) else {
                return Err(VerifyError::BadInput(
                    "pass --proof-file, or --site and --period to fetch the proof".into(),
                ));
            };
            let url = format!("{}/v1/settlements/{period}/sites/{site}", args.api_url.trim_end_matches('/'));
            let mut req = reqwest::Client::new().get(&url);
            if let Some(t) = &args.token {
                req = req.bearer_auth(&t.0);
            }
            let resp = req.send().await.map_err(|e| VerifyError::Unreachable(format!("{url}: {e}")))?;
            let status = resp.status();
            let body = resp.text().await.map_err(|e| VerifyError::Unreachable(format!("{url}: {e}")))?;
            if !status.is_success() {
                return Err(VerifyError::BadInput(format!("{url} answered {status}: {body}")));
            }
            body
        }
    };
    serde_json::from_str(&text).map_err(|e| VerifyError::BadInput(format!("not a proof document: {e}")))
}

/// Writes a command's result to stdout (logs go to stderr, so output can be piped).
fn out(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_fmt(args).context("writing to stdout")?;
    stdout.flush().context("writing to stdout")
}
