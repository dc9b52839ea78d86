//! Records a sale in an outbox file and drains it once to a server.
//!
//! ```sh
//! cargo run -p possync-core --example drain_once -- /tmp/till.db http://127.0.0.1:8080 pst_... till-1
//! ```

use possync_core::config::{OutboxConfig, SyncConfig};
use possync_core::drain::{DrainHooks, Drainer};
use possync_core::outbox::Outbox;
use possync_core::protocol::{SaleHeader, SaleItem, SaleKind, SalePayload, SalePayment};
use possync_core::reason::DrainReason;
use possync_core::transport::HttpTransport;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, url, token, device] = args.as_slice() else {
        return Err("usage: drain_once OUTBOX_FILE SERVER_URL TOKEN DEVICE_ID".into());
    };
    let outbox = Outbox::open(path, OutboxConfig::default())?;
    let sale = SalePayload {
        header: SaleHeader {
            store_id: "store-1".into(),
            receipt_number: "R-0001".into(),
            kind: SaleKind::Sale,
            occurred_at_ms: 1_764_000_000_000,
            currency: "EUR".into(),
            subtotal_minor: 500,
            tax_minor: 0,
            total_minor: 500,
            change_minor: 0,
            cashier_id: None,
        },
        items: vec![SaleItem {
            line_no: 1,
            sku: "4006381333931".into(),
            name: "Espresso".into(),
            quantity_milli: 2000,
            unit_price_minor: 250,
            discount_minor: 0,
            line_total_minor: 500,
            refund: false,
        }],
        payments: vec![SalePayment { method: "card".into(), amount_minor: 500, reference: None }],
    };
    let id = outbox.enqueue(&sale)?; // durable once this returns
    println!("recorded sale {id}");

    let config = SyncConfig::new(url.as_str(), token.as_str(), device.as_str());
    let transport = HttpTransport::new(&config);
    let report = Drainer::new(&outbox, &transport, &config)?
        .drain(DrainReason::Manual.into(), DrainHooks::default())?;
    println!(
        "sent {} duplicate {} conflict {} invalid {} retry {} remaining {} stop {:?}",
        report.sent,
        report.duplicate,
        report.conflict,
        report.invalid,
        report.retry,
        report.remaining_pending,
        report.stop
    );
    Ok(())
}
