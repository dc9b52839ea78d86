//! `verify`: compare a till's outbox file with the server after an incident.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use possync_server::store::Device;

use super::db::open_ready_store;
use super::{CommandContext, DbArgs};

/// Options of `verify`.
#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The till's outbox file (copy it off the device; it is opened for reading and queries only).
    #[arg(long)]
    pub outbox: PathBuf,
    /// The till's store: sales are looked up in this store only (ids are unique per store).
    #[arg(long)]
    pub store: Option<String>,
    /// The till's device id (with --store).
    #[arg(long, requires = "store")]
    pub device: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `verify`.
///
/// # Errors
/// A database or outbox error, a sale marked sent that is missing on the server, or a sale (sent or
/// not) stored on the server with another payload.
pub fn run(args: VerifyArgs, ctx: &CommandContext) -> Result<()> {
    let server = open_ready_store(&args.db, ctx)?;
    let outbox =
        possync_core::outbox::Outbox::open_read_only(&args.outbox).context("cannot open the outbox")?;
    let device =
        args.store.clone().zip(args.device).map(|(store_id, device_id)| Device { store_id, device_id });
    let report = possync_server::verify::verify(&*server, &outbox, args.store.as_deref(), device.as_ref())?;
    print_verify(&report, args.json);
    if !report.is_clean() {
        bail!(
            "{} sale(s) missing on the server, {} stored with another payload",
            report.missing.len(),
            report.mismatched.len()
        );
    }
    Ok(())
}

fn print_verify(report: &possync_server::verify::VerifyReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(report).unwrap_or_default());
        return;
    }
    println!("checked {} sale(s) of the outbox", report.checked);
    println!("  sent and on the server:            {}", report.sent_ok);
    println!(
        "  unsent, already on the server:     {} (the next drain gets DUPLICATE)",
        report.unsent_on_server.len()
    );
    println!(
        "  unsent, not on the server:         {} (the next drain sends them)",
        report.unsent_not_on_server
    );
    println!("  conflicts / invalid on the till:   {} / {}", report.conflicts, report.invalid);
    println!("  MISSING on the server:             {}", report.missing.len());
    println!("  MISMATCHED (other payload stored): {}", report.mismatched.len());
    if !report.extra.is_empty() {
        println!(
            "  on the server, not in the outbox:  {} (pruned after retention, or another outbox)",
            report.extra.len()
        );
    }
    for id in &report.missing {
        println!("missing {id}");
    }
    for m in &report.mismatched {
        println!("mismatched {} outbox {} server {}", m.client_tx_id, m.outbox_sha256, m.server_sha256);
    }
}
