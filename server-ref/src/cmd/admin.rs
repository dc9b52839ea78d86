//! `admin create | delete`: console admins. The console at `/console` is off until one exists.

use anyhow::{bail, Result};
use clap::Subcommand;
use possync_server::console::session::{hash_secret, new_secret};

use super::db::open_ready_store;
use super::{CommandContext, DbArgs};

/// Manage console admins.
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create a console admin; their login secret is printed once and only its argon2id hash is
    /// stored. The console (`/console` of `serve`) is on once an admin exists.
    Create {
        #[command(flatten)]
        db: DbArgs,
        /// Login name, 1..=64 characters of `A-Z a-z 0-9 . _ : -`.
        #[arg(long)]
        name: String,
    },
    /// Delete a console admin and end their sessions (the console turns off with the last one).
    Delete {
        #[command(flatten)]
        db: DbArgs,
        /// Login name.
        #[arg(long)]
        name: String,
    },
}

impl AdminCommand {
    /// The database options of the command.
    pub fn db(&self) -> &DbArgs {
        match self {
            AdminCommand::Create { db, .. } | AdminCommand::Delete { db, .. } => db,
        }
    }
}

/// Runs an admin command.
///
/// # Errors
/// A database error, a bad or taken name, or a delete of an unknown admin.
pub fn run(cmd: AdminCommand, ctx: &CommandContext) -> Result<()> {
    match cmd {
        AdminCommand::Create { db, name } => {
            let valid = (1..=64).contains(&name.len())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b));
            if !valid {
                bail!("--name must be 1..=64 characters of A-Z a-z 0-9 . _ : -");
            }
            let s = open_ready_store(&db, ctx)?;
            let secret = new_secret();
            if !s.create_admin(&name, &hash_secret(&secret)?)? {
                bail!("an admin named {name:?} exists already (delete it first to issue a new secret)");
            }
            eprintln!(
                "console admin {name} created; login secret (shown once, keep it in a password manager):"
            );
            println!("{secret}");
            Ok(())
        }
        AdminCommand::Delete { db, name } => {
            let s = open_ready_store(&db, ctx)?;
            if !s.delete_admin(&name)? {
                bail!("no admin named {name:?}");
            }
            println!("deleted admin {name}");
            Ok(())
        }
    }
}
