//! `status`, `list-attention` and `sync-now` on a real outbox file, and the checks shared with the
//! demo: URL parsing, server reachability and token probing, the cashier's status line.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use possync_core::config::{OutboxConfig, SyncConfig};
use possync_core::drain::DrainStop;
use possync_core::engine::{EngineConfig, StatusSnapshot, SyncEngine};
use possync_core::outbox::{CurrencyAmount, Outbox};
use possync_core::status::SyncStatus;
use possync_core::transport::{HttpTransport, TransportError};

use crate::{ServerArgs, TillError};

/// Checks that `url` is an `http(s)://host[:port]` base URL; returns it without a trailing slash.
///
/// # Errors
/// [`TillError::BadUrl`].
pub fn check_url(url: &str) -> Result<String, TillError> {
    let bad = |reason: &str| TillError::BadUrl { url: url.to_owned(), reason: reason.to_owned() };
    let uri: ureq::http::Uri = url.parse().map_err(|e: ureq::http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(_) => return Err(bad("the scheme must be http or https")),
        None => return Err(bad("no scheme")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

/// `GET /readyz`: the server is up and its database ready.
///
/// # Errors
/// [`TillError::Unreachable`] when it cannot be reached or is not ready.
pub fn check_ready(url: &str) -> Result<(), TillError> {
    let unreachable = |reason: String| TillError::Unreachable { url: url.to_owned(), reason };
    let resp = agent().get(format!("{url}/readyz")).call().map_err(|e| unreachable(e.to_string()))?;
    if resp.status() != 200 {
        return Err(unreachable(format!("/readyz answered HTTP {}", resp.status())));
    }
    Ok(())
}

/// Pushes an empty batch: 200 means the token and device are accepted.
///
/// # Errors
/// [`TillError::Refused`] for 401/403, [`TillError::Unreachable`] otherwise.
pub fn check_token(url: &str, token: &str, device: &str) -> Result<(), TillError> {
    let body = serde_json::json!({"device_id": device, "transactions": []}).to_string();
    let mut resp = agent()
        .post(format!("{url}/sync/push"))
        .header("Content-Type", "application/json")
        .header("Authorization", format!("Bearer {token}"))
        .send(body.as_bytes())
        .map_err(|e| TillError::Unreachable { url: url.to_owned(), reason: e.to_string() })?;
    let status = resp.status().as_u16();
    if status == 200 {
        return Ok(());
    }
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    let code = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    if status == 401 || status == 403 {
        return Err(TillError::Refused { url: url.to_owned(), device: device.to_owned(), status, code });
    }
    Err(TillError::Unreachable {
        url: url.to_owned(),
        reason: format!("/sync/push answered HTTP {status} {code}"),
    })
}

/// Opens an existing outbox file read-only (never creates, migrates or writes it).
///
/// # Errors
/// [`TillError::Outbox`] when the file is missing (named), of another schema version or not an outbox.
pub fn open_outbox(path: &Path) -> Result<Outbox, TillError> {
    Outbox::open_read_only(path)
        .map_err(|e| TillError::Outbox { path: path.to_owned(), reason: e.to_string() })
}

/// Opens an existing outbox file to drain it (migrating an older schema), never creating one.
///
/// # Errors
/// [`TillError::Outbox`] when the file is missing (named) or cannot be opened.
pub fn open_outbox_to_drain(path: &Path) -> Result<Outbox, TillError> {
    let fail =
        |e: possync_core::StorageError| TillError::Outbox { path: path.to_owned(), reason: e.to_string() };
    if !path.is_file() {
        return Err(fail(possync_core::StorageError::NotFound { path: path.to_owned() }));
    }
    Outbox::open(path, OutboxConfig::default()).map_err(fail)
}

/// "EUR 12.34, CHF 5.00".
pub fn amounts(list: &[CurrencyAmount]) -> String {
    if list.is_empty() {
        return "nothing".into();
    }
    list.iter()
        .map(|a| format!("{} {}.{:02}", a.currency, a.total_minor / 100, (a.total_minor % 100).abs()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "3.2 s", "4 min", "2 h".
pub fn age(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) if ms < 3_600_000 => format!("{} min", ms / 60_000),
        Some(ms) => format!("{} h", ms / 3_600_000),
    }
}

/// The engine's state in a word or two, as a cashier's banner.
pub fn banner(status: &SyncStatus) -> String {
    match status {
        SyncStatus::Idle { .. } => "Idle".into(),
        SyncStatus::Draining { done, total } => format!("Draining {done}/{total}"),
        SyncStatus::Offline { .. } => "Offline".into(),
        SyncStatus::AuthFailed { .. } => "AuthFailed".into(),
        SyncStatus::TlsFailed { .. } => "TlsFailed".into(),
        SyncStatus::NeedsAttention { conflicts, invalid } => {
            format!("NeedsAttention ({conflicts} conflict, {invalid} invalid)")
        }
    }
}

/// The per-run status line a cashier sees.
pub fn status_line(s: &StatusSnapshot) -> String {
    format!(
        "{} · unsent {} ({}) · oldest unsent {}",
        banner(&s.status),
        s.counts.unsent(),
        amounts(&s.unsent_by_currency),
        age(s.oldest_unsent_age_ms)
    )
}

/// `possync-till status --outbox FILE`.
///
/// # Errors
/// [`TillError::Outbox`].
pub fn status(path: &Path) -> Result<(), TillError> {
    let outbox = open_outbox(path)?;
    let counts = outbox.counts()?;
    let attention = counts.conflict + counts.invalid;
    let banner = if attention > 0 {
        format!("NeedsAttention ({} conflict, {} invalid)", counts.conflict, counts.invalid)
    } else if counts.unsent() > 0 {
        "Unsent sales waiting".into()
    } else {
        "All sent".into()
    };
    println!(
        "{banner} · unsent {} ({}) · oldest unsent {} · sent {} (not yet pruned)",
        counts.unsent(),
        amounts(&outbox.unsent_by_currency()?),
        age(outbox.oldest_unsent_age_ms()?),
        counts.sent
    );
    Ok(())
}

/// `possync-till list-attention --outbox FILE`.
///
/// # Errors
/// [`TillError::Outbox`].
pub fn list_attention(path: &Path) -> Result<(), TillError> {
    let outbox = open_outbox(path)?;
    let items = outbox.attention()?;
    if items.is_empty() {
        println!("no sales need attention");
    }
    for i in items {
        println!(
            "{} {} attempt {} code {} sha256 {} {}",
            i.client_tx_id,
            i.state.as_str(),
            i.attempt,
            i.code.as_deref().unwrap_or("-"),
            i.payload_sha256,
            i.message.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

/// A sync config with the demo's short timeouts.
pub fn sync_config(url: &str, token: &str, device: &str) -> SyncConfig {
    let mut c = SyncConfig::new(url, token, device);
    c.connect_timeout_ms = 1_000;
    c.request_timeout_ms = 5_000;
    c.lease_ms = 10_000;
    c.heartbeat_ms = 2_000;
    c.batch_size = 20;
    c.backoff.base_ms = 100;
    c.backoff.cap_ms = 2_000;
    c
}

/// `possync-till sync-now --outbox FILE --server URL --token T --device D`.
///
/// # Errors
/// A bad URL, an unreachable server, a refused token, an unreadable outbox.
pub fn sync_now(path: &Path, server: &ServerArgs) -> Result<(), TillError> {
    let url = check_url(&server.server)?;
    let outbox = Arc::new(open_outbox_to_drain(path)?);
    // An empty outbox sends nothing, so reachability and the token are checked first.
    check_ready(&url)?;
    check_token(&url, &server.token, &server.device)?;
    let config = EngineConfig::new(sync_config(&url, &server.token, &server.device));
    let transport = Arc::new(HttpTransport::new(&config.sync));
    let engine = SyncEngine::start(outbox, transport, config, None)?;
    let report = engine.sync_now(Duration::from_secs(60))?;
    let snapshot = engine.status()?;
    engine.shutdown();
    match &report.stop {
        Some(DrainStop::AuthFailed { error }) => {
            return Err(TillError::Refused {
                url,
                device: server.device.clone(),
                status: match error {
                    TransportError::Unauthorized { .. } => 401,
                    TransportError::Forbidden { .. } => 403,
                    _ => 0,
                },
                code: error.code().to_owned(),
            });
        }
        Some(DrainStop::Offline { error }) | Some(DrainStop::TlsFailed { error }) => {
            return Err(TillError::Unreachable { url, reason: error.to_string() });
        }
        _ => {}
    }
    println!(
        "sync now ({}): sent {}, duplicate {}, conflict {}, invalid {}, retry {}, remaining {}",
        report.reasons,
        report.sent,
        report.duplicate,
        report.conflict,
        report.invalid,
        report.retry,
        report.remaining_pending
    );
    println!("{}", status_line(&snapshot));
    Ok(())
}
