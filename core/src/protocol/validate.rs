//! Validation of sales and ids: the rules every stored sale satisfies.
//!
//! The client validates before a sale enters the outbox; the server validates again and answers
//! `INVALID` with [`InvalidSale::code`] when a rule is broken. Arithmetic is checked (`i128` for
//! products), so a huge number is refused instead of wrapping.

use super::payload::{SaleHeader, SaleItem, SaleKind, SalePayload, SalePayment};

/// Largest absolute money amount accepted anywhere in a sale, in minor units (10^13).
pub const MAX_ABS_MINOR: i64 = 10_000_000_000_000;
/// Largest absolute quantity of a line, in milli-units (one million units).
pub const MAX_ABS_QUANTITY_MILLI: i64 = 1_000_000_000;
/// Longest accepted text field, in characters.
pub const MAX_TEXT_CHARS: usize = 200;
/// Longest accepted `client_tx_id`, in bytes.
pub const MAX_CLIENT_TX_ID_LEN: usize = 64;
/// Largest accepted `line_no` (2^31 - 1): the server stores line numbers as SQL `integer`.
pub const MAX_LINE_NO: u32 = i32::MAX as u32;
/// Earliest accepted `occurred_at_ms` (2000-01-01T00:00:00Z).
pub const MIN_OCCURRED_AT_MS: i64 = 946_684_800_000;
/// Latest accepted `occurred_at_ms`, exclusive (2100-01-01T00:00:00Z).
pub const MAX_OCCURRED_AT_MS: i64 = 4_102_444_800_000;

/// Size limits of one sale. The server makes `max_items_per_sale` configurable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most items one sale may carry.
    pub max_items_per_sale: usize,
    /// Most payments one sale may carry.
    pub max_payments_per_sale: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_items_per_sale: 500, max_payments_per_sale: 32 }
    }
}

/// Why a sale (or its id) was refused. Each variant has a stable wire code, see [`InvalidSale::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSale {
    /// `client_tx_id` is empty, too long or has characters outside `[A-Za-z0-9._:-]`.
    #[error("client_tx_id must be 1..={MAX_CLIENT_TX_ID_LEN} characters of A-Z a-z 0-9 . _ : -")]
    BadClientTxId,
    /// A JSON object of the transaction names a key twice (readers disagree on which value counts).
    #[error("the JSON names the key {key:?} twice in one object")]
    DuplicateKey {
        /// The key (cut after 64 characters).
        key: String,
    },
    /// The payload is not a sale: wrong JSON shape, wrong types, unknown or missing fields.
    #[error("payload is not a valid sale: {detail}")]
    Malformed {
        /// The parser's description of the problem.
        detail: String,
    },
    /// A required text field is empty.
    #[error("{field} must not be empty")]
    EmptyText {
        /// Path of the field, e.g. `items[2].sku`.
        field: String,
    },
    /// A text field is longer than [`MAX_TEXT_CHARS`] or holds control characters, bidi embeddings,
    /// overrides or isolates, or line / paragraph separators (which make a receipt or a CSV export
    /// display other text than it holds).
    #[error("{field} must be at most {MAX_TEXT_CHARS} characters without control characters, bidi overrides or line separators")]
    BadText {
        /// Path of the field.
        field: String,
    },
    /// `payments[].method` is not lower-case ASCII letters, digits and `_`.
    #[error("{field} must be 1..=32 characters of a-z 0-9 _")]
    BadPaymentMethod {
        /// Path of the field.
        field: String,
    },
    /// The currency is not an ISO 4217 alphabetic code.
    #[error("currency {currency:?} is not an ISO 4217 code")]
    UnknownCurrency {
        /// What the sale carried.
        currency: String,
    },
    /// `occurred_at_ms` is before 2000 or after 2099.
    #[error("occurred_at_ms {value} is outside 2000-01-01..2100-01-01")]
    OccurredAtOutOfRange {
        /// What the sale carried.
        value: i64,
    },
    /// A money field that must be zero or positive is negative, or has the wrong sign for the kind.
    #[error("{field} must not be negative here")]
    NegativeMoney {
        /// Path of the field.
        field: String,
    },
    /// A money or quantity field is beyond the accepted magnitude.
    #[error("{field} is out of range")]
    OutOfRange {
        /// Path of the field.
        field: String,
    },
    /// The sale has no items.
    #[error("a sale needs at least one item")]
    NoItems,
    /// The sale has more items than allowed.
    #[error("{count} items exceed the limit of {max} per sale")]
    TooManyItems {
        /// Items in the sale.
        count: usize,
        /// The limit in force.
        max: usize,
    },
    /// The sale has more payments than allowed.
    #[error("{count} payments exceed the limit of {max} per sale")]
    TooManyPayments {
        /// Payments in the sale.
        count: usize,
        /// The limit in force.
        max: usize,
    },
    /// Two items share a `line_no`, or a `line_no` is 0 or above [`MAX_LINE_NO`].
    #[error("items[{index}].line_no {line_no} is 0, above {MAX_LINE_NO} or repeated")]
    BadLineNo {
        /// Index of the item.
        index: usize,
        /// Its line number.
        line_no: u32,
    },
    /// A quantity is zero, or negative on a line that is not a refund line.
    #[error("items[{index}].quantity_milli {quantity_milli} must be positive, or negative on a refund line")]
    BadQuantity {
        /// Index of the item.
        index: usize,
        /// Its quantity.
        quantity_milli: i64,
    },
    /// A line's discount exceeds its gross amount.
    #[error("items[{index}].discount_minor exceeds the line's gross amount")]
    DiscountTooLarge {
        /// Index of the item.
        index: usize,
    },
    /// A line total, the subtotal, the total or the payments do not add up.
    #[error("{field} is {actual}, expected {expected}")]
    TotalsMismatch {
        /// Which figure is wrong (`items[0].line_total_minor`, `header.subtotal_minor`, ...).
        field: String,
        /// The amount the rules give.
        expected: i64,
        /// The amount the sale carried.
        actual: i64,
    },
    /// A payment or the total has the wrong sign for the sale's kind.
    #[error("{field} has the wrong sign for a {kind}")]
    WrongSign {
        /// Path of the field.
        field: String,
        /// `sale` or `refund`.
        kind: &'static str,
    },
}

impl InvalidSale {
    /// The machine-readable code sent as `code` with an `INVALID` result.
    pub fn code(&self) -> &'static str {
        match self {
            InvalidSale::BadClientTxId => "bad_client_tx_id",
            InvalidSale::Malformed { .. } => "malformed_sale",
            InvalidSale::DuplicateKey { .. } => "duplicate_key",
            InvalidSale::EmptyText { .. }
            | InvalidSale::BadText { .. }
            | InvalidSale::BadPaymentMethod { .. } => "bad_text",
            InvalidSale::UnknownCurrency { .. } => "unknown_currency",
            InvalidSale::OccurredAtOutOfRange { .. } => "bad_timestamp",
            InvalidSale::NegativeMoney { .. } | InvalidSale::WrongSign { .. } => "negative_money",
            InvalidSale::OutOfRange { .. } => "out_of_range",
            InvalidSale::NoItems => "no_items",
            InvalidSale::TooManyItems { .. } => "too_many_items",
            InvalidSale::TooManyPayments { .. } => "too_many_payments",
            InvalidSale::BadLineNo { .. } => "bad_line_no",
            InvalidSale::BadQuantity { .. } => "bad_quantity",
            InvalidSale::DiscountTooLarge { .. } => "discount_too_large",
            InvalidSale::TotalsMismatch { .. } => "totals_mismatch",
        }
    }
}

/// Every code [`InvalidSale::code`] gives, once each: the validator's `INVALID` codes listed in
/// `docs/protocol.md`. Tests and fuzz targets check answers against it (the server adds its own codes
/// for what is not the sale's content, e.g. `hash_mismatch`).
pub const INVALID_SALE_CODES: &[&str] = &[
    "bad_client_tx_id",
    "malformed_sale",
    "duplicate_key",
    "bad_text",
    "unknown_currency",
    "bad_timestamp",
    "negative_money",
    "out_of_range",
    "no_items",
    "too_many_items",
    "too_many_payments",
    "bad_line_no",
    "bad_quantity",
    "discount_too_large",
    "totals_mismatch",
];

/// Checks a `client_tx_id`: 1..=64 characters of `A-Z a-z 0-9 . _ : -` (a UUID fits).
///
/// # Errors
/// [`InvalidSale::BadClientTxId`] when it does not.
pub fn validate_client_tx_id(id: &str) -> Result<(), InvalidSale> {
    let ok = !id.is_empty()
        && id.len() <= MAX_CLIENT_TX_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(InvalidSale::BadClientTxId)
    }
}

/// Checks every rule of a sale; the first broken rule is returned.
///
/// Rules: texts non-empty, short, without control characters; ISO 4217 currency; `occurred_at_ms` in
/// 2000..2100; 1..=`max_items_per_sale` items with unique positive `line_no`; quantities positive
/// (negative only on refund lines); prices and discounts not negative; each line total equals
/// `round_half_away(quantity_milli * unit_price_minor / 1000) ∓ discount`; subtotal is the sum of line
/// totals; total = subtotal + tax; payments minus change equal the total; signs match the kind (a sale
/// is ≥ 0 and paid with positive tenders, a refund is ≤ 0 and paid out with negative tenders).
///
/// The header's own fields are checked first, then the sizes, the items, the header's totals against
/// the items, and the payments against the total.
///
/// # Errors
/// The [`InvalidSale`] naming the first broken rule.
pub fn validate_sale(sale: &SalePayload, limits: &Limits) -> Result<(), InvalidSale> {
    header_fields(&sale.header)?;
    sizes(sale, limits)?;
    let subtotal = items(&sale.items)?;
    header_totals(&sale.header, subtotal)?;
    payments(&sale.header, &sale.payments)
}

/// The header's texts, currency, time and money ranges, and a change that is not negative.
fn header_fields(h: &SaleHeader) -> Result<(), InvalidSale> {
    text("header.store_id", &h.store_id)?;
    text("header.receipt_number", &h.receipt_number)?;
    if let Some(cashier) = &h.cashier_id {
        text("header.cashier_id", cashier)?;
    }
    if iso_currency::Currency::from_code(&h.currency).is_none() {
        return Err(InvalidSale::UnknownCurrency { currency: h.currency.clone() });
    }
    if !(MIN_OCCURRED_AT_MS..MAX_OCCURRED_AT_MS).contains(&h.occurred_at_ms) {
        return Err(InvalidSale::OccurredAtOutOfRange { value: h.occurred_at_ms });
    }
    for (field, value) in [
        ("header.subtotal_minor", h.subtotal_minor),
        ("header.tax_minor", h.tax_minor),
        ("header.total_minor", h.total_minor),
        ("header.change_minor", h.change_minor),
    ] {
        money_in_range(field, value)?;
    }
    if h.change_minor < 0 {
        return Err(InvalidSale::NegativeMoney { field: "header.change_minor".into() });
    }
    Ok(())
}

/// At least one item, and no more items or payments than `limits` allow.
fn sizes(sale: &SalePayload, limits: &Limits) -> Result<(), InvalidSale> {
    if sale.items.is_empty() {
        return Err(InvalidSale::NoItems);
    }
    if sale.items.len() > limits.max_items_per_sale {
        return Err(InvalidSale::TooManyItems { count: sale.items.len(), max: limits.max_items_per_sale });
    }
    if sale.payments.len() > limits.max_payments_per_sale {
        return Err(InvalidSale::TooManyPayments {
            count: sale.payments.len(),
            max: limits.max_payments_per_sale,
        });
    }
    Ok(())
}

/// Each item's rules (line number, texts, quantity, money, line total); returns the sum of the line
/// totals, the subtotal the header must carry.
fn items(items: &[SaleItem]) -> Result<i128, InvalidSale> {
    let mut line_numbers = std::collections::HashSet::with_capacity(items.len());
    let mut subtotal: i128 = 0;
    for (i, item) in items.iter().enumerate() {
        if item.line_no == 0 || item.line_no > MAX_LINE_NO || !line_numbers.insert(item.line_no) {
            return Err(InvalidSale::BadLineNo { index: i, line_no: item.line_no });
        }
        subtotal += line_total(i, item)?;
    }
    Ok(subtotal)
}

/// One item's rules but its line number; returns its line total.
fn line_total(i: usize, item: &SaleItem) -> Result<i128, InvalidSale> {
    text(&format!("items[{i}].sku"), &item.sku)?;
    text(&format!("items[{i}].name"), &item.name)?;
    if item.quantity_milli.unsigned_abs() > MAX_ABS_QUANTITY_MILLI as u64 {
        return Err(InvalidSale::OutOfRange { field: format!("items[{i}].quantity_milli") });
    }
    if item.quantity_milli == 0 || (item.quantity_milli < 0 && !item.refund) {
        return Err(InvalidSale::BadQuantity { index: i, quantity_milli: item.quantity_milli });
    }
    for (name, value) in [
        ("unit_price_minor", item.unit_price_minor),
        ("discount_minor", item.discount_minor),
        ("line_total_minor", item.line_total_minor),
    ] {
        money_in_range(&format!("items[{i}].{name}"), value)?;
    }
    for (name, value) in
        [("unit_price_minor", item.unit_price_minor), ("discount_minor", item.discount_minor)]
    {
        if value < 0 {
            return Err(InvalidSale::NegativeMoney { field: format!("items[{i}].{name}") });
        }
    }
    let gross = gross_minor(item.quantity_milli, item.unit_price_minor);
    let discount = i128::from(item.discount_minor);
    if discount > gross.abs() {
        return Err(InvalidSale::DiscountTooLarge { index: i });
    }
    let expected = gross - gross.signum() * discount;
    if expected != i128::from(item.line_total_minor) {
        return Err(mismatch(format!("items[{i}].line_total_minor"), expected, item.line_total_minor));
    }
    Ok(expected)
}

/// The header's subtotal (the items' `subtotal`) and total, and the signs of its total, tax and
/// change for the sale's kind.
fn header_totals(h: &SaleHeader, subtotal: i128) -> Result<(), InvalidSale> {
    if subtotal != i128::from(h.subtotal_minor) {
        return Err(mismatch("header.subtotal_minor".into(), subtotal, h.subtotal_minor));
    }
    let total = i128::from(h.subtotal_minor) + i128::from(h.tax_minor);
    if total != i128::from(h.total_minor) {
        return Err(mismatch("header.total_minor".into(), total, h.total_minor));
    }
    let kind = h.kind.as_str();
    for (field, value) in [("header.total_minor", h.total_minor), ("header.tax_minor", h.tax_minor)] {
        if !sign_ok(h.kind, value) {
            return Err(InvalidSale::WrongSign { field: field.into(), kind });
        }
    }
    if h.kind == SaleKind::Refund && h.change_minor != 0 {
        return Err(InvalidSale::WrongSign { field: "header.change_minor".into(), kind });
    }
    Ok(())
}

/// Each payment's method, reference, amount and sign, and payments minus change equal to the total.
fn payments(h: &SaleHeader, payments: &[SalePayment]) -> Result<(), InvalidSale> {
    let kind = h.kind.as_str();
    let mut paid: i128 = 0;
    for (i, p) in payments.iter().enumerate() {
        let field = format!("payments[{i}].method");
        let method_ok = (1..=32).contains(&p.method.len())
            && p.method.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !method_ok {
            return Err(InvalidSale::BadPaymentMethod { field });
        }
        if let Some(reference) = &p.reference {
            text(&format!("payments[{i}].reference"), reference)?;
        }
        money_in_range(&format!("payments[{i}].amount_minor"), p.amount_minor)?;
        if p.amount_minor == 0 || !sign_ok(h.kind, p.amount_minor) {
            let field = format!("payments[{i}].amount_minor");
            return Err(match h.kind {
                SaleKind::Sale => InvalidSale::NegativeMoney { field },
                SaleKind::Refund => InvalidSale::WrongSign { field, kind },
            });
        }
        paid += i128::from(p.amount_minor);
    }
    let covered = paid - i128::from(h.change_minor);
    if covered != i128::from(h.total_minor) {
        return Err(InvalidSale::TotalsMismatch {
            field: "payments".into(),
            expected: h.total_minor,
            actual: clamp_i64(covered),
        });
    }
    Ok(())
}

/// Whether `v` has the sign of `kind`: a sale's amounts are ≥ 0, a refund's ≤ 0.
fn sign_ok(kind: SaleKind, v: i64) -> bool {
    match kind {
        SaleKind::Sale => v >= 0,
        SaleKind::Refund => v <= 0,
    }
}

/// `quantity_milli * unit_price_minor / 1000`, rounded half away from zero.
fn gross_minor(quantity_milli: i64, unit_price_minor: i64) -> i128 {
    let product = i128::from(quantity_milli) * i128::from(unit_price_minor);
    let magnitude = (product.abs() + 500) / 1000;
    magnitude * product.signum()
}

fn mismatch(field: String, expected: i128, actual: i64) -> InvalidSale {
    InvalidSale::TotalsMismatch { field, expected: clamp_i64(expected), actual }
}

fn clamp_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

fn money_in_range(field: &str, value: i64) -> Result<(), InvalidSale> {
    if value.unsigned_abs() > MAX_ABS_MINOR as u64 {
        return Err(InvalidSale::OutOfRange { field: field.into() });
    }
    Ok(())
}

/// Whether a text field refuses `c`: control characters, bidi embeddings / overrides (U+202A..U+202E)
/// and isolates (U+2066..U+2069), line and paragraph separators (U+2028, U+2029).
pub fn is_refused_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

fn text(field: &str, value: &str) -> Result<(), InvalidSale> {
    if value.trim().is_empty() {
        return Err(InvalidSale::EmptyText { field: field.into() });
    }
    if value.chars().count() > MAX_TEXT_CHARS || value.chars().any(is_refused_char) {
        return Err(InvalidSale::BadText { field: field.into() });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> SalePayload {
        SalePayload {
            header: SaleHeader {
                store_id: "store-1".into(),
                receipt_number: "R-0001".into(),
                kind: SaleKind::Sale,
                occurred_at_ms: 1_764_000_000_000,
                currency: "EUR".into(),
                subtotal_minor: 1148,
                tax_minor: 0,
                total_minor: 1148,
                change_minor: 52,
                cashier_id: Some("anna".into()),
            },
            items: vec![
                SaleItem {
                    line_no: 1,
                    sku: "4006381333931".into(),
                    name: "Espresso".into(),
                    quantity_milli: 2000,
                    unit_price_minor: 250,
                    discount_minor: 0,
                    line_total_minor: 500,
                    refund: false,
                },
                SaleItem {
                    line_no: 2,
                    sku: "apples".into(),
                    name: "Äpfel lose".into(),
                    quantity_milli: 1333,
                    unit_price_minor: 499,
                    discount_minor: 17,
                    line_total_minor: 648,
                    refund: false,
                },
            ],
            payments: vec![SalePayment { method: "cash".into(), amount_minor: 1200, reference: None }],
        }
    }

    #[test]
    fn sample_sale_is_valid() {
        assert_eq!(validate_sale(&sample(), &Limits::default()), Ok(()));
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(gross_minor(1500, 1), 2); // 1.5 -> 2
        assert_eq!(gross_minor(-1500, 1), -2);
        assert_eq!(gross_minor(1499, 1), 1);
        assert_eq!(gross_minor(1333, 499), 665); // 665.167
    }

    #[test]
    fn negative_price_is_negative_money() {
        let mut s = sample();
        s.items[0].unit_price_minor = -250;
        assert_eq!(validate_sale(&s, &Limits::default()).unwrap_err().code(), "negative_money");
    }

    #[test]
    fn totals_that_do_not_add_up_are_refused() {
        let mut s = sample();
        s.header.total_minor += 1;
        let err = validate_sale(&s, &Limits::default()).unwrap_err();
        assert_eq!(err.code(), "totals_mismatch");
        let mut s = sample();
        s.payments[0].amount_minor = 1000;
        assert_eq!(validate_sale(&s, &Limits::default()).unwrap_err().code(), "totals_mismatch");
    }

    #[test]
    fn negative_quantity_only_on_refund_lines() {
        let mut s = sample();
        s.items[0].quantity_milli = -2000;
        s.items[0].line_total_minor = -500;
        assert_eq!(validate_sale(&s, &Limits::default()).unwrap_err().code(), "bad_quantity");
    }

    #[test]
    fn refund_is_valid_with_negative_payment() {
        let mut s = sample();
        s.header.kind = SaleKind::Refund;
        s.items.truncate(1);
        s.items[0].quantity_milli = -1000;
        s.items[0].refund = true;
        s.items[0].discount_minor = 50;
        s.items[0].line_total_minor = -200;
        s.header.subtotal_minor = -200;
        s.header.total_minor = -200;
        s.header.change_minor = 0;
        s.payments[0].amount_minor = -200;
        assert_eq!(validate_sale(&s, &Limits::default()), Ok(()));
    }

    #[test]
    fn huge_numbers_are_out_of_range_not_overflow() {
        let mut s = sample();
        s.items[0].unit_price_minor = i64::MAX;
        assert_eq!(validate_sale(&s, &Limits::default()).unwrap_err().code(), "out_of_range");
    }

    #[test]
    fn line_numbers_beyond_the_sql_integer_range_are_bad_line_no() {
        let mut s = sample();
        s.items[1].line_no = MAX_LINE_NO;
        assert_eq!(validate_sale(&s, &Limits::default()), Ok(()));
        s.items[1].line_no = MAX_LINE_NO + 1;
        assert_eq!(validate_sale(&s, &Limits::default()).unwrap_err().code(), "bad_line_no");
    }

    #[test]
    fn limits_and_texts() {
        let mut s = sample();
        s.header.currency = "XYZ".into();
        assert_eq!(validate_sale(&s, &Limits::default()).unwrap_err().code(), "unknown_currency");
        let mut s = sample();
        s.items[1].name = "a\u{0}b".into();
        assert_eq!(validate_sale(&s, &Limits::default()).unwrap_err().code(), "bad_text");
        let limits = Limits { max_items_per_sale: 1, ..Limits::default() };
        assert_eq!(validate_sale(&sample(), &limits).unwrap_err().code(), "too_many_items");
        assert!(validate_client_tx_id("018f3c1e-7b2a-7cde-8f00-000000000001").is_ok());
        assert!(validate_client_tx_id("").is_err());
        assert!(validate_client_tx_id("a b").is_err());
        assert!(validate_client_tx_id(&"x".repeat(65)).is_err());
    }

    #[test]
    fn bidi_overrides_and_line_separators_are_bad_text() {
        for bad in ["A\u{202E}gnp.exe", "x\u{2066}y", "line\u{2028}two", "para\u{2029}two", "tab\there"] {
            let mut sale = sample();
            sale.items[0].name = bad.into();
            assert_eq!(
                validate_sale(&sale, &Limits::default()).map_err(|e| e.code()),
                Err("bad_text"),
                "{bad:?}"
            );
        }
        let mut sale = sample();
        sale.items[0].name = "Café crème – ☕ 日本".into();
        assert!(validate_sale(&sale, &Limits::default()).is_ok());
    }
    #[test]
    fn the_exported_codes_are_exactly_the_codes_of_invalid_sale() {
        let field = || "f".to_string();
        let every = [
            InvalidSale::BadClientTxId,
            InvalidSale::DuplicateKey { key: field() },
            InvalidSale::Malformed { detail: field() },
            InvalidSale::EmptyText { field: field() },
            InvalidSale::BadText { field: field() },
            InvalidSale::BadPaymentMethod { field: field() },
            InvalidSale::UnknownCurrency { currency: field() },
            InvalidSale::OccurredAtOutOfRange { value: 0 },
            InvalidSale::NegativeMoney { field: field() },
            InvalidSale::OutOfRange { field: field() },
            InvalidSale::NoItems,
            InvalidSale::TooManyItems { count: 2, max: 1 },
            InvalidSale::TooManyPayments { count: 2, max: 1 },
            InvalidSale::BadLineNo { index: 0, line_no: 0 },
            InvalidSale::BadQuantity { index: 0, quantity_milli: 0 },
            InvalidSale::DiscountTooLarge { index: 0 },
            InvalidSale::TotalsMismatch { field: field(), expected: 1, actual: 0 },
            InvalidSale::WrongSign { field: field(), kind: "sale" },
        ];
        let given: std::collections::BTreeSet<&str> = every.iter().map(InvalidSale::code).collect();
        let listed: std::collections::BTreeSet<&str> = INVALID_SALE_CODES.iter().copied().collect();
        assert_eq!(given, listed);
        assert_eq!(listed.len(), INVALID_SALE_CODES.len(), "a code is listed twice");
    }
}
