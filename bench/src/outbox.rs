//! Outbox benchmarks.

use std::path::Path;
use std::time::Instant;

use possync_core::config::{Durability, OutboxConfig};
use possync_core::outbox::{Outbox, Outcome};
use possync_core::protocol::{
    canonical_json_string, payload_sha256, SaleHeader, SaleItem, SaleKind, SalePayload, SalePayment,
};
use rusqlite::{params, Connection};

use crate::{median, Row, Target};

/// A realistic sale: three items, one payment.
pub fn sample_sale(seed: i64) -> SalePayload {
    let items: Vec<SaleItem> = (0..3)
        .map(|i| SaleItem {
            line_no: i + 1,
            sku: format!("400638133393{i}"),
            name: format!("Article number {i}"),
            quantity_milli: 1000,
            unit_price_minor: 199 + seed % 100,
            discount_minor: 0,
            line_total_minor: 199 + seed % 100,
            refund: false,
        })
        .collect();
    let total: i64 = items.iter().map(|i| i.line_total_minor).sum();
    SalePayload {
        header: SaleHeader {
            store_id: "store-1".into(),
            receipt_number: format!("R-{seed:08}"),
            kind: SaleKind::Sale,
            occurred_at_ms: 1_764_000_000_000 + seed,
            currency: "EUR".into(),
            subtotal_minor: total,
            tax_minor: 0,
            total_minor: total,
            change_minor: 0,
            cashier_id: Some("cashier-1".into()),
        },
        items,
        payments: vec![SalePayment {
            method: "card".into(),
            amount_minor: total,
            reference: Some("auth".into()),
        }],
    }
}

fn sync_name(d: Durability) -> &'static str {
    match d {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    }
}

fn raw_connection(path: &Path, durability: Durability) -> Connection {
    let conn = Connection::open(path).expect("raw open");
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(())).expect("wal");
    conn.pragma_update(None, "synchronous", sync_name(durability)).expect("sync");
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS raw (id INTEGER PRIMARY KEY, client_tx_id TEXT NOT NULL UNIQUE, payload TEXT NOT NULL)",
    )
    .expect("raw table");
    conn
}

/// Enqueues per second vs raw inserts per second, `n` sales per round, `rounds` interleaved rounds.
pub fn enqueue(dir: &Path, durability: Durability, n: usize, rounds: usize) -> Row {
    let config = OutboxConfig { durability, ..OutboxConfig::default() };
    let outbox =
        Outbox::open(dir.join(format!("enqueue-{}.db", sync_name(durability))), config).expect("outbox");
    let raw = raw_connection(&dir.join(format!("raw-{}.db", sync_name(durability))), durability);
    let sales: Vec<SalePayload> = (0..n as i64).map(sample_sale).collect();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let start = Instant::now();
        for sale in &sales {
            outbox.enqueue(sale).expect("enqueue");
        }
        ours.push(n as f64 / start.elapsed().as_secs_f64());

        // The baseline stores the same canonical bytes under a fresh id, one transaction each.
        let payloads: Vec<String> =
            sales.iter().map(|s| canonical_json_string(s).expect("canonical")).collect();
        let start = Instant::now();
        let mut stmt =
            raw.prepare_cached("INSERT INTO raw (client_tx_id, payload) VALUES (?1, ?2)").expect("prep");
        for (i, p) in payloads.iter().enumerate() {
            stmt.execute(params![format!("{round}-{i}-{}", uuid::Uuid::now_v7()), p]).expect("raw insert");
        }
        theirs.push(n as f64 / start.elapsed().as_secs_f64());
    }
    Row::measured(
        format!("enqueue, synchronous={}", sync_name(durability)),
        median(ours),
        median(theirs),
        "sales/s",
    )
    .target(Target::RatioAtLeast(0.9))
    .note("vs raw rusqlite INSERT of the same bytes, same durability")
}

/// Loads `pending` copies of one valid sale, each under its own id, straight into an outbox file
/// (setup only: one big transaction, the same columns and hash as `enqueue` writes).
pub fn load_pending(path: &Path, pending: usize) {
    drop(Outbox::open(path, OutboxConfig::default()).expect("create outbox"));
    let mut conn = Connection::open(path).expect("open");
    let tx = conn.transaction().expect("tx");
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO outbox (client_tx_id, payload, payload_sha256, payload_hash_version, currency, \
                 total_minor, state, attempt, created_at_ms, next_attempt_at_ms) \
                 VALUES (?1, ?2, ?3, 1, 'EUR', ?4, 'pending', 0, ?5, ?5)",
            )
            .expect("prepare");
        let payload = canonical_json_string(&sample_sale(1)).expect("canonical");
        let sha = payload_sha256(payload.as_bytes());
        for i in 0..pending as i64 {
            stmt.execute(params![format!("bench-{i:09}"), payload, sha, 597, 1_700_000_000_000i64 + i])
                .expect("load");
        }
    }
    tx.commit().expect("commit");
}

/// Microseconds per sale of claim (batch `batch`) + finalize, over `sales` sales, on an outbox holding
/// `pending` pending sales.
pub fn claim_finalize_us(dir: &Path, pending: usize, sales: usize, batch: usize) -> f64 {
    let path = dir.join(format!("claim-{pending}.db"));
    if !path.exists() {
        load_pending(&path, pending);
    }
    let outbox = Outbox::open(&path, OutboxConfig::default()).expect("open");
    let start = Instant::now();
    let mut done = 0;
    while done < sales {
        let claimed = outbox.claim("bench", batch, 60_000).expect("claim");
        if claimed.is_empty() {
            break;
        }
        let outcomes: Vec<_> = claimed
            .iter()
            .map(|c| (c.lease.clone(), Outcome::Sent { duplicate: false, server_tx_id: None }))
            .collect();
        outbox.finalize_all(&outcomes).expect("finalize");
        done += claimed.len();
    }
    start.elapsed().as_secs_f64() * 1e6 / done.max(1) as f64
}

/// Claim + finalize per sale at `large` pending vs at `small` pending.
pub fn claim_finalize(dir: &Path, small: usize, large: usize, sales: usize, batch: usize) -> Row {
    let mut at_small = Vec::new();
    let mut at_large = Vec::new();
    for _ in 0..3 {
        at_small.push(claim_finalize_us(dir, small, sales, batch));
        at_large.push(claim_finalize_us(dir, large, sales, batch));
    }
    Row::measured(
        format!("claim+finalize, batch {batch}, {large} vs {small} pending"),
        median(at_large),
        median(at_small),
        "µs/sale",
    )
    .target(Target::RatioAtMost(1.5))
    .note(format!("cost at {large} pending over cost at {small}"))
}
