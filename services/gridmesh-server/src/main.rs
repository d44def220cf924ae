//! The `gridmesh` binary: parse the command line, start logging, run the subcommand.

use std::process::ExitCode;

use clap::Parser;
use gridmesh_server::config::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = gridmesh_server::logging::init(cli.log_format, &cli.log_filter) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(gridmesh_server::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "gridmesh stopped with an error");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
