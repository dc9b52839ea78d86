//! What the console's pages show, computed once for the page and for `/metrics` (so a Prometheus user
//! sees the same numbers), and the askama templates that render it (HTML-escaped by default).

use askama::Template;

use super::diff::DiffRow;
use crate::store::{GapKind, SeqGap, TillStatus};

/// Zero-decimal ISO 4217 currencies (their minor unit is the unit).
const ZERO_DECIMAL: [&str; 8] = ["JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XAF", "XOF"];

/// `minor` units of `currency` as text: `12.34 EUR`, `1166 JPY`.
pub fn money(minor: i64, currency: &str) -> String {
    if ZERO_DECIMAL.contains(&currency) {
        return format!("{minor} {currency}");
    }
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", abs / 100, abs % 100)
}

/// A duration in milliseconds as `45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`.
pub fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Unix milliseconds as `2026-11-29 14:05 UTC`.
pub fn utc(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => ms.to_string(),
    }
}

/// One till on the Tills page and in `/metrics`.
#[derive(Debug, Clone)]
pub struct TillView {
    /// Store of the device.
    pub store_id: String,
    /// The device.
    pub device_id: String,
    /// Its token's label.
    pub label: String,
    /// Whether it has a live token.
    pub token_active: bool,
    /// `12 min ago (2026-11-29 14:05 UTC)`, or `never`.
    pub last_seen: String,
    /// Same for the last push with sales.
    pub last_push: String,
    /// Reported unsent sales (`None`: the till reports no backlog, an older library).
    pub unsent_count: Option<i64>,
    /// Age of the oldest unsent sale now: the reported age plus the time since the report (a till
    /// that went quiet keeps ageing).
    pub oldest_unsent_age_ms: Option<i64>,
    /// Unsent amounts, `12.34 EUR, 500 JPY`.
    pub unsent_amounts: String,
    /// The same amounts per currency, in minor units (for `/metrics`).
    pub unsent_minor: Vec<(String, i64)>,
    /// Library version reported.
    pub library_version: String,
    /// Sales that occurred today (UTC).
    pub sales_today: i64,
    /// Time since the device was last seen.
    pub quiet_ms: Option<i64>,
    /// Its oldest unsent sale is older than the threshold.
    pub behind: bool,
    /// Not seen for longer than the threshold.
    pub quiet: bool,
    /// Runs of sequence numbers never received between received ones, and runs lost for good (an
    /// earlier, wiped or replaced outbox never delivered them, or the server lost acknowledged sales
    /// the till no longer keeps), as sentences.
    pub missing: Vec<String>,
    /// Runs acknowledged to the till and not on the server (a restored or failed-over database), which
    /// the till is sending again, as sentences.
    pub resending: Vec<String>,
    /// How far back the till keeps its sales (the recovery window), as text; empty when not reported.
    pub kept: String,
    /// Runs past the last received one, still in the till's outbox at its last report.
    pub pending: Vec<String>,
    /// Sales recorded on the till and never received (between received ones, being re-sent, and lost
    /// for good).
    pub missing_count: i64,
    /// Of those, the sales acknowledged to the till and not on the server, being re-sent.
    pub resending_count: i64,
    /// Of those, the sales lost for good: recorded in an earlier outbox of the till, wiped or replaced
    /// before it delivered them, or acknowledged and lost by the server after the till pruned them
    /// (kept on the page for good).
    pub lost_count: i64,
}

impl TillView {
    /// Whether this till needs a look.
    pub fn flagged(&self) -> bool {
        self.behind || self.quiet || self.missing_count > 0
    }

    /// Age of the oldest unsent sale as text, or `—`.
    pub fn oldest_text(&self) -> String {
        match (self.unsent_count, self.oldest_unsent_age_ms) {
            (Some(0), _) => "—".into(),
            (_, Some(ms)) => age(ms),
            _ => "—".into(),
        }
    }

    /// The unsent count as text (`not reported` for older tills).
    pub fn unsent_text(&self) -> String {
        self.unsent_count.map(|n| n.to_string()).unwrap_or_else(|| "not reported".into())
    }
}

fn when(ms: Option<i64>, now_ms: i64) -> String {
    match ms {
        Some(t) => format!("{} ago ({})", age(now_ms - t), utc(t)),
        None => "never".into(),
    }
}

/// The page's view of every till, flags computed with `alert_after_ms`.
pub fn till_views(tills: &[TillStatus], gaps: &[SeqGap], now_ms: i64, alert_after_ms: i64) -> Vec<TillView> {
    tills
        .iter()
        .map(|t| {
            let r = &t.report;
            let since_report = t.reported_at_ms.map(|at| (now_ms - at).max(0)).unwrap_or(0);
            let oldest = match (r.unsent_count, r.oldest_unsent_age_ms) {
                (Some(n), Some(age)) if n > 0 => Some(age + since_report),
                _ => None,
            };
            let unsent_minor: Vec<(String, i64)> = r
                .unsent_minor
                .as_deref()
                .and_then(|j| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(j).ok())
                .map(|m| m.iter().filter_map(|(c, v)| v.as_i64().map(|n| (c.clone(), n))).collect())
                .unwrap_or_default();
            let amounts: Vec<String> = unsent_minor.iter().map(|(c, n)| money(*n, c)).collect();
            let mine: Vec<&SeqGap> =
                gaps.iter().filter(|g| g.store_id == t.store_id && g.device_id == t.device_id).collect();
            let sentence = |g: &&SeqGap| {
                let range = if g.from == g.to {
                    format!("sale {}", g.from)
                } else {
                    format!("sales {}–{}", g.from, g.to)
                };
                gap_sentence(g, &range)
            };
            let of = |kinds: &'static [GapKind]| mine.iter().filter(move |g| kinds.contains(&g.kind));
            let missing = of(&[GapKind::NeverReceived, GapKind::Lost]).map(sentence).collect();
            let resending = of(&[GapKind::Resending]).map(sentence).collect();
            let pending = of(&[GapKind::Unsent]).map(sentence).collect();
            let missing_count = mine.iter().filter(|g| g.is_missing()).map(|g| g.len()).sum();
            let resending_count = of(&[GapKind::Resending]).map(|g| g.len()).sum();
            let lost_count = of(&[GapKind::Lost]).map(|g| g.len()).sum();
            let kept = match (r.kept_since_ms, r.kept_seq) {
                (Some(since), Some(seq)) => format!("back to {} (from sale {seq})", utc(since)),
                _ => String::new(),
            };
            let quiet_ms = t.last_seen_ms.map(|s| (now_ms - s).max(0));
            TillView {
                store_id: t.store_id.clone(),
                device_id: t.device_id.clone(),
                label: t.label.clone().unwrap_or_default(),
                token_active: t.token_active,
                last_seen: when(t.last_seen_ms, now_ms),
                last_push: when(t.last_push_ms, now_ms),
                unsent_count: r.unsent_count,
                oldest_unsent_age_ms: oldest,
                unsent_amounts: amounts.join(", "),
                unsent_minor,
                library_version: r.library_version.clone().unwrap_or_default(),
                sales_today: t.sales_today,
                quiet_ms,
                behind: oldest.is_some_and(|a| a > alert_after_ms),
                quiet: t.token_active && quiet_ms.is_some_and(|q| q > alert_after_ms),
                missing,
                resending,
                kept,
                pending,
                missing_count,
                resending_count,
                lost_count,
            }
        })
        .collect()
}

/// A run of missing sequence numbers (`range`: `sale 7` or `sales 3–5`) as the Tills page and the
/// `gaps` command say it: `sales 3–5 recorded on till-1, never received`, with ` in its previous
/// outbox` for a run of a wiped or replaced outbox and ` (still in its outbox at its last report)` for
/// a run past the last received sale; `sales 41–80 acknowledged to till-2 and not on the server; being
/// re-sent` for a run the server lost and the till sends again, and `...; no longer kept on the till:
/// lost for good` for one the till had pruned.
pub fn gap_sentence(g: &SeqGap, range: &str) -> String {
    let device = &g.device_id;
    match (g.kind, &g.previous_outbox) {
        (GapKind::Resending, _) => format!("{range} acknowledged to {device} and not on the server; being re-sent"),
        (GapKind::Lost, None) => format!(
            "{range} acknowledged to {device} and not on the server; no longer kept on the till: lost for good"
        ),
        _ => {
            let outbox = if g.previous_outbox.is_some() { " in its previous outbox" } else { "" };
            let tail = if g.after_last_received { " (still in its outbox at its last report)" } else { "" };
            format!("{range} recorded on {device}{outbox}, never received{tail}")
        }
    }
}

/// What every page's header needs.
#[derive(Debug, Clone)]
pub struct Nav {
    /// The admin logged in.
    pub admin: String,
    /// The session's CSRF token (for the logout form).
    pub csrf: String,
    /// Which page is shown (`tills`, `attention`, `sales`).
    pub page: &'static str,
}

/// The login page.
#[derive(Template)]
#[template(path = "console/login.html")]
pub struct LoginPage {
    /// The login form's CSRF token.
    pub csrf: String,
    /// Why the last try failed.
    pub error: Option<String>,
}

/// An error page (401, 403, 404, 400) with its machine-readable code.
#[derive(Template)]
#[template(path = "console/error.html")]
pub struct ErrorPage {
    /// HTTP status.
    pub status: u16,
    /// Machine-readable code.
    pub code: String,
    /// What happened and what to do.
    pub message: String,
}

/// The Tills page.
#[derive(Template)]
#[template(path = "console/tills.html")]
pub struct TillsPage {
    /// Header.
    pub nav: Nav,
    /// Every till.
    pub tills: Vec<TillView>,
    /// Unsettled attention items.
    pub attention: usize,
    /// The threshold, as text.
    pub threshold: String,
    /// A token just created, shown once: (store, device, token).
    pub new_token: Option<(String, String, String)>,
    /// When the page was made.
    pub now: String,
}

impl TillsPage {
    /// Tills that need a look.
    pub fn flagged(&self) -> usize {
        self.tills.iter().filter(|t| t.flagged()).count()
    }

    /// Sales the tills reported still holding (unsent), whatever their age: while any remain, not
    /// every till's money is on the server yet.
    pub fn unsent_on_tills(&self) -> i64 {
        self.tills.iter().filter_map(|t| t.unsent_count).filter(|n| *n > 0).sum()
    }

    /// Tills holding unsent sales.
    pub fn tills_with_unsent(&self) -> usize {
        self.tills.iter().filter(|t| t.unsent_count.is_some_and(|n| n > 0)).count()
    }
}

/// One attention item on its page.
#[derive(Debug, Clone)]
pub struct AttentionView {
    /// Audit row id.
    pub audit_id: i64,
    /// When it was decided.
    pub at: String,
    /// Store.
    pub store_id: String,
    /// Pushing device.
    pub device_id: String,
    /// Sale id.
    pub client_tx_id: String,
    /// `CONFLICT` or `INVALID`.
    pub outcome: String,
    /// Code.
    pub code: String,
    /// Message.
    pub message: String,
    /// Outbox sequence number, if sent.
    pub outbox_seq: String,
    /// Side-by-side rows.
    pub rows: Vec<DiffRow>,
    /// `settled by X at T: note`, if settled.
    pub settled: Option<String>,
}

/// The Needs attention page.
#[derive(Template)]
#[template(path = "console/attention.html")]
pub struct AttentionPage {
    /// Header.
    pub nav: Nav,
    /// The items.
    pub items: Vec<AttentionView>,
    /// Settled items are shown too.
    pub include_settled: bool,
    /// The store filter (empty: all).
    pub store: String,
}

/// One sale on the Sales page.
#[derive(Debug, Clone)]
pub struct SaleView {
    /// Store.
    pub store_id: String,
    /// Sale id.
    pub client_tx_id: String,
    /// Server id.
    pub server_tx_id: i64,
    /// Device.
    pub device_id: String,
    /// Outbox sequence number.
    pub outbox_seq: String,
    /// Receipt number.
    pub receipt_number: String,
    /// `sale` or `refund`.
    pub kind: String,
    /// When it occurred.
    pub occurred: String,
    /// When the server stored it.
    pub received: String,
    /// Total as money.
    pub total: String,
    /// Cashier.
    pub cashier: String,
    /// Items: (line, sku, name, quantity, unit price, discount, line total).
    pub items: Vec<[String; 7]>,
    /// Payments: (method, amount, reference).
    pub payments: Vec<[String; 3]>,
}

/// The Sales page.
#[derive(Template)]
#[template(path = "console/sales.html")]
pub struct SalesPage {
    /// Header.
    pub nav: Nav,
    /// Store searched.
    pub store: String,
    /// Id searched.
    pub client_tx_id: String,
    /// Day searched (YYYY-MM-DD, UTC).
    pub day: String,
    /// Whether a search was made.
    pub searched: bool,
    /// Results.
    pub sales: Vec<SaleView>,
    /// Most results shown.
    pub limit: u32,
}
