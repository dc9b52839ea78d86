//! The per-device gauges of `/metrics` ([`device_gauges`]), answered within a bound.
//!
//! The gauges need a database query (the same `till_views` as the console's Tills page). Queued on
//! the push threads, a scrape would wait behind every push in hand, and monitoring would go blind in
//! exactly the storm it should show. So the query runs on a thread of its own, at most one at a
//! time; a scrape waits for it at most [`WAIT`], and past that answers with the last gauges computed
//! (while the query finishes and refreshes them for the next scrape). Gauges younger than [`FRESH`]
//! are answered without a query.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::blocking::{BlockingPool, Submit};
use crate::store::Store;

/// Gauges this young are answered as they are.
const FRESH: Duration = Duration::from_secs(1);
/// Longest a scrape waits for the query before answering with the last gauges.
const WAIT: Duration = Duration::from_millis(500);

/// The last gauges computed, and when.
type Last = Arc<Mutex<Option<(Arc<str>, Instant)>>>;

/// The last per-device gauges and the thread that refreshes them.
pub(crate) struct DeviceGauges {
    thread: BlockingPool,
    last: Last,
}

impl DeviceGauges {
    /// Starts the refreshing thread.
    pub(crate) fn start() -> std::io::Result<DeviceGauges> {
        Ok(DeviceGauges {
            thread: BlockingPool::start(1, 1, "possync-gauges")?,
            last: Arc::new(Mutex::new(None)),
        })
    }

    /// The gauges as text: fresh ones, else a new query's if it answers within [`WAIT`], else the
    /// last ones computed (`None` when there are none yet). A failed query is logged.
    pub(crate) async fn text(
        &self,
        store: Arc<dyn Store>,
        alert_after: Duration,
        cid: &str,
    ) -> Option<Arc<str>> {
        if let Some((text, at)) = &*self.last.lock() {
            if at.elapsed() < FRESH {
                return Some(text.clone());
            }
        }
        let last = self.last.clone();
        let refresh = move || {
            let gauges = device_gauges(store.as_ref(), alert_after).map(Arc::<str>::from);
            if let Ok(text) = &gauges {
                *last.lock() = Some((text.clone(), Instant::now()));
            }
            gauges
        };
        // A full queue means a refresh is already under way: the last gauges will do.
        if let Submit::Queued(rx) = self.thread.submit(refresh) {
            match tokio::time::timeout(WAIT, rx).await {
                Ok(Ok(Ok(Ok(text)))) => return Some(text),
                Ok(Ok(Ok(Err(e)))) => {
                    log::warn!(correlation_id = cid, error:% = e; "per-device metrics unavailable");
                }
                Ok(_) => log::warn!(correlation_id = cid; "per-device metrics: the query failed"),
                Err(_) => log::info!(correlation_id = cid; "per-device metrics: answering the last ones"),
            }
        }
        self.last.lock().as_ref().map(|(text, _)| text.clone())
    }

    /// Lets the refreshing thread finish and waits for it.
    pub(crate) fn join(&self) {
        self.thread.join();
    }
}

/// Escapes a Prometheus label value (backslash, double quote, newline).
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The per-device backlog gauges, computed as the console's Tills page computes them (same store
/// reads, same [`crate::console::views::till_views`]), in Prometheus text:
/// `possync_device_unsent_sales`, `possync_device_oldest_unsent_age_seconds`,
/// `possync_device_missing_sales` (lost ones included), `possync_device_lost_sales` (recorded in a
/// previous, wiped or replaced, outbox of the till), `possync_device_last_seen_age_seconds`,
/// `possync_device_sales_today` (sales that occurred today, UTC) and `possync_device_behind` (1 when
/// the console flags the till), each labelled `store_id` and `device_id`; and
/// `possync_device_unsent_minor`, the unsent amount per currency in minor units, labelled `currency`
/// too. A till that reports no backlog (an older library) has no unsent and age samples.
///
/// # Errors
/// A [`crate::store::StoreError`] from the database.
pub(crate) fn device_gauges(
    store: &dyn crate::store::Store,
    alert_after: std::time::Duration,
) -> Result<String, crate::store::StoreError> {
    use std::fmt::Write;
    let now = crate::clock::now_ms();
    let tills = store.tills(now - now.rem_euclid(86_400_000))?;
    let gaps = store.seq_gaps(None)?;
    let alert_ms = i64::try_from(alert_after.as_millis()).unwrap_or(i64::MAX);
    let views = crate::console::views::till_views(&tills, &gaps, now, alert_ms);
    let mut out = String::new();
    type Sample<'a> = &'a dyn Fn(&crate::console::views::TillView) -> Option<f64>;
    let families: [(&str, &str, Sample<'_>); 8] = [
        ("possync_device_unsent_sales", "Unsent sales in the till's outbox at its last report.", &|v| {
            v.unsent_count.map(|n| n as f64)
        }),
        (
            "possync_device_oldest_unsent_age_seconds",
            "Age of the till's oldest unsent sale now (reported age plus time since the report).",
            &|v| match v.unsent_count {
                Some(0) => Some(0.0),
                _ => v.oldest_unsent_age_ms.map(|ms| ms as f64 / 1000.0),
            },
        ),
        ("possync_device_missing_sales", "Sales the till recorded that the server never received.", &|v| {
            Some(v.missing_count as f64)
        }),
        (
            "possync_device_lost_sales",
            "Sales lost for good: recorded in a previous (wiped or replaced) outbox of the till and never \
             received, or acknowledged and lost by the server after the till pruned them.",
            &|v| Some(v.lost_count as f64),
        ),
        (
            "possync_device_resending_sales",
            "Sales acknowledged to the till and not on the server (a restored or failed-over database), \
             being sent again by the till; included in possync_device_missing_sales.",
            &|v| Some(v.resending_count as f64),
        ),
        ("possync_device_last_seen_age_seconds", "Seconds since the till's last request.", &|v| {
            v.quiet_ms.map(|ms| ms as f64 / 1000.0)
        }),
        (
            "possync_device_sales_today",
            "Sales of the till that occurred today (UTC), as on the Tills page.",
            &|v| Some(v.sales_today as f64),
        ),
        (
            "possync_device_behind",
            "1 when the console flags the till (behind, quiet or missing sales).",
            &|v| Some(if v.flagged() { 1.0 } else { 0.0 }),
        ),
    ];
    for (name, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for v in &views {
            if let Some(x) = value(v) {
                let _ = writeln!(
                    out,
                    "{name}{{store_id=\"{}\",device_id=\"{}\"}} {x}",
                    label(&v.store_id),
                    label(&v.device_id)
                );
            }
        }
    }
    let name = "possync_device_unsent_minor";
    let _ = writeln!(
        out,
        "# HELP {name} Unsent amount per currency at the till's last report, in minor units.\n# TYPE {name} gauge"
    );
    for v in &views {
        for (currency, minor) in &v.unsent_minor {
            let _ = writeln!(
                out,
                "{name}{{store_id=\"{}\",device_id=\"{}\",currency=\"{}\"}} {minor}",
                label(&v.store_id),
                label(&v.device_id),
                label(currency)
            );
        }
    }
    Ok(out)
}
