//! Helpers of the core's integration tests: temp outbox files and valid sample sales.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use possync_core::clock::ManualClock;
use possync_core::config::{OutboxConfig, SyncConfig};
use possync_core::outbox::Outbox;
use possync_core::protocol::{SaleHeader, SaleItem, SaleKind, SalePayload, SalePayment};

/// A temp dir kept alive with the outbox path inside it.
pub struct TempOutbox {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TempOutbox {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("outbox.db");
        TempOutbox { dir, path }
    }

    pub fn open(&self) -> Outbox {
        Outbox::open(&self.path, OutboxConfig::default()).expect("open outbox")
    }

    pub fn open_with(&self, clock: Arc<ManualClock>) -> Outbox {
        Outbox::open_with_clock(&self.path, OutboxConfig::default(), clock).expect("open outbox")
    }
}

/// A valid sale; `seed` varies receipt number and amounts.
pub fn sale(seed: i64) -> SalePayload {
    let price = 100 + seed % 900;
    SalePayload {
        header: SaleHeader {
            store_id: "store-1".into(),
            receipt_number: format!("R-{seed}"),
            kind: SaleKind::Sale,
            occurred_at_ms: 1_764_000_000_000 + seed,
            currency: if seed % 2 == 0 { "EUR".into() } else { "USD".into() },
            subtotal_minor: 2 * price,
            tax_minor: 0,
            total_minor: 2 * price,
            change_minor: 0,
            cashier_id: None,
        },
        items: vec![SaleItem {
            line_no: 1,
            sku: "sku-1".into(),
            name: "Article".into(),
            quantity_milli: 2000,
            unit_price_minor: price,
            discount_minor: 0,
            line_total_minor: 2 * price,
            refund: false,
        }],
        payments: vec![SalePayment { method: "card".into(), amount_minor: 2 * price, reference: None }],
    }
}

pub const T0: i64 = 1_800_000_000_000;

/// A valid sync config for scripted transports (no server listens at its URL): 1 s request timeout, the
/// minimum lease margin, a heartbeat every 2 s, and the given token.
pub fn sync_config(token: &str) -> SyncConfig {
    let mut c = SyncConfig::new("http://127.0.0.1:9", token, "till-1");
    c.connect_timeout_ms = 500;
    c.request_timeout_ms = 1_000;
    c.lease_ms = 6_000;
    c.heartbeat_ms = 2_000;
    c
}
