//! `possync-server`: migrate the database, serve `/sync/push`, manage device tokens, review sales
//! that need attention, prune the audit trail, verify a till's outbox.
//!
//! Every option can come from the command line, an environment variable or the config file
//! (`--config` / `POSSYNC_CONFIG`, see [`possync_server::config`]), in that order of precedence, else
//! its default. Each command lives in its own module under `cmd/`.

mod cmd;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    let matches = cmd::Cli::command().get_matches();
    let cli = match cmd::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cmd::run(cli, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("possync-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}
