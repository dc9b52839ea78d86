//! `attention list | show | export`: CONFLICT and INVALID attempts that need a person.

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result};
use clap::Subcommand;
use possync_server::attention;

use super::db::open_ready_store;
use super::{CommandContext, DbArgs};

/// Review sales that need a person.
#[derive(Subcommand)]
pub enum AttentionCommand {
    /// List CONFLICT and INVALID attempts of a store, oldest first, with both hashes.
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Store to review.
        #[arg(long)]
        store: String,
        /// Only attempts since: a number of days (7 or 7d) or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
    },
    /// Show every audit row of one sale, and the stored sale's hash if one is stored.
    Show {
        #[command(flatten)]
        db: DbArgs,
        /// Store the sale belongs to.
        #[arg(long)]
        store: String,
        /// The sale's client_tx_id.
        #[arg(long)]
        client_tx_id: String,
    },
    /// Write CONFLICT and INVALID attempts of a store as CSV with a header row, oldest first, settled
    /// ones included; the columns of the console's "Export CSV" (docs/deploy.md, section 9).
    Export {
        #[command(flatten)]
        db: DbArgs,
        /// Store to export.
        #[arg(long)]
        store: String,
        /// Only attempts since: a number of days (7 or 7d) or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

impl AttentionCommand {
    /// The database options of the command.
    pub fn db(&self) -> &DbArgs {
        match self {
            AttentionCommand::List { db, .. } => db,
            AttentionCommand::Show { db, .. } => db,
            AttentionCommand::Export { db, .. } => db,
        }
    }
}

/// Runs an attention command.
///
/// # Errors
/// A bad `--since`, a database error, or an output file that cannot be written.
pub fn run(cmd: AttentionCommand, ctx: &CommandContext) -> Result<()> {
    let since =
        |text: Option<String>| text.map(|t| attention::parse_since(&t, SystemTime::now())).transpose();
    let stdout = std::io::stdout();
    match cmd {
        AttentionCommand::List { db, store, since: s } => {
            let since = since(s)?;
            let st = open_ready_store(&db, ctx)?;
            attention::list(&*st, &store, since, &mut stdout.lock())?;
        }
        AttentionCommand::Show { db, store, client_tx_id } => {
            let st = open_ready_store(&db, ctx)?;
            attention::show(&*st, &store, &client_tx_id, &mut stdout.lock())?;
        }
        AttentionCommand::Export { db, store, since: s, output } => {
            let since = since(s)?;
            let st = open_ready_store(&db, ctx)?;
            match output {
                Some(path) => {
                    let mut f = std::fs::File::create(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    let n = attention::export_csv(&*st, &store, since, &mut f)?;
                    f.sync_all().with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!("wrote {n} row(s) to {}", path.display());
                }
                None => {
                    let mut out = stdout.lock();
                    attention::export_csv(&*st, &store, since, &mut out)?;
                    out.flush()?;
                }
            }
        }
    }
    Ok(())
}
