//! `gaps`: sales that tills recorded and the server never received, from the outbox sequence numbers
//! the tills send (the same list as the console's Tills page).

use anyhow::Result;
use clap::Args;

use possync_server::store::GapKind;

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
    /// Check every till's numbers again from its first one, not from where the last check ended:
    /// after sales were deleted from the database by mistake (a restore or a failover needs no
    /// recheck). The tills send the missing ones again with their next push.
    #[arg(long)]
    pub recheck: bool,
}

/// Prints one line per run of missing sequence numbers, then each till's recovery window (how far
/// back it keeps its sales, from its last report). Exits 1 when a sale is missing: never received
/// between received ones, acknowledged to a till and not on the server (being re-sent), or lost for
/// good (an earlier, wiped or replaced outbox, or acknowledged sales the till had already pruned). A
/// run past the last received one, still in a till's outbox at its last report, is printed but does
/// not fail. "No gaps" is said only of what the tills have reported: each till's last report time is
/// printed with it.
///
/// # Errors
/// A database error, or missing sales.
pub fn run(args: GapsArgs, ctx: &CommandContext) -> Result<()> {
    use possync_server::console::views::{gap_sentence, utc};
    let s = open_ready_store(&args.db, ctx)?;
    if args.recheck {
        let devices = s.recheck_seqs(args.store.as_deref())?;
        eprintln!("checking the numbers of {devices} till(s) again from their first one");
    }
    let gaps = s.seq_gaps(args.store.as_deref())?;
    let tills = s.tills(0)?;
    let mut missing = 0;
    let mut resending = 0;
    for g in &gaps {
        let range =
            if g.from == g.to { format!("sale {}", g.from) } else { format!("sales {}–{}", g.from, g.to) };
        println!("{} {}: {}", g.store_id, g.device_id, gap_sentence(g, &range));
        if g.is_missing() {
            missing += g.len();
        }
        if g.kind == GapKind::Resending {
            resending += g.len();
        }
    }
    if gaps.is_empty() {
        println!("no gaps: every numbered sale the tills have reported is on the server");
    }
    for t in tills.iter().filter(|t| args.store.as_deref().is_none_or(|s| s == t.store_id)) {
        let reported = t.reported_at_ms.map(utc).unwrap_or_else(|| "never".into());
        let kept = match (t.report.kept_since_ms, t.report.kept_seq) {
            (Some(since), Some(seq)) => format!("keeps its sales back to {} (from sale {seq})", utc(since)),
            _ => "has not reported how far back it keeps its sales".into(),
        };
        println!("{} {}: {kept}; last report {reported}", t.store_id, t.device_id);
    }
    if missing > 0 {
        anyhow::bail!(
            "{missing} sale(s) recorded on tills are not on the server ({resending} of them being re-sent by their tills)"
        );
    }
    Ok(())
}
