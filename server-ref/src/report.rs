//! The till's backlog report, an optional `report` object in the push request body.
//!
//! Every field is optional and bounded; a report that breaks a bound is ignored as a whole (logged and
//! counted as `possync_limit_hits_total{limit="bad_report"}`), and the push's sales are settled as
//! if it were absent: a report must never cost a sale its delivery. Old tills send none.
//!
//! ```json
//! {"library_version": "0.4.0", "unsent_count": 80, "oldest_unsent_age_ms": 5400000,
//!  "unsent_minor": {"EUR": 123450}, "last_seq": 1057, "seq_start": 1, "retired_seqs": [1044],
//!  "outbox_id": "9f2c4e1a0b7d4c3e8a6f5b2d1c0e9a8b", "acked_seq": 1043, "kept_seq": 12,
//!  "oldest_kept_age_ms": 604000000}
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::store::TillReport;

/// Largest outbox sequence number accepted, in a report and in a sale's envelope (2^53, exact in
/// every JSON parser).
pub const MAX_OUTBOX_SEQ: u64 = 1 << 53;
/// Most currencies in `unsent_minor`.
pub const MAX_CURRENCIES: usize = 16;
/// Most sequence numbers in `retired_seqs` per request.
pub const MAX_RETIRED_SEQS: usize = 1000;
/// Longest `library_version`, in bytes.
pub const MAX_VERSION_BYTES: usize = 64;
/// Longest `outbox_id`, in bytes.
pub const MAX_OUTBOX_ID_BYTES: usize = 64;

/// A checked report, ready to be stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedReport {
    /// The backlog fields.
    pub report: TillReport,
    /// Outbox sequence numbers the till voided or re-keyed since its last report.
    pub retired_seqs: Vec<i64>,
    /// The unsent amounts, by currency.
    pub unsent_minor: Option<BTreeMap<String, i64>>,
    /// Age of the oldest sale the till keeps, in ms (the report's `kept_since_ms` is the request's
    /// time less this).
    pub oldest_kept_age_ms: Option<i64>,
}

impl ParsedReport {
    /// The report as it stands after this request: the till counted the request's own sales as
    /// unsent, so those the server decided (`decided`, and their amounts by currency) are taken off.
    /// With nothing left unsent, the amounts and the oldest age go too.
    /// The recovery window's start is the request's time (`now_ms`) less the reported age.
    pub fn after_request(
        &self,
        decided: u64,
        decided_minor: &BTreeMap<String, i64>,
        now_ms: i64,
    ) -> TillReport {
        let mut report = self.report.clone();
        report.kept_since_ms = self.oldest_kept_age_ms.map(|age| now_ms.saturating_sub(age));
        let left = report.unsent_count.map(|n| n.saturating_sub(i64::try_from(decided).unwrap_or(i64::MAX)));
        report.unsent_count = left;
        let mut minor = self.unsent_minor.clone();
        if let Some(map) = minor.as_mut() {
            for (currency, amount) in decided_minor {
                if let Some(v) = map.get_mut(currency) {
                    *v = v.saturating_sub(*amount);
                }
            }
            map.retain(|_, v| *v != 0);
        }
        if left == Some(0) {
            report.oldest_unsent_age_ms = None;
            minor = minor.map(|_| BTreeMap::new());
        }
        report.unsent_minor = minor.map(|m| serde_json::to_string(&m).unwrap_or_else(|_| "{}".into()));
        report
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportIn {
    #[serde(default)]
    library_version: Option<String>,
    #[serde(default)]
    unsent_count: Option<u64>,
    #[serde(default)]
    oldest_unsent_age_ms: Option<u64>,
    #[serde(default)]
    unsent_minor: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    last_seq: Option<u64>,
    #[serde(default)]
    seq_start: Option<u64>,
    #[serde(default)]
    retired_seqs: Vec<u64>,
    #[serde(default)]
    outbox_id: Option<String>,
    #[serde(default)]
    acked_seq: Option<u64>,
    #[serde(default)]
    kept_seq: Option<u64>,
    #[serde(default)]
    oldest_kept_age_ms: Option<u64>,
}

/// Checks a `report` value against the bounds above.
///
/// # Errors
/// What is wrong with it, for the log.
pub fn parse_report(value: &serde_json::Value) -> Result<ParsedReport, String> {
    let r = ReportIn::deserialize(value).map_err(|e| format!("report is not valid: {e}"))?;
    if let Some(v) = &r.library_version {
        if v.is_empty() || v.len() > MAX_VERSION_BYTES || !v.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("library_version must be 1..={MAX_VERSION_BYTES} visible ASCII characters"));
        }
    }
    if let Some(v) = &r.outbox_id {
        if v.is_empty() || v.len() > MAX_OUTBOX_ID_BYTES || !v.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("outbox_id must be 1..={MAX_OUTBOX_ID_BYTES} visible ASCII characters"));
        }
    }
    let seq = |name: &str, v: Option<u64>| -> Result<Option<i64>, String> {
        match v {
            Some(n) if !(1..=MAX_OUTBOX_SEQ).contains(&n) => {
                Err(format!("{name} must be in 1..={MAX_OUTBOX_SEQ}"))
            }
            v => Ok(v.map(|n| n as i64)),
        }
    };
    let count = |name: &str, v: Option<u64>| -> Result<Option<i64>, String> {
        v.map(|n| i64::try_from(n).map_err(|_| format!("{name} is too large"))).transpose()
    };
    let unsent_minor = match &r.unsent_minor {
        None => None,
        Some(map) => {
            if map.len() > MAX_CURRENCIES {
                return Err(format!("unsent_minor names more than {MAX_CURRENCIES} currencies"));
            }
            let mut amounts = BTreeMap::new();
            for (currency, amount) in map {
                if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err("unsent_minor keys must be ISO 4217 codes".into());
                }
                let Some(amount) = amount.as_i64() else {
                    return Err("unsent_minor amounts must be integers (minor units)".into());
                };
                amounts.insert(currency.clone(), amount);
            }
            Some(amounts)
        }
    };
    if r.retired_seqs.len() > MAX_RETIRED_SEQS {
        return Err(format!("retired_seqs has more than {MAX_RETIRED_SEQS} entries"));
    }
    let mut retired_seqs = Vec::with_capacity(r.retired_seqs.len());
    for n in &r.retired_seqs {
        retired_seqs.push(seq("retired_seqs", Some(*n))?.unwrap_or_default());
    }
    Ok(ParsedReport {
        report: TillReport {
            library_version: r.library_version,
            unsent_count: count("unsent_count", r.unsent_count)?,
            oldest_unsent_age_ms: count("oldest_unsent_age_ms", r.oldest_unsent_age_ms)?,
            unsent_minor: unsent_minor
                .as_ref()
                .map(|m| serde_json::to_string(m).unwrap_or_else(|_| "{}".into())),
            last_seq: seq("last_seq", r.last_seq)?,
            seq_start: seq("seq_start", r.seq_start)?,
            outbox_id: r.outbox_id,
            acked_seq: seq("acked_seq", r.acked_seq)?,
            kept_seq: seq("kept_seq", r.kept_seq)?,
            kept_since_ms: None,
        },
        retired_seqs,
        unsent_minor,
        oldest_kept_age_ms: count("oldest_kept_age_ms", r.oldest_kept_age_ms)?,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_report;
    use serde_json::json;

    #[test]
    fn a_full_report_parses_and_bad_ones_are_refused() {
        let ok = parse_report(&json!({"library_version": "0.4.0", "unsent_count": 80,
            "oldest_unsent_age_ms": 5, "unsent_minor": {"EUR": 12}, "last_seq": 9, "retired_seqs": [3]}))
        .expect("valid");
        assert_eq!(ok.report.unsent_count, Some(80));
        assert_eq!(ok.report.unsent_minor.as_deref(), Some(r#"{"EUR":12}"#));
        assert_eq!(ok.retired_seqs, vec![3]);
        assert!(parse_report(&json!({})).is_ok());
        assert!(parse_report(&json!({"unsent_count": -1})).is_err());
        assert!(parse_report(&json!({"unsent_minor": {"euro": 1}})).is_err());
        assert!(parse_report(&json!({"retired_seqs": [0]})).is_err());
        assert!(parse_report(&json!({"surprise": 1})).is_err());
        assert!(parse_report(&json!({"library_version": "a b"})).is_err());
        assert!(parse_report(&json!({"outbox_id": ""})).is_err());
        assert!(parse_report(&json!({"outbox_id": "x".repeat(65)})).is_err());
        let id = parse_report(&json!({"outbox_id": "9f2c4e1a"})).expect("valid");
        assert_eq!(id.report.outbox_id.as_deref(), Some("9f2c4e1a"));
        let acked =
            parse_report(&json!({"acked_seq": 40, "kept_seq": 3, "oldest_kept_age_ms": 7})).expect("valid");
        assert_eq!((acked.report.acked_seq, acked.report.kept_seq), (Some(40), Some(3)));
        assert_eq!(acked.after_request(0, &Default::default(), 10).kept_since_ms, Some(3));
        assert!(parse_report(&json!({"acked_seq": 0})).is_err());
        assert!(parse_report(&json!({"acked_seq": 1u64 << 60})).is_err());
        assert!(parse_report(&json!({"kept_seq": -2})).is_err());
    }

    #[test]
    fn the_sales_a_request_settled_are_taken_off_the_backlog() {
        let parsed = parse_report(&json!({"unsent_count": 3, "oldest_unsent_age_ms": 9,
            "unsent_minor": {"EUR": 1500, "JPY": 100}}))
        .expect("valid");
        let decided = std::collections::BTreeMap::from([("EUR".to_owned(), 500)]);
        let after = parsed.after_request(1, &decided, 0);
        assert_eq!(after.unsent_count, Some(2));
        assert_eq!(after.unsent_minor.as_deref(), Some(r#"{"EUR":1000,"JPY":100}"#));
        assert_eq!(after.oldest_unsent_age_ms, Some(9));
        let all = parsed.after_request(3, &decided, 0);
        assert_eq!((all.unsent_count, all.oldest_unsent_age_ms), (Some(0), None));
        assert_eq!(all.unsent_minor.as_deref(), Some("{}"));
    }
}
