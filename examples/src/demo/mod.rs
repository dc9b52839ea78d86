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

use std::path::{Path, PathBuf};
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
    /// Keep the tills' outboxes (and the in-process server's SQLite file) in this folder, created if
    /// missing and empty otherwise, instead of a temporary one deleted at exit.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

/// The folder of the outboxes: the one given with `--keep`, or a temporary one deleted on drop.
enum Folder {
    Kept(PathBuf),
    Temporary(tempfile::TempDir),
}

impl Folder {
    fn open(keep: Option<&Path>) -> Result<Folder, TillError> {
        let Some(dir) = keep else {
            let temp =
                tempfile::tempdir().map_err(|e| TillError::Demo(format!("cannot create a temp dir: {e}")))?;
            return Ok(Folder::Temporary(temp));
        };
        let cannot = |e: std::io::Error| TillError::Demo(format!("cannot use --keep {}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(cannot)?;
        if std::fs::read_dir(dir).map_err(cannot)?.next().is_some() {
            return Err(TillError::Demo(format!(
                "--keep {} is not empty: name a new or empty folder (a kept outbox is never reused)",
                dir.display()
            )));
        }
        Ok(Folder::Kept(dir.to_owned()))
    }

    fn path(&self) -> &Path {
        match self {
            Folder::Kept(dir) => dir,
            Folder::Temporary(temp) => temp.path(),
        }
    }
}

/// `possync-till demo`.
///
/// # Errors
/// A setup failure, or [`TillError::CheckFailed`] when a sale is missing or doubled.
pub fn run(args: DemoArgs) -> Result<(), TillError> {
    if args.json {
        possync_server::logging::init("info");
    }
    let dir = Folder::open(args.keep.as_deref())?;
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let mut backend = open_backend(&args, dir.path())?;
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
    let kept = match &dir {
        Folder::Kept(_) => "kept after the demo",
        Folder::Temporary(_) => "deleted at exit; --keep DIR keeps them",
    };
    ui.say(
        "setup",
        &format!(
            "{} till(s), {} sales each, {where_}; outboxes in {} ({kept})",
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
    if let (Folder::Kept(path), Ok(())) = (&dir, &result) {
        kept_note(path, &names, &store_id);
    }
    result
}

/// What the kept folder holds and the commands that open it.
fn kept_note(dir: &Path, names: &[String], store_id: &str) {
    let files: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| name.ends_with(".db"))
                .collect()
        })
        .unwrap_or_default();
    let mut files = files;
    files.sort();
    let d = dir.display();
    let first = names.first().map_or("till-1", String::as_str);
    println!("kept in {d}: {} (store id {store_id}); for example:", files.join(", "));
    println!("  possync-till status --outbox {d}/{first}.db");
    if let Some(second) = names.get(1) {
        println!("  possync-till list-attention --outbox {d}/{second}.db");
    }
    if files.iter().any(|f| f == "shop.db") {
        println!("  possync-server verify --sqlite {d}/shop.db --outbox {d}/{first}.db");
    }
}
