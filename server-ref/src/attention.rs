//! Attention review: the sales a person has to look at, read from the audit trail.
//!
//! A `CONFLICT` (a `client_tx_id` already stored with another payload hash) or an `INVALID` (a sale
//! that failed validation) is permanent: the till keeps the sale and shows it, and the shop's manager
//! decides what to do. These functions back `possync-server attention list | show | export` (and
//! [`write_csv`] the console's CSV export): they read
//! [`AdminStore::attention_items`], [`AdminStore::audit_trail`] and [`AdminStore::stored_sale`] and write plain text
//! or CSV. They never change anything.

use std::io::Write;
use std::time::{Duration, SystemTime};

use std::collections::HashMap;

use crate::store::{AdminStore, AttentionEntry, AuditRecord, StoreError};

/// Why an attention command failed.
#[derive(Debug, thiserror::Error)]
pub enum AttentionError {
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The output could not be written.
    #[error("cannot write the output: {0}")]
    Io(#[from] std::io::Error),
    /// The CSV output could not be written.
    #[error("cannot write the CSV output: {0}")]
    Csv(#[from] csv::Error),
    /// `--since` is neither a number of days nor an RFC 3339 time.
    #[error(
        "invalid --since {0:?}: give a number of days (7, 7d) or an RFC 3339 time (2026-11-01T00:00:00Z)"
    )]
    BadSince(String),
    /// Neither an audit row nor a stored sale exists for this id in this store.
    #[error("no audit row and no stored sale for client_tx_id {client_tx_id} in store {store_id}")]
    NotFound {
        /// The store asked about.
        store_id: String,
        /// The sale asked about.
        client_tx_id: String,
    },
}

/// Parses `--since`: a number of days back from `now` (`7` or `7d`), or an RFC 3339 time.
///
/// # Errors
/// [`AttentionError::BadSince`] when it is neither.
pub fn parse_since(text: &str, now: SystemTime) -> Result<SystemTime, AttentionError> {
    let bad = || AttentionError::BadSince(text.to_owned());
    let trimmed = text.trim();
    let days = trimmed.strip_suffix('d').unwrap_or(trimmed);
    if let Ok(days) = days.parse::<u32>() {
        return now.checked_sub(Duration::from_secs(u64::from(days) * 86_400)).ok_or_else(bad);
    }
    let parsed = time::OffsetDateTime::parse(trimmed, &time::format_description::well_known::Rfc3339)
        .map_err(|_| bad())?;
    Ok(SystemTime::from(parsed))
}

fn opt<T: std::fmt::Display>(value: &Option<T>) -> String {
    value.as_ref().map_or_else(|| "-".to_owned(), T::to_string)
}

/// Writes the attention items of a store as a table, one line per attempt; returns how many.
///
/// # Errors
/// [`AttentionError::Store`] or [`AttentionError::Io`].
pub fn list(
    store: &dyn AdminStore,
    store_id: &str,
    since: Option<SystemTime>,
    out: &mut dyn Write,
) -> Result<usize, AttentionError> {
    let items = store.attention_items(store_id, since)?;
    if items.is_empty() {
        writeln!(out, "no CONFLICT or INVALID attempts for store {store_id}")?;
        return Ok(0);
    }
    writeln!(
        out,
        "{:<24} {:<16} {:<36} {:<8} {:<22} {:<64} {:<64} message",
        "time", "device", "client_tx_id", "outcome", "code", "sent_sha256", "stored_sha256"
    )?;
    for r in &items {
        writeln!(
            out,
            "{:<24} {:<16} {:<36} {:<8} {:<22} {:<64} {:<64} {}",
            r.at,
            r.device_id,
            r.client_tx_id,
            r.outcome,
            opt(&r.code),
            opt(&r.payload_sha256),
            opt(&r.stored_sha256),
            opt(&r.message)
        )?;
    }
    writeln!(out, "{} attempt(s) need attention; details: possync-server attention show --store {store_id} --client-tx-id ID", items.len())?;
    Ok(items.len())
}

/// Writes every audit row of one sale, and the stored sale's hash when one is stored.
///
/// # Errors
/// [`AttentionError::NotFound`] when there is neither; [`AttentionError::Store`] or
/// [`AttentionError::Io`].
pub fn show(
    store: &dyn AdminStore,
    store_id: &str,
    client_tx_id: &str,
    out: &mut dyn Write,
) -> Result<(), AttentionError> {
    let stored = store.stored_sale(store_id, client_tx_id)?;
    let trail = store.audit_trail(store_id, client_tx_id)?;
    if stored.is_none() && trail.is_empty() {
        return Err(AttentionError::NotFound {
            store_id: store_id.to_owned(),
            client_tx_id: client_tx_id.to_owned(),
        });
    }
    writeln!(out, "sale {client_tx_id} of store {store_id}")?;
    match &stored {
        Some(s) => writeln!(
            out,
            "stored: server_tx_id {} by device {} at {}, payload_sha256 {} (v{})",
            s.server_tx_id, s.device_id, s.received_at, s.payload_sha256, s.payload_hash_version
        )?,
        None => writeln!(out, "stored: no (nothing is stored under this client_tx_id for this store)")?,
    }
    writeln!(out, "attempts: {}", trail.len())?;
    for r in &trail {
        writeln!(
            out,
            "- {} device {} attempt {} correlation_id {}: {}{}",
            r.at,
            r.device_id,
            opt(&r.attempt),
            opt(&r.correlation_id),
            r.outcome,
            r.code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default()
        )?;
        writeln!(out, "    sent_sha256   {} (v{})", opt(&r.payload_sha256), opt(&r.payload_hash_version))?;
        if let Some(stored_sha) = &r.stored_sha256 {
            writeln!(out, "    stored_sha256 {stored_sha}")?;
        }
        if let Some(message) = &r.message {
            writeln!(out, "    message       {message}")?;
        }
    }
    Ok(())
}

/// The one CSV format of attention items: the header row of `attention export` ([`export_csv`]) and
/// of the console's "Export CSV" ([`write_csv`]). Times are RFC 3339 UTC with milliseconds; absent
/// values are empty fields.
pub const CSV_HEADER: [&str; 16] = [
    "time",
    "store_id",
    "device_id",
    "client_tx_id",
    "outbox_seq",
    "outcome",
    "code",
    "message",
    "attempt",
    "correlation_id",
    "payload_hash_version",
    "sent_sha256",
    "stored_sha256",
    "settled_at",
    "settled_by",
    "settled_note",
];

/// `value` made inert for a spreadsheet: a cell starting with `=`, `+`, `-`, `@`, a tab or a carriage
/// return is a formula to Excel and LibreOffice (CSV injection, OWASP), so it gets a leading `'`.
/// Text that devices sent (ids, device names, messages quoting input) reaches this file.
pub fn csv_cell(value: &str) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    }
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds (the format of the audit rows' times).
fn rfc3339_ms(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            ms.rem_euclid(1000)
        ),
        Err(_) => ms.to_string(),
    }
}

/// One row of [`CSV_HEADER`]: an audit row and, when known, what the console adds to it.
fn csv_row(r: &AuditRecord, entry: Option<&AttentionEntry>) -> [String; 16] {
    let text = |v: &Option<String>| csv_cell(v.as_deref().unwrap_or_default());
    let num = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
    [
        r.at.clone(),
        csv_cell(&r.store_id),
        csv_cell(&r.device_id),
        csv_cell(&r.client_tx_id),
        num(entry.and_then(|e| e.outbox_seq)),
        r.outcome.clone(),
        text(&r.code),
        text(&r.message),
        num(r.attempt.map(i64::from)),
        text(&r.correlation_id),
        num(r.payload_hash_version.map(i64::from)),
        text(&r.payload_sha256),
        text(&r.stored_sha256),
        entry.and_then(|e| e.settled_at_ms).map(rfc3339_ms).unwrap_or_default(),
        entry.map(|e| text(&e.settled_by)).unwrap_or_default(),
        entry.map(|e| text(&e.settled_note)).unwrap_or_default(),
    ]
}

/// Writes attention entries (the console's) as CSV: header row [`CSV_HEADER`], one row each.
///
/// # Errors
/// [`csv::Error`] when `out` cannot be written.
pub fn write_csv(entries: &[AttentionEntry], out: &mut dyn Write) -> Result<(), csv::Error> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(CSV_HEADER)?;
    for e in entries {
        writer.write_record(csv_row(&e.record, Some(e)))?;
    }
    writer.flush()?;
    Ok(())
}

/// Writes the attention items of a store as CSV (RFC 4180, header row [`CSV_HEADER`], oldest first,
/// settled ones included); returns how many rows were written after the header.
///
/// # Errors
/// [`AttentionError::Store`] or [`AttentionError::Csv`].
pub fn export_csv(
    store: &dyn AdminStore,
    store_id: &str,
    since: Option<SystemTime>,
    out: &mut dyn Write,
) -> Result<usize, AttentionError> {
    let items = store.attention_items(store_id, since)?;
    // What the console knows of each (outbox sequence number, who settled it), by audit row.
    let entries: HashMap<i64, AttentionEntry> = store
        .attention_entries(Some(store_id), true, u32::MAX)?
        .into_iter()
        .map(|e| (e.record.audit_id, e))
        .collect();
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(CSV_HEADER)?;
    for r in &items {
        writer.write_record(csv_row(r, entries.get(&r.audit_id)))?;
    }
    writer.flush()?;
    Ok(items.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_made_inert() {
        for formula in ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"] {
            assert_eq!(csv_cell(formula), format!("'{formula}"));
        }
        for plain in ["R-0001", "till-1", "hash_differs", "a=b", ""] {
            assert_eq!(csv_cell(plain), plain);
        }
    }

    #[test]
    fn since_accepts_days_and_rfc3339() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10 * 86_400);
        let three_days = SystemTime::UNIX_EPOCH + Duration::from_secs(7 * 86_400);
        assert_eq!(parse_since("3", now).ok(), Some(three_days));
        assert_eq!(parse_since("3d", now).ok(), Some(three_days));
        let t = parse_since("1970-01-02T00:00:00Z", now).ok();
        assert_eq!(t, Some(SystemTime::UNIX_EPOCH + Duration::from_secs(86_400)));
        let offset = parse_since("1970-01-02T02:00:00+02:00", now).ok();
        assert_eq!(offset, t, "offsets are honoured");
        assert!(matches!(parse_since("yesterday", now), Err(AttentionError::BadSince(_))));
        assert!(matches!(parse_since("-3", now), Err(AttentionError::BadSince(_))));
    }
}
