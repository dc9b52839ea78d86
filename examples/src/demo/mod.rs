//! `possync-till demo`: simulated tills against a server, with an offline period, "back online",
//! "Sync now", a deliberate CONFLICT, and a final exactly-once check.
//!
//! By concern: `backend.rs` starts, stops and restarts the server the tills talk to; `till.rs`
//! opens the simulated tills; `ui.rs` shows their progress; `story.rs` tells the story step by
//! step; `check.rs` checks exactly once at the end. [`run`] wires them together.

mod backend;
mod check;
mod story;
mod till;
mod ui;

use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;

use crate::TillError;
use backend::{open_backend, Backend};
use story::story;
use till::open_tills;
use ui::Ui;

/// Options of `possync-till demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Simulated tills.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    tills: u16,
    /// Sales rung up per till (plus one for the deliberate conflict).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(3..=100_000))]
    sales: u32,
    /// Seed of the random baskets and pacing.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// How long the server stays down, in ms.
    #[arg(long, default_value_t = 3_000)]
    offline_ms: u64,
    /// Mean time between two sales of a till, in ms.
    #[arg(long, default_value_t = 60)]
    pace_ms: u64,
    /// JSON-lines logs on stderr (the log crate's key-values) instead of progress bars.
    #[arg(long)]
    json: bool,
    /// Run the in-process server on this PostgreSQL database instead of a SQLite file.
    #[arg(long, conflicts_with = "server")]
    postgres: Option<String>,
    /// Run the tills against this real server instead of an in-process one (with --token).
    #[arg(long, requires = "token")]
    server: Option<String>,
    /// The device token for --server.
    #[arg(long, requires = "server")]
    token: Option<String>,
    /// With --server: the token's device id (every simulated till sends as this device).
    #[arg(long, default_value = "till-1")]
    device: String,
    /// With --server: the token's store id.
    #[arg(long, default_value = "store-1")]
    store: String,
}

/// `possync-till demo`.
///
/// # Errors
/// A setup failure, or [`TillError::CheckFailed`] when a sale is missing or doubled.
pub fn run(args: DemoArgs) -> Result<(), TillError> {
    if args.json {
        possync_server::logging::init("info");
    }
    let dir = tempfile::tempdir().map_err(|e| TillError::Demo(format!("cannot create a temp dir: {e}")))?;
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let mut backend = open_backend(&args, dir.path(), &run_id)?;
    let store_id = match &backend {
        Backend::InProcess { .. } => format!("demo-{}", &run_id[run_id.len() - 8..]),
        Backend::Remote { .. } => args.store.clone(),
    };
    let url = backend.url();
    let names: Vec<String> = (1..=args.tills).map(|i| format!("till-{i}")).collect();
    let ui = Ui::new(args.json, &names);
    let where_ = match &backend {
        Backend::InProcess { kind, .. } => format!("in-process server on {kind} at {url}"),
        Backend::Remote { url } => format!("real server at {url}"),
    };
    ui.say(
        "setup",
        &format!(
            "{} till(s), {} sales each, {where_}; outboxes in {}",
            args.tills,
            args.sales,
            dir.path().display()
        ),
    );

    let tills = open_tills(&args, &backend, dir.path(), &store_id, &url, &names)?;

    let stop = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| ui.refresh_until(&tills, &stop));
        let result = story(&args, &mut backend, &tills, &ui, &store_id);
        stop.store(true, Ordering::SeqCst);
        result
    });
    ui.finish();
    for t in &tills {
        t.engine.shutdown();
    }
    backend.stop();
    result
}
