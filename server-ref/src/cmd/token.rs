//! `token create | revoke | list`: device tokens (only their SHA-256 is stored).

use anyhow::{bail, Result};
use clap::Subcommand;
use possync_server::auth::{generate_token, token_sha256};
use possync_server::store::Device;

use super::db::open_ready_store;
use super::{CommandContext, DbArgs};

/// Manage device tokens.
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token for a device of a store; the token is printed once and never stored.
    Create {
        #[command(flatten)]
        db: DbArgs,
        /// Store the device belongs to.
        #[arg(long)]
        store: String,
        /// Device (till) id; the till sends it as device_id.
        #[arg(long)]
        device: String,
        /// Free text, e.g. "front till".
        #[arg(long)]
        label: Option<String>,
    },
    /// Revoke every live token of a device, a token created for it a moment ago too: to replace a
    /// till's token, revoke first, then create.
    Revoke {
        #[command(flatten)]
        db: DbArgs,
        /// Store the device belongs to.
        #[arg(long)]
        store: String,
        /// Device id.
        #[arg(long)]
        device: String,
    },
    /// List tokens (hash prefixes, never the tokens).
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Only this store.
        #[arg(long)]
        store: Option<String>,
    },
}

impl TokenCommand {
    /// The database options of the command.
    pub fn db(&self) -> &DbArgs {
        match self {
            TokenCommand::Create { db, .. } => db,
            TokenCommand::Revoke { db, .. } => db,
            TokenCommand::List { db, .. } => db,
        }
    }
}

/// Runs a token command.
///
/// # Errors
/// A database error, or a revoke that found no live token.
pub fn run(cmd: TokenCommand, ctx: &CommandContext) -> Result<()> {
    match cmd {
        TokenCommand::Create { db, store, device, label } => {
            let s = open_ready_store(&db, ctx)?;
            let token = generate_token();
            let dev = Device { store_id: store, device_id: device };
            s.create_token(&dev, &token_sha256(&token), label.as_deref())?;
            eprintln!(
                "token for store {} device {} (shown once, store it on the till):",
                dev.store_id, dev.device_id
            );
            println!("{token}");
            Ok(())
        }
        TokenCommand::Revoke { db, store, device } => {
            let s = open_ready_store(&db, ctx)?;
            let n = s.revoke_tokens(&Device { store_id: store.clone(), device_id: device.clone() })?;
            if n == 0 {
                bail!("no live token for store {store} device {device}");
            }
            println!("revoked {n} token(s) of store {store} device {device}");
            Ok(())
        }
        TokenCommand::List { db, store } => {
            let s = open_ready_store(&db, ctx)?;
            let tokens = s.list_tokens(store.as_deref())?;
            println!(
                "{:<14} {:<16} {:<16} {:<21} {:<21} label",
                "sha256", "store", "device", "created", "revoked"
            );
            for t in tokens {
                println!(
                    "{:<14} {:<16} {:<16} {:<21} {:<21} {}",
                    t.token_sha256_prefix,
                    t.store_id,
                    t.device_id,
                    t.created_at,
                    t.revoked_at.as_deref().unwrap_or("-"),
                    t.label.as_deref().unwrap_or("")
                );
            }
            Ok(())
        }
    }
}
