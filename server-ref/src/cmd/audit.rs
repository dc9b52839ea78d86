//! `audit prune`: delete audit rows past their retention.

use anyhow::Result;
use clap::Subcommand;
use possync_server::retention;

use super::db::open_ready_store;
use super::{CommandContext, DbArgs};

/// Maintain the audit trail.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Delete audit rows older than N days (sales, items and payments are never touched).
    Prune {
        #[command(flatten)]
        db: DbArgs,
        /// Keep this many days of audit rows.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        older_than_days: u32,
    },
}

impl AuditCommand {
    /// The database options of the command.
    pub fn db(&self) -> &DbArgs {
        match self {
            AuditCommand::Prune { db, .. } => db,
        }
    }
}

/// Runs an audit command.
///
/// # Errors
/// A database error.
pub fn run(cmd: AuditCommand, ctx: &CommandContext) -> Result<()> {
    let AuditCommand::Prune { db, older_than_days } = cmd;
    let store = open_ready_store(&db, ctx)?;
    let deleted = retention::prune_once(&*store, older_than_days)?;
    println!("pruned {deleted} audit row(s) older than {older_than_days} day(s)");
    Ok(())
}
