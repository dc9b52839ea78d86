//! Every sale and push request shown in `docs/protocol.md` is sent to a real server and answers as the
//! page says.
//!
//! The page marks each example with an HTML comment on the line before its fence (the convention is
//! described at the top of the page, "Examples on this page are tested"):
//!
//! - `<!-- example: push expect=A[,A…] [replay=A[,A…]] -->`: a whole push request, in a `json` block
//!   or as the heredoc of a `sh` block; `A` is `STATUS` or `STATUS:code` per sale, or one `HTTP:code`
//!   for a refused request; `replay=` is the answer to the same request sent a second time.
//! - `<!-- example: sale expect=A -->`: a payload alone, wrapped here in a request with its hash.
//! - `<!-- example: canonical -->`: the canonical bytes of the `sale` example before it, followed by
//!   its `payload_sha256`.
//! - `<!-- example: response -->`: a push response with documented statuses and codes.
//!
//! A block that parses as a sale or a push request without a `push`/`sale` marker, and a `json` block
//! without any marker, fail the test, so an unchecked example cannot be added. Each pushed example gets
//! a fresh database (the page's examples reuse `client_tx_id`s, and each is written as the first push
//! of its sales).

use possync_core::protocol::{canonical_json, payload_sha256, PushResponse, PushStatus, SalePayload};
use possync_test_support::TestServer;
use serde::Deserialize;
use serde_json::{json, Value};

const PROTOCOL_MD: &str = include_str!("../../../docs/protocol.md");

/// A fenced block of the page.
#[derive(Debug)]
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    /// The fence's info string (`json`, `sh`, or empty).
    lang: String,
    /// The lines between the fences.
    text: String,
    /// The `example:` marker on the line before the fence (blank lines skipped), without `example:`.
    marker: Option<String>,
    /// The text between this block's closing fence and the next block's opening fence.
    after: String,
}

/// One documented answer: per-sale results, or a refused request.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Results(Vec<(PushStatus, Option<String>)>),
    Refused(u16, String),
}

/// An example to send to a server.
#[derive(Debug)]
struct Push {
    line: usize,
    /// The request body as sent.
    body: String,
    expect: Expect,
    replay: Option<Expect>,
}

fn blocks(doc: &str) -> Result<Vec<Block>, String> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut blocks: Vec<Block> = Vec::new();
    let mut i = 0;
    let mut last_close = 0;
    while i < lines.len() {
        let Some(info) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let open = i;
        if let Some(prev) = blocks.last_mut() {
            prev.after = lines[last_close..open].join("\n");
        }
        let close = (open + 1..lines.len())
            .find(|&j| lines[j].trim_start().starts_with("```"))
            .ok_or_else(|| format!("line {}: fence never closed", open + 1))?;
        let marker = lines[..open]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .and_then(|l| l.trim().strip_prefix("<!--"))
            .and_then(|l| l.strip_suffix("-->"))
            .and_then(|l| l.trim().strip_prefix("example:"))
            .map(|m| m.trim().to_owned());
        blocks.push(Block {
            line: open + 1,
            lang: info.trim().to_owned(),
            text: lines[open + 1..close].join("\n"),
            marker,
            after: String::new(),
        });
        last_close = close + 1;
        i = close + 1;
    }
    if let Some(prev) = blocks.last_mut() {
        prev.after = lines[last_close.min(lines.len())..].join("\n");
    }
    Ok(blocks)
}

/// Bodies of the heredocs (`<<'WORD'` or `<<WORD` … `WORD`) in a shell block.
fn heredocs(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut docs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if let Some((_, rest)) = lines[i].split_once("<<") {
            let word = rest.trim_start_matches('-').split_whitespace().next().unwrap_or("");
            let word = word.trim_matches(|c| c == '\'' || c == '"');
            if !word.is_empty() {
                if let Some(end) = (i + 1..lines.len()).find(|&j| lines[j].trim() == word) {
                    docs.push(lines[i + 1..end].join("\n"));
                    i = end + 1;
                    continue;
                }
            }
        }
        i += 1;
    }
    docs
}

fn is_sale(v: &Value) -> bool {
    SalePayload::deserialize(v).is_ok()
}

fn is_push_request(v: &Value) -> bool {
    v.get("device_id").is_some() && v.get("transactions").is_some_and(Value::is_array)
}

/// The JSON documents a block holds: the whole block, or each heredoc of a shell block.
fn documents(block: &Block) -> Vec<String> {
    let mut docs = vec![block.text.clone()];
    docs.extend(heredocs(&block.text));
    docs
}

fn parse_expect(s: &str) -> Result<Expect, String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if let [one] = parts.as_slice() {
        if let Some((http, code)) = one.split_once(':').filter(|(h, _)| h.parse::<u16>().is_ok()) {
            return Ok(Expect::Refused(http.parse().unwrap_or(0), code.to_owned()));
        }
    }
    parts
        .iter()
        .map(|p| {
            let (status, code) = match p.split_once(':') {
                Some((s, c)) => (s, Some(c.to_owned())),
                None => (*p, None),
            };
            let status: PushStatus = serde_json::from_value(json!(status))
                .map_err(|_| format!("unknown status {status:?} in {s:?}"))?;
            Ok((status, code))
        })
        .collect::<Result<_, String>>()
        .map(Expect::Results)
}

/// `key=value` arguments of a marker after its kind.
fn marker_args(args: &str) -> Result<(Expect, Option<Expect>), String> {
    let mut expect = None;
    let mut replay = None;
    for arg in args.split_whitespace() {
        match arg.split_once('=') {
            Some(("expect", v)) => expect = Some(parse_expect(v)?),
            Some(("replay", v)) => replay = Some(parse_expect(v)?),
            _ => return Err(format!("unknown marker argument {arg:?}")),
        }
    }
    Ok((expect.ok_or("the marker needs expect=")?, replay))
}

/// `(status, code)` pairs of the per-sale codes table.
fn documented_sale_codes(doc: &str) -> Vec<(String, String)> {
    let mut codes = Vec::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !["CONFLICT", "INVALID", "RETRY"].contains(&cells[1]) {
            continue;
        }
        for code in cells[2].split('`').skip(1).step_by(2) {
            codes.push((cells[1].to_owned(), code.to_owned()));
        }
    }
    codes
}

/// A push body with every `"<…>"` placeholder hash replaced by the payload's real hash.
fn fill_placeholders(text: &str) -> Result<String, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let mut body = text.to_owned();
    let mut from = 0;
    for (i, tx) in value["transactions"].as_array().into_iter().flatten().enumerate() {
        let Some(sha) = tx["payload_sha256"].as_str().filter(|s| s.starts_with('<') && s.ends_with('>'))
        else {
            continue;
        };
        let canonical = canonical_json(&tx["payload"]).map_err(|e| format!("transactions[{i}]: {e}"))?;
        let quoted = format!("\"{sha}\"");
        let at = body[from..].find(&quoted).map(|p| p + from).ok_or("placeholder not found in order")?;
        let real = format!("\"{}\"", payload_sha256(&canonical));
        body.replace_range(at..at + quoted.len(), &real);
        from = at + real.len();
    }
    Ok(body)
}

/// Reads the page: checks markers, canonical bytes and response examples, and returns the examples
/// to push. Every problem found is returned, not only the first.
fn plan(doc: &str) -> Result<Vec<Push>, Vec<String>> {
    let blocks = blocks(doc).map_err(|e| vec![e])?;
    let documented = documented_sale_codes(doc);
    let mut errors = Vec::new();
    let mut pushes = Vec::new();
    let mut last_sale: Option<Value> = None;
    for b in &blocks {
        let at = |msg: String| format!("docs/protocol.md line {}: {msg}", b.line);
        let marker = b.marker.clone().unwrap_or_default();
        let (kind, args) = marker.split_once(' ').unwrap_or((marker.as_str(), ""));
        let parsed: Vec<(String, Value)> = documents(b)
            .into_iter()
            .filter_map(|t| serde_json::from_str::<Value>(&t).ok().map(|v| (t, v)))
            .collect();
        let example = parsed.iter().find(|(_, v)| is_sale(v) || is_push_request(v));
        match kind {
            "" => {
                if let Some((_, v)) = example {
                    let what = if is_sale(v) { "a sale" } else { "a push request" };
                    errors.push(at(format!(
                        "{what} without a marker: add <!-- example: {} expect=... --> before the fence",
                        if is_sale(v) { "sale" } else { "push" }
                    )));
                } else if b.lang == "json" {
                    errors.push(at("a json block without an <!-- example: ... --> marker".into()));
                }
            }
            "push" => match (example, marker_args(args)) {
                (Some((text, v)), Ok((expect, replay))) if is_push_request(v) => {
                    match fill_placeholders(text) {
                        Ok(body) => pushes.push(Push { line: b.line, body, expect, replay }),
                        Err(e) => errors.push(at(e)),
                    }
                }
                (_, Err(e)) => errors.push(at(e)),
                _ => errors.push(at("marked push, but holds no push request".into())),
            },
            "sale" => match (example, marker_args(args)) {
                (Some((_, v)), Ok((expect, replay))) if is_sale(v) => {
                    last_sale = Some(v.clone());
                    let canonical = canonical_json(v).expect("canonical JSON of a sale");
                    let request = json!({"device_id": "till-1", "transactions": [{
                        "client_tx_id": possync_test_support::new_id(),
                        "payload_hash_version": 1,
                        "payload_sha256": payload_sha256(&canonical),
                        "attempt": 1,
                        "payload": v,
                    }]});
                    pushes.push(Push { line: b.line, body: request.to_string(), expect, replay });
                }
                (_, Err(e)) => errors.push(at(e)),
                (Some((_, v)), _) if is_push_request(v) => {
                    errors.push(at("marked sale, but holds a push request: mark it push".into()))
                }
                _ => {
                    let detail = serde_json::from_str::<Value>(&b.text)
                        .map_err(|e| e.to_string())
                        .and_then(|v| SalePayload::deserialize(&v).map(|_| ()).map_err(|e| e.to_string()))
                        .err()
                        .unwrap_or_default();
                    errors.push(at(format!("marked sale, but is not a sale payload: {detail}")))
                }
            },
            "canonical" => match &last_sale {
                None => errors.push(at("canonical bytes without a sale example before them".into())),
                Some(sale) => {
                    let canonical = canonical_json(sale).expect("canonical JSON of a sale");
                    if b.text.trim().as_bytes() != canonical.as_slice() {
                        errors.push(at(format!(
                            "these are not the canonical bytes of the sale before them; they are\n{}",
                            String::from_utf8_lossy(&canonical)
                        )));
                    }
                    let stated = b
                        .after
                        .split_once("`payload_sha256` = `")
                        .and_then(|(_, rest)| rest.split_once('`'))
                        .map(|(hex, _)| hex.to_owned());
                    let real = payload_sha256(&canonical);
                    if stated.as_deref() != Some(real.as_str()) {
                        errors.push(at(format!(
                            "the payload_sha256 after the block is {stated:?}, the hash is {real}"
                        )));
                    }
                }
            },
            "response" => match serde_json::from_str::<PushResponse>(&b.text) {
                Err(e) => errors.push(at(format!("not a push response: {e}"))),
                Ok(r) => {
                    for result in &r.results {
                        let status = result.status.as_str();
                        let with_code = matches!(
                            result.status,
                            PushStatus::Conflict | PushStatus::Invalid | PushStatus::Retry
                        );
                        match &result.code {
                            Some(code) if !documented.contains(&(status.to_owned(), code.clone())) => {
                                errors.push(at(format!("{status} {code} is not in the per-sale codes table")))
                            }
                            None if with_code => errors.push(at(format!("a {status} result needs a code"))),
                            Some(_) if !with_code => {
                                errors.push(at(format!("a {status} result has no code")))
                            }
                            _ => {}
                        }
                        if matches!(result.status, PushStatus::Ok | PushStatus::Duplicate)
                            != result.server_tx_id.is_some()
                        {
                            errors.push(at(format!(
                                "server_tx_id is set exactly for OK and DUPLICATE ({status})"
                            )));
                        }
                    }
                }
            },
            other => errors.push(at(format!("unknown example kind {other:?}"))),
        }
    }
    if errors.is_empty() {
        Ok(pushes)
    } else {
        Err(errors)
    }
}

/// Sends `body` and compares the answer with `expect`; returns the `server_tx_id`s it gave.
fn check_answer(server: &TestServer, p: &Push, expect: &Expect, round: &str) -> Vec<Option<i64>> {
    let at = format!("docs/protocol.md line {} ({round})", p.line);
    let reply = server.push_raw(Some(&server.token), p.body.clone().into_bytes());
    match expect {
        Expect::Refused(http, code) => {
            assert_eq!((reply.status, reply.error_code()), (*http, code.as_str()), "{at}: {}", reply.body);
            Vec::new()
        }
        Expect::Results(want) => {
            assert_eq!(reply.status, 200, "{at}: {}", reply.body);
            let sent: Value = serde_json::from_str(&p.body).expect("json");
            let results = reply.body["results"].as_array().cloned().unwrap_or_default();
            assert_eq!(results.len(), want.len(), "{at}: one documented answer per sale: {}", reply.body);
            let mut ids = Vec::new();
            for (i, ((status, code), got)) in want.iter().zip(&results).enumerate() {
                assert_eq!(got["client_tx_id"], sent["transactions"][i]["client_tx_id"], "{at}: result {i}");
                assert_eq!(got["status"], json!(status.as_str()), "{at}: result {i}: {got}");
                if let Some(code) = code {
                    assert_eq!(got["code"], json!(code), "{at}: result {i}: {got}");
                }
                let stored = matches!(status, PushStatus::Ok | PushStatus::Duplicate);
                assert_eq!(got["server_tx_id"].is_i64(), stored, "{at}: result {i}: {got}");
                ids.push(got["server_tx_id"].as_i64());
            }
            ids
        }
    }
}

#[test]
fn every_sale_and_push_example_of_protocol_md_answers_as_documented() {
    let pushes =
        plan(PROTOCOL_MD).unwrap_or_else(|errors| panic!("docs/protocol.md:\n{}", errors.join("\n")));
    // The request example, the payload example, three test vectors, the curl example.
    assert!(pushes.len() >= 6, "only {} examples found: {pushes:#?}", pushes.len());
    for p in &pushes {
        let server = TestServer::start();
        let first = check_answer(&server, p, &p.expect, "first push");
        if let Some(replay) = &p.replay {
            let again = check_answer(&server, p, replay, "replay");
            for (i, (a, b)) in first.iter().zip(&again).enumerate() {
                if a.is_some() && b.is_some() {
                    assert_eq!(
                        a, b,
                        "docs/protocol.md line {}: a replay keeps the server_tx_id of sale {i}",
                        p.line
                    );
                }
            }
        }
    }
}

const SALE: &str = r#"{"header": {"store_id": "store-1", "receipt_number": "R-1", "kind": "sale",
 "occurred_at_ms": 1764000000000, "currency": "EUR", "subtotal_minor": 250, "tax_minor": 0,
 "total_minor": 250, "change_minor": 0},
 "items": [{"line_no": 1, "sku": "e", "name": "Espresso", "quantity_milli": 1000, "unit_price_minor": 250,
  "discount_minor": 0, "line_total_minor": 250, "refund": false}],
 "payments": [{"method": "cash", "amount_minor": 250}]}"#;

fn push_of(sale: &str) -> String {
    format!(
        r#"{{"device_id": "till-1", "transactions": [{{"client_tx_id": "a-1", "payload_hash_version": 1,
 "payload_sha256": "<64 lowercase hex>", "attempt": 1, "payload": {sale}}}]}}"#
    )
}

#[test]
fn an_example_without_a_marker_fails_the_check() {
    let unmarked = [
        format!("Text.\n\n```json\n{SALE}\n```\n"),
        format!("Text.\n\n```\n{SALE}\n```\n"),
        format!("Text.\n\n```json\n{}\n```\n", push_of(SALE)),
        format!("Text.\n\n```sh\ncat > /tmp/p.json <<'JSON'\n{}\nJSON\ncurl ...\n```\n", push_of(SALE)),
        "Text.\n\n```json\n{\"anything\": 1}\n```\n".to_owned(),
    ];
    for doc in &unmarked {
        assert!(plan(doc).is_err(), "an unmarked example passed:\n{doc}");
    }
    let not_sales =
        ["Headers:\n\n```\nPOST /sync/push HTTP/1.1\n```\n", "```sh\ncurl -s http://x/healthz\n```\n"];
    for doc in not_sales {
        assert!(plan(doc).expect("no example here").is_empty());
    }
}

#[test]
fn markers_are_read_and_placeholders_filled() {
    let doc = format!(
        "<!-- example: sale expect=OK -->\n```json\n{SALE}\n```\n\n\
         <!-- example: push expect=INVALID:hash_mismatch replay=403:store_forbidden -->\n```json\n{}\n```\n",
        push_of(SALE).replace("<64 lowercase hex>", &"0".repeat(64))
    );
    let pushes = plan(&doc).expect("a valid page");
    assert_eq!(pushes.len(), 2);
    assert_eq!(pushes[0].expect, Expect::Results(vec![(PushStatus::Ok, None)]));
    assert_eq!(pushes[1].expect, Expect::Results(vec![(PushStatus::Invalid, Some("hash_mismatch".into()))]));
    assert_eq!(pushes[1].replay, Some(Expect::Refused(403, "store_forbidden".into())));

    let filled = fill_placeholders(&push_of(SALE)).expect("filled");
    let value: Value = serde_json::from_str(&filled).expect("json");
    let canonical = canonical_json(&value["transactions"][0]["payload"]).expect("canonical");
    assert_eq!(value["transactions"][0]["payload_sha256"], json!(payload_sha256(&canonical)));

    let wrong_kind = format!("<!-- example: sale expect=OK -->\n```json\n{}\n```\n", push_of(SALE));
    assert!(plan(&wrong_kind).is_err());
    let not_a_sale = "<!-- example: sale expect=OK -->\n```json\n{\"header\": {}}\n```\n";
    assert!(plan(not_a_sale).is_err());
    let bad_canonical = format!("<!-- example: sale expect=OK -->\n```json\n{SALE}\n```\n\n<!-- example: canonical -->\n```\n{SALE}\n```\n");
    assert!(plan(&bad_canonical).is_err());
}
