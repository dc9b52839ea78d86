//! The server the demo's tills talk to, and its lifecycle: an in-process server on the embedded
//! SQLite store or on PostgreSQL (stopped and restarted on the same port for the offline period),
//! or a real server elsewhere (checked, never stopped).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use possync_server::http::{self, HttpConfig, RunningServer};
use possync_server::store::postgres::{PgOptions, PgStore};
use possync_server::store::sqlite::{SqliteOptions, SqliteStore};
use possync_server::store::Store;

use super::DemoArgs;
use crate::inspect;
use crate::TillError;

/// The server the tills talk to.
pub(super) enum Backend {
    /// In this process, on a store we can read for the final check.
    InProcess { store: Arc<dyn Store>, server: Option<Box<RunningServer>>, addr: SocketAddr, kind: String },
    /// Somewhere else.
    Remote { url: String },
}

impl Backend {
    /// The base URL the tills send to.
    pub(super) fn url(&self) -> String {
        match self {
            Backend::InProcess { addr, .. } => format!("http://{addr}"),
            Backend::Remote { url } => url.clone(),
        }
    }

    /// Starts an in-process server on `store` at a free local port; `kind` names the store.
    pub(super) fn start_in_process(store: Arc<dyn Store>, kind: String) -> Result<Backend, TillError> {
        let config = http_config("127.0.0.1:0".parse().map_err(|e| TillError::Demo(format!("{e}")))?);
        let server = http::start(store.clone(), config).map_err(|e| TillError::Demo(e.to_string()))?;
        let addr = server.local_addr();
        Ok(Backend::InProcess { store, server: Some(Box::new(server)), addr, kind })
    }

    /// Stops the in-process server: connections are refused until [`Backend::restart`].
    pub(super) fn stop(&mut self) {
        if let Backend::InProcess { server, addr, .. } = self {
            if let Some(s) = server.take() {
                s.shutdown();
                // The listener is closed when shutdown returns; knock until the port refuses, so the
                // tills see "connection refused" at once, as with a stopped server.
                let deadline = Instant::now() + Duration::from_secs(2);
                while Instant::now() < deadline
                    && std::net::TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok()
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// Starts the in-process server again on the same port.
    pub(super) fn restart(&mut self) -> Result<(), TillError> {
        if let Backend::InProcess { store, server, addr, .. } = self {
            let mut last = String::new();
            for _ in 0..50 {
                match http::start(store.clone(), http_config(*addr)) {
                    Ok(s) => {
                        *server = Some(Box::new(s));
                        return Ok(());
                    }
                    Err(e) => last = e.to_string(),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            return Err(TillError::Demo(format!("cannot restart the server on {addr}: {last}")));
        }
        Ok(())
    }
}

/// The in-process server's settings, listening on `listen`.
fn http_config(listen: SocketAddr) -> HttpConfig {
    // A three-till shop: admission control never sheds them (the storm benchmark shows it shedding).
    let limits = possync_server::http::FrontLimits { max_inflight_sales: 1_000, ..Default::default() };
    HttpConfig { listen, workers: 4, limits, ..HttpConfig::default() }
}

/// The backend `args` ask for: a real server (`--server`, checked for readiness and the token), an
/// in-process one on PostgreSQL (`--postgres`), or one on a fresh SQLite file in `dir`.
pub(super) fn open_backend(args: &DemoArgs, dir: &Path) -> Result<Backend, TillError> {
    if let Some(server) = &args.server {
        let url = inspect::check_url(server)?;
        inspect::check_ready(&url)?;
        inspect::check_token(&url, args.token.as_deref().unwrap_or_default(), &args.device)?;
        return Ok(Backend::Remote { url });
    }
    if let Some(pg) = &args.postgres {
        let config: postgres::Config =
            pg.parse().map_err(|e| TillError::Demo(format!("invalid --postgres URL: {e}")))?;
        let store = PgStore::connect(config, &PgOptions { pool_size: 4, ..PgOptions::default() })?;
        store.migrate()?;
        return Backend::start_in_process(Arc::new(store), "PostgreSQL".into());
    }
    let path = dir.join("shop.db");
    let store = SqliteStore::open(&path, true, &SqliteOptions::default())?;
    store.migrate()?;
    Backend::start_in_process(Arc::new(store), format!("SQLite ({})", path.display()))
}
