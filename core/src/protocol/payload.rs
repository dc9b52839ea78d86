//! The sale payload: what a till records and the server stores.
//!
//! All money is `i64` in minor units of the header's ISO 4217 currency (cents for EUR, yen for JPY);
//! quantities are `i64` milli-units (1 piece = 1000, 0.25 kg = 250). There are no floating-point
//! numbers anywhere in a payload, so canonical JSON and its hash are exact.
//!
//! Unknown fields are refused (`deny_unknown_fields`): the hash covers exactly what the server stores.

use serde::{Deserialize, Serialize};

/// One finished sale (or refund) as recorded by a till.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalePayload {
    /// Receipt-level data and totals.
    pub header: SaleHeader,
    /// Sold (or refunded) lines; at least one.
    pub items: Vec<SaleItem>,
    /// Tenders; their sum minus `header.change_minor` equals `header.total_minor`.
    pub payments: Vec<SalePayment>,
}

/// Whether the receipt is a sale or a refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleKind {
    /// A sale: total is zero or positive.
    Sale,
    /// A refund: total is zero or negative.
    Refund,
}

impl SaleKind {
    /// The wire name (`"sale"` or `"refund"`), also used as the stored value.
    pub fn as_str(self) -> &'static str {
        match self {
            SaleKind::Sale => "sale",
            SaleKind::Refund => "refund",
        }
    }
}

/// Receipt-level data of a sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaleHeader {
    /// The shop the sale belongs to; must be the store of the pushing device's token.
    pub store_id: String,
    /// The receipt number printed for the customer.
    pub receipt_number: String,
    /// Sale or refund.
    pub kind: SaleKind,
    /// When the sale was finished on the till, Unix time in milliseconds (UTC).
    pub occurred_at_ms: i64,
    /// ISO 4217 alphabetic code, upper case (`"EUR"`).
    pub currency: String,
    /// Sum of the items' `line_total_minor`.
    pub subtotal_minor: i64,
    /// Tax added on top of the subtotal (0 where prices include tax). Same sign as the total.
    pub tax_minor: i64,
    /// `subtotal_minor + tax_minor`: what the customer pays (negative for a refund).
    pub total_minor: i64,
    /// Change handed back in cash (0 or positive; only on sales).
    pub change_minor: i64,
    /// Cashier who rang up the sale, if the till knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cashier_id: Option<String>,
}

/// One line of a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaleItem {
    /// Position on the receipt, unique within the sale, from 1.
    pub line_no: u32,
    /// Article number.
    pub sku: String,
    /// Article name as printed.
    pub name: String,
    /// Quantity in milli-units; positive, or negative on a refund line.
    pub quantity_milli: i64,
    /// Price of one unit in minor units (0 or positive).
    pub unit_price_minor: i64,
    /// Discount on this line in minor units (0 or positive, at most the line's gross amount).
    pub discount_minor: i64,
    /// `round(quantity_milli * unit_price_minor / 1000)` (half away from zero) minus the discount,
    /// where the discount always reduces the line's absolute amount.
    pub line_total_minor: i64,
    /// True on a refund line (a returned article); only refund lines may have negative quantities.
    pub refund: bool,
}

/// One tender of a sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalePayment {
    /// Tender type, lower-case ASCII letters, digits and `_` (`"cash"`, `"card"`, `"voucher"`).
    pub method: String,
    /// Amount tendered in minor units; positive on sales, negative on refunds.
    pub amount_minor: i64,
    /// Terminal or voucher reference, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}
