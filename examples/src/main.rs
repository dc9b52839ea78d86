//! `possync-till`: a till simulator that shows possync's drains happening.
//!
//! - `possync-till demo`: an in-process server on the embedded SQLite store (or `--postgres URL`, or a
//!   real server with `--server URL --token T`), N simulated tills ringing up seeded random sales, an
//!   offline period, "back online", "Sync now", a deliberate CONFLICT, and a final exactly-once check.
//! - `possync-till status | list-attention | sync-now --outbox FILE`: inspect or drain a real outbox.
//!
//! Every failure prints one line `possync-till: ...` on stderr and exits 1.

mod demo;
mod inspect;
mod sales;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// possync till simulator: watch sales drain to a server exactly once.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run simulated tills against an in-process server (SQLite by default) and show the drains.
    Demo(demo::DemoArgs),
    /// Show a till outbox's status line: unsent count and amounts, oldest unsent, attention.
    Status(OutboxArgs),
    /// List the sales of an outbox that need a person (CONFLICT, INVALID).
    ListAttention(OutboxArgs),
    /// Drain an outbox now ("Sync now") to a server and print the run's report.
    SyncNow {
        #[command(flatten)]
        outbox: OutboxArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// An existing outbox file.
#[derive(Args)]
struct OutboxArgs {
    /// The till's outbox file (SQLite).
    #[arg(long)]
    outbox: PathBuf,
}

/// Where a real server is.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// Base URL of the server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub server: String,
    /// The device token (pst_...).
    #[arg(long, env = "POSSYNC_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The device id the token was issued for.
    #[arg(long, default_value = "till-1")]
    pub device: String,
}

/// Why a command failed; each is printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum TillError {
    /// `--server` is not an http(s) URL.
    #[error("invalid --server URL {url:?}: {reason} (expected http://host:port or https://host)")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server could not be reached.
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The server refused the token or device.
    #[error("the server at {url} refused the token for device {device}: HTTP {status} {code}")]
    Refused {
        /// The server.
        url: String,
        /// The device id sent.
        device: String,
        /// 401 or 403.
        status: u16,
        /// The server's error code.
        code: String,
    },
    /// The outbox file cannot be used.
    #[error("cannot read the outbox {path}: {reason}")]
    Outbox {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The client core failed.
    #[error("{0}")]
    Core(#[from] possync_core::Error),
    /// The outbox file failed.
    #[error("{0}")]
    Storage(#[from] possync_core::StorageError),
    /// A sale could not be recorded.
    #[error("{0}")]
    Sale(#[from] possync_core::SaleError),
    /// "Sync now" failed.
    #[error("{0}")]
    Sync(#[from] possync_core::SyncError),
    /// The in-process server's store failed.
    #[error("server store: {0}")]
    Store(#[from] possync_server::store::StoreError),
    /// Anything else of the demo, said in words.
    #[error("{0}")]
    Demo(String),
    /// The final check found sales missing or doubled.
    #[error("exactly-once check FAILED: {0}")]
    CheckFailed(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Status(o) => inspect::status(&o.outbox),
        Command::ListAttention(o) => inspect::list_attention(&o.outbox),
        Command::SyncNow { outbox, server } => inspect::sync_now(&outbox.outbox, &server),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("possync-till: {e}");
            ExitCode::FAILURE
        }
    }
}
