//! The subcommands of the `gridmesh` binary.

use std::io::Write;

use anyhow::Context;
use chrono::{Duration, Utc};
use gridmesh_db::{NewUser, UserFilter};
use tokio::net::TcpListener;

use crate::config::{Cli, Command, TokenCommand, UserCommand};
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

async fn run_service(config: crate::config::ServeConfig, role: serve::Role) -> anyhow::Result<()> {
    tracing::debug!(?config, ?role, "configuration");
    let listener = TcpListener::bind(config.http_bind).await.with_context(|| {
        format!("cannot listen on {} (GRIDMESH_HTTP_BIND / --http-bind)", config.http_bind)
    })?;
    let service = serve::start(&config, role).await?;
    service.run(listener, serve::shutdown_signal(), config.shutdown_grace).await
}

/// Writes a command's result to stdout (logs go to stderr, so output can be piped).
fn out(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_fmt(args).context("writing to stdout")?;
    stdout.flush().context("writing to stdout")
}
