//! The per-device gauges of `/metrics`, answered within a bound.
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
            let gauges = crate::metrics::device_gauges(store.as_ref(), alert_after).map(Arc::<str>::from);
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
