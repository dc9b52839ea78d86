//! `gaps`: sales that tills recorded and the server never received, from the outbox sequence numbers
//! the tills send (the same list as the console's Tills page).

use anyhow::Result;
use clap::Args;

use super::db::open_ready_store;
use super::{CommandContext, DbArgs};

/// Options of `gaps`.
#[derive(Args)]
pub struct GapsArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Only this store.
    #[arg(long)]
    pub store: Option<String>,
}

/// Prints one line per run of missing sequence numbers; exits 1 when a sale between received ones is
/// missing, or was lost with an earlier (wiped or replaced) outbox of a till (a run past the last
/// received one, still in a till's outbox at its last report, is printed but does not fail).
///
/// # Errors
/// A database error, or missing sales.
pub fn run(args: GapsArgs, ctx: &CommandContext) -> Result<()> {
    let s = open_ready_store(&args.db, ctx)?;
    let gaps = s.seq_gaps(args.store.as_deref())?;
    let mut missing = 0;
    for g in &gaps {
        let range =
            if g.from == g.to { format!("sale {}", g.from) } else { format!("sales {}–{}", g.from, g.to) };
        println!(
            "{} {}: {}",
            g.store_id,
            g.device_id,
            possync_server::console::views::gap_sentence(g, &range)
        );
        if !g.after_last_received {
            missing += g.to - g.from + 1;
        }
    }
    if gaps.is_empty() {
        println!("no gaps: every numbered sale recorded on a till is on the server");
    }
    if missing > 0 {
        anyhow::bail!("{missing} sale(s) recorded on tills were never received");
    }
    Ok(())
}
