//! Random but valid sales, from a seeded generator: the same seed rings up the same baskets.

use possync_core::protocol::{SaleHeader, SaleItem, SaleKind, SalePayload, SalePayment};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const ARTICLES: [(&str, &str, i64); 8] = [
    ("4001", "Bread", 349),
    ("4002", "Milk 1 l", 129),
    ("4003", "Coffee beans 500 g", 899),
    ("4004", "Apples (per kg)", 279),
    ("4005", "Cheese (per kg)", 1_890),
    ("4006", "Sparkling water", 79),
    ("4007", "Chocolate", 199),
    ("4008", "Flowers", 1_250),
];

/// Rings up baskets for one till of one store.
pub struct Register {
    rng: StdRng,
    store_id: String,
    till: String,
    next_receipt: u64,
}

impl Register {
    /// A register whose baskets follow from `seed`.
    pub fn new(seed: u64, store_id: &str, till: &str) -> Register {
        Register {
            rng: StdRng::seed_from_u64(seed),
            store_id: store_id.into(),
            till: till.into(),
            next_receipt: 1,
        }
    }

    /// One valid sale: 1 to 5 lines (some sold by weight, some discounted), paid by card, or in cash
    /// rounded up to 5.00 with change. One sale in ten is in CHF, the rest in EUR.
    pub fn ring_up(&mut self, now_ms: i64) -> SalePayload {
        let lines = self.rng.random_range(1..=5u32);
        let items: Vec<SaleItem> = (1..=lines)
            .map(|line_no| {
                let (sku, name, price) = ARTICLES[self.rng.random_range(0..ARTICLES.len())];
                let by_weight = name.contains("per kg");
                let quantity_milli = if by_weight {
                    self.rng.random_range(150..=1_500)
                } else {
                    1_000 * self.rng.random_range(1..=3)
                };
                // round half away from zero, as the protocol does (all positive here)
                let gross = (quantity_milli * price + 500) / 1_000;
                let discount_minor = if self.rng.random_ratio(1, 8) { gross / 10 } else { 0 };
                SaleItem {
                    line_no,
                    sku: sku.into(),
                    name: name.into(),
                    quantity_milli,
                    unit_price_minor: price,
                    discount_minor,
                    line_total_minor: gross - discount_minor,
                    refund: false,
                }
            })
            .collect();
        let total: i64 = items.iter().map(|i| i.line_total_minor).sum();
        let currency = if self.rng.random_ratio(1, 10) { "CHF" } else { "EUR" };
        let (payments, change_minor) = if self.rng.random_bool(0.6) || total == 0 {
            (
                vec![SalePayment {
                    method: "card".into(),
                    amount_minor: total.max(1),
                    reference: Some("auth".into()),
                }],
                0,
            )
        } else {
            let tendered = total.div_euclid(500) * 500 + if total % 500 == 0 { 0 } else { 500 };
            (
                vec![SalePayment { method: "cash".into(), amount_minor: tendered, reference: None }],
                tendered - total,
            )
        };
        let receipt_number = format!("{}-{:05}", self.till, self.next_receipt);
        self.next_receipt += 1;
        SalePayload {
            header: SaleHeader {
                store_id: self.store_id.clone(),
                receipt_number,
                kind: SaleKind::Sale,
                occurred_at_ms: now_ms,
                currency: currency.into(),
                subtotal_minor: total,
                tax_minor: 0,
                total_minor: total,
                change_minor,
                cashier_id: Some("demo".into()),
            },
            items,
            payments,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use possync_core::protocol::{validate_sale, Limits};

    #[test]
    fn rung_up_sales_are_valid_and_seeded() {
        let mut a = Register::new(7, "store-1", "till-1");
        let mut b = Register::new(7, "store-1", "till-1");
        for _ in 0..500 {
            let sale = a.ring_up(1_764_000_000_000);
            validate_sale(&sale, &Limits::default()).expect("valid sale");
            assert_eq!(sale, b.ring_up(1_764_000_000_000), "same seed, same sale");
        }
    }
}
