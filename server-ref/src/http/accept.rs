//! Accepting connections and serving each one under its bounds.
//!
//! - The accept loop never ends on an error: out of file descriptors (EMFILE / ENFILE) or memory it
//!   closes the longest-idle connection, logs (at most once a second), waits a little and goes on.
//! - Open connections are capped ([`connection_cap`]: the configured cap, lowered to fit
//!   `RLIMIT_NOFILE`). A connection past the cap closes the longest-idle one; a connection that is
//!   answering a request is never closed for this.
//! - Per connection: hyper's header read timeout and head size limit, an idle timeout (no byte read
//!   for that long) and a write timeout (a client that does not read its answers), both on the socket.
//! - On shutdown every connection finishes the request in hand and closes; the loop waits for them.
//!   A connection idle between requests closes at once, without the linger that protects answers
//!   sent before their request was read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio_io_timeout::TimeoutStream;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::framing::{FramingWatch, Watched};
use super::routes::AmbiguousFraming;
use super::{App, HttpConfig, StopReason};

/// File descriptors kept free for the database pool, logs and the listener itself.
const FD_RESERVE: u64 = 64;

/// How long a closing connection keeps discarding what its client still sends.
const LINGER: Duration = Duration::from_secs(2);

/// How long shutdown waits for connections to finish their request in hand, past the request
/// deadline.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The open-connection cap in force: [`super::FrontLimits::max_connections`], lowered so that the
/// connections, the database pool and a reserve fit the soft `RLIMIT_NOFILE` (raised to the hard limit
/// first when allowed).
pub fn connection_cap(config: &HttpConfig) -> usize {
    let configured = config.limits.max_connections.max(1);
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else { return configured };
    let reserve = FD_RESERVE + config.workers as u64 * 2;
    let fit = usize::try_from(soft.saturating_sub(reserve)).unwrap_or(usize::MAX).max(8);
    if fit < configured {
        log::warn!(max_connections = configured, fits = fit, nofile = soft;
            "the file-descriptor limit is lower than max_connections allows; capping open connections");
    }
    configured.min(fit)
}

/// One open connection, as the cap sees it.
struct Entry {
    since: Instant,
    busy: Arc<AtomicUsize>,
    kill: Arc<Notify>,
}

/// Open connections, for the cap and for eviction.
struct Connections {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Entry>>,
}

impl Connections {
    fn register(&self) -> (u64, Arc<AtomicUsize>, Arc<Notify>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (busy, kill) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
        let entry = Entry { since: Instant::now(), busy: busy.clone(), kill: kill.clone() };
        self.open.lock().insert(id, entry);
        (id, busy, kill)
    }

    fn remove(&self, id: u64) {
        self.open.lock().remove(&id);
    }

    fn len(&self) -> usize {
        self.open.lock().len()
    }

    /// Closes the connection open longest that is not answering a request, other than `except`.
    /// Returns whether one was closed.
    fn evict_longest_idle(&self, except: Option<u64>) -> bool {
        let mut open = self.open.lock();
        let victim = open
            .iter()
            .filter(|(id, e)| Some(**id) != except && e.busy.load(Ordering::SeqCst) == 0)
            .min_by_key(|(_, e)| e.since)
            .map(|(id, _)| *id);
        match victim.and_then(|id| open.remove(&id)) {
            Some(entry) => {
                entry.kill.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Marks a connection busy while one of its requests is being answered.
struct BusyGuard(Arc<AtomicUsize>);

impl BusyGuard {
    fn enter(busy: &Arc<AtomicUsize>) -> Self {
        busy.fetch_add(1, Ordering::SeqCst);
        BusyGuard(busy.clone())
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The accept loop: runs until shutdown, then waits for open connections to finish.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    app: Arc<App>,
    max_connections: usize,
    mut stop: watch::Receiver<bool>,
) -> StopReason {
    let conns = Arc::new(Connections { next_id: AtomicU64::new(0), open: Mutex::new(HashMap::new()) });
    let tracker = TaskTracker::new();
    let mut last_warning: Option<Instant> = None;
    let reason = loop {
        let accepted = tokio::select! {
            biased;
            () = stopped(&mut stop) => break StopReason::Requested,
            accepted = listener.accept() => accepted,
        };
        let tcp = match accepted {
            Ok((tcp, _peer)) => tcp,
            Err(e) => {
                if let Some(fatal) = accept_failure(&e, &app, &conns, &mut last_warning) {
                    break fatal;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let (id, busy, kill) = conns.register();
        if conns.len() > max_connections {
            app.metrics.limit_hits.with_label_values(&["max_connections"]).inc();
            if !conns.evict_longest_idle(Some(id)) {
                // Every other connection is answering a request: this one waits for none of them.
                conns.remove(id);
                drop(tcp);
                continue;
            }
        }
        let (app, router, conns, stop) = (app.clone(), router.clone(), conns.clone(), stop.clone());
        tracker.spawn(async move {
            app.metrics.connections_open.inc();
            serve_connection(tcp, router, &app, busy, kill, stop).await;
            app.metrics.connections_open.dec();
            conns.remove(id);
        });
    };
    drop(listener);
    tracker.close();
    let grace = app.config.limits.request_deadline + SHUTDOWN_GRACE;
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        log::warn!(open = conns.len(); "connections still open at the end of the shutdown grace; closing them");
    }
    reason
}

/// Resolves once shutdown is asked for (or the server is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, never held across an await of the caller.
    let _ = stop.wait_for(|s| *s).await;
}

/// What an accept error means for the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AcceptFailure {
    /// The listening socket itself is gone: the server stops serving (and the binary exits non-zero).
    Fatal,
    /// Out of descriptors or memory: close the longest-idle connection, pause, go on.
    Exhausted,
    /// Anything else (a connection reset before it was accepted, ...): pause, go on.
    Transient,
}

fn classify_accept_error(e: &std::io::Error) -> AcceptFailure {
    match e.raw_os_error() {
        Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK) => AcceptFailure::Fatal,
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS) => AcceptFailure::Exhausted,
        _ => AcceptFailure::Transient,
    }
}

/// Handles an accept error: `None` to go on (after a pause), `Some` when the listener itself is gone.
fn accept_failure(
    e: &std::io::Error,
    app: &App,
    conns: &Connections,
    last_warning: &mut Option<Instant>,
) -> Option<StopReason> {
    match classify_accept_error(e) {
        AcceptFailure::Fatal => return Some(StopReason::Failed(format!("the listening socket failed: {e}"))),
        AcceptFailure::Exhausted => {
            conns.evict_longest_idle(None);
        }
        AcceptFailure::Transient => {}
    }
    app.metrics.limit_hits.with_label_values(&["accept_error"]).inc();
    if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
        *last_warning = Some(Instant::now());
        log::warn!(error:% = e, open = conns.len(); "accepting a connection failed; going on");
    }
    None
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    router: Router,
    app: &App,
    busy: Arc<AtomicUsize>,
    kill: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let limits = app.config.limits;
    let mut io = TimeoutStream::new(tcp);
    io.set_read_timeout(Some(limits.idle_timeout));
    io.set_write_timeout(Some(limits.write_timeout));
    // The longest head hyper reads, and so the longest the framing watch follows.
    let max_head = limits.max_header_bytes.max(8 * 1024);
    let framing = Arc::new(Mutex::new(FramingWatch::new(max_head)));
    let io = TokioIo::new(Watched::new(Box::pin(io), framing.clone()));
    let requests = AtomicU64::new(0);
    let in_hand = busy.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let guard = BusyGuard::enter(&busy);
        let router = router.clone();
        let index = requests.fetch_add(1, Ordering::Relaxed);
        if framing.lock().was_ambiguous(index) {
            req.extensions_mut().insert(AmbiguousFraming);
        }
        Box::pin(async move {
            let response = router.oneshot(req).await;
            drop(guard);
            response
        })
    });
    let mut conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(max_head)
        .keep_alive(true)
        .serve_connection(io, service);
    // `linger` after the connection's end, unless the server stopped while it sat idle between
    // requests: no answer can then be lost to a reset, and a client that keeps its idle connection
    // open would hold the shutdown for the whole linger.
    let (result, lingering) = tokio::select! {
        result = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => (result, LINGER),
        _ = kill.notified() => return,
        () = stopped(&mut stop) => {
            let idle = in_hand.load(Ordering::SeqCst) == 0;
            std::pin::Pin::new(&mut conn).graceful_shutdown();
            let grace = limits.request_deadline + SHUTDOWN_GRACE;
            match tokio::time::timeout(grace, std::future::poll_fn(|cx| conn.poll_without_shutdown(cx))).await {
                Ok(result) => (result, if idle { Duration::ZERO } else { LINGER }),
                Err(_) => return,
            }
        }
    };
    match result {
        Ok(()) => linger(conn.into_parts().io.into_inner().into_inner(), lingering).await,
        Err(e) => {
            let limit = classify(&e);
            app.metrics.limit_hits.with_label_values(&[limit]).inc();
            log::debug!(error:% = e, limit = limit; "connection closed on an error");
        }
    }
}

/// Closes a connection the way HTTP servers must when a request may have left bytes unread (an
/// answer sent before its body was read, e.g. 413 or 401): send FIN, then read and discard what the
/// client still sends for a short while, so that the kernel does not answer those bytes with a reset
/// that destroys the answer before the client reads it. Bounded by `how_long` (zero: the FIN only);
/// nothing read is parsed.
async fn linger(mut stream: std::pin::Pin<Box<TimeoutStream<tokio::net::TcpStream>>>, how_long: Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut buf = [0u8; 16 * 1024];
    let _ = tokio::time::timeout(how_long, async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// The metric label of a connection's end on an error.
fn classify(e: &hyper::Error) -> &'static str {
    if e.is_timeout() {
        return "header_timeout";
    }
    if e.is_parse_too_large() {
        return "header_too_large";
    }
    if e.is_parse() {
        return "malformed_request";
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return "idle_or_write_timeout";
            }
        }
        source = s.source();
    }
    "connection_error"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_dead_listener_stops_the_accept_loop() {
        let os = std::io::Error::from_raw_os_error;
        assert_eq!(classify_accept_error(&os(libc::EBADF)), AcceptFailure::Fatal);
        assert_eq!(classify_accept_error(&os(libc::EMFILE)), AcceptFailure::Exhausted);
        assert_eq!(classify_accept_error(&os(libc::ENFILE)), AcceptFailure::Exhausted);
        assert_eq!(classify_accept_error(&os(libc::ECONNABORTED)), AcceptFailure::Transient);
        assert_eq!(classify_accept_error(&os(libc::EAGAIN)), AcceptFailure::Transient);
    }

    #[test]
    fn eviction_spares_connections_answering_a_request() {
        let conns = Connections { next_id: AtomicU64::new(0), open: Mutex::new(HashMap::new()) };
        let (old, old_busy, old_kill) = conns.register();
        let (idle, _, _) = conns.register();
        let (new, _, _) = conns.register();
        old_busy.fetch_add(1, Ordering::SeqCst);
        assert!(conns.evict_longest_idle(Some(new)), "the idle one goes");
        let open: Vec<u64> = conns.open.lock().keys().copied().collect();
        assert!(open.contains(&old) && open.contains(&new) && !open.contains(&idle), "{open:?}");
        assert!(!conns.evict_longest_idle(Some(new)), "the busy one stays");
        drop(old_kill);
    }
}
