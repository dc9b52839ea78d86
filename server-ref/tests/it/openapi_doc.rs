//! docs/openapi.yaml agrees with docs/protocol.md and with core's limits: the same per-sale and
//! request-level codes in both documents, and the numeric limits of the schemas are core's constants.
//! (The document's validity and the live server's conformance are checked by scripts/schemathesis.)

use std::collections::BTreeSet;

use possync_core::protocol::validate::{
    Limits, MAX_ABS_MINOR, MAX_ABS_QUANTITY_MILLI, MAX_CLIENT_TX_ID_LEN, MAX_LINE_NO, MAX_OCCURRED_AT_MS,
    MAX_TEXT_CHARS, MIN_OCCURRED_AT_MS,
};

const OPENAPI: &str = include_str!("../../../docs/openapi.yaml");
const PROTOCOL_MD: &str = include_str!("../../../docs/protocol.md");

/// Codes of the tables of protocol.md: per-sale (`| INVALID | `code` |`) and request-level
/// (`| 503 | `code` |`) rows.
fn protocol_codes() -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut sale, mut request) = (BTreeSet::new(), BTreeSet::new());
    for line in PROTOCOL_MD.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 {
            continue;
        }
        let codes = cells[2].split('`').skip(1).step_by(2).map(str::to_owned);
        if ["CONFLICT", "INVALID", "RETRY"].contains(&cells[1]) {
            sale.extend(codes);
        } else if cells[1].split(" / ").all(|s| s.parse::<u16>().is_ok_and(|n| (400..600).contains(&n))) {
            request.extend(codes);
        }
    }
    (sale, request)
}

/// The values of every `enum:` of the YAML, flow (`enum: [a, b]`) or block (`- a` lines below it),
/// by the name of the schema they are in (the last top-level `    Name:` line of `components.schemas`).
fn openapi_enums() -> Vec<(String, Vec<String>)> {
    let mut enums = Vec::new();
    let mut schema = String::new();
    let lines: Vec<&str> = OPENAPI.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("    ") && !line.starts_with("     ") && line.trim_end().ends_with(':') {
            schema = line.trim().trim_end_matches(':').to_owned();
        }
        let Some(rest) = line.trim().strip_prefix("enum:") else { continue };
        let rest = rest.trim();
        let values: Vec<String> = if let Some(flow) = rest.strip_prefix('[') {
            flow.trim_end_matches(']').split(',').map(|v| v.trim().to_owned()).collect()
        } else {
            let indent = line.len() - line.trim_start().len();
            lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().starts_with("- ") && l.len() - l.trim_start().len() >= indent)
                .map(|l| l.trim().trim_start_matches("- ").to_owned())
                .collect()
        };
        enums.push((schema.clone(), values));
    }
    enums
}

fn codes_of(prefixes: &[&str]) -> BTreeSet<String> {
    openapi_enums()
        .into_iter()
        .filter(|(schema, _)| prefixes.iter().any(|p| schema.starts_with(p)))
        .flat_map(|(_, values)| values)
        .collect()
}

#[test]
fn per_sale_codes_are_the_same_in_both_documents() {
    let (sale, _) = protocol_codes();
    let openapi = codes_of(&["ConflictResult", "InvalidResult", "RetryResult"]);
    assert!(sale.contains("totals_mismatch") && sale.contains("duplicate_key"), "{sale:?}");
    assert_eq!(openapi, sale, "per-sale codes: docs/openapi.yaml vs docs/protocol.md");
}

#[test]
fn request_level_codes_are_the_same_in_both_documents() {
    let (_, mut request) = protocol_codes();
    // Sent only by the tiny_http front, which the tokio front replaces; the contract has no such code.
    assert!(request.remove("unreadable_body"));
    let openapi = codes_of(&["Error4", "Error5"]);
    assert!(openapi.contains("ambiguous_framing") && openapi.contains("shutting_down"), "{openapi:?}");
    assert_eq!(openapi, request, "request-level codes: docs/openapi.yaml vs docs/protocol.md");
}

#[test]
fn schema_limits_are_cores_constants() {
    let limits = Limits::default();
    let expected = [
        format!("maxLength: {MAX_CLIENT_TX_ID_LEN}"),
        format!("pattern: \"^[A-Za-z0-9._:-]{{1,{MAX_CLIENT_TX_ID_LEN}}}$\""),
        format!("maxLength: {MAX_TEXT_CHARS}"),
        format!("minimum: -{MAX_ABS_MINOR}"),
        format!("maximum: {MAX_ABS_MINOR}"),
        format!("minimum: -{MAX_ABS_QUANTITY_MILLI}"),
        format!("maximum: {MAX_ABS_QUANTITY_MILLI}"),
        format!("maximum: {MAX_LINE_NO}"),
        format!("minimum: {MIN_OCCURRED_AT_MS}"),
        format!("maximum: {}", MAX_OCCURRED_AT_MS - 1),
        format!("maxItems: {}", limits.max_items_per_sale),
        format!("maxItems: {}", limits.max_payments_per_sale),
        format!("maxItems: {}", possync_server::push::PushLimits::default().max_transactions),
    ];
    for line in expected {
        assert!(OPENAPI.lines().any(|l| l.trim() == line), "docs/openapi.yaml has no line `{line}`");
    }
}
