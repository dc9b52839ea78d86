//! The one object apps hold: [`PossyncEngine`], an outbox and its sync engine. Every method is a
//! delegate to `possync-core` plus error mapping.
//!
//! Thread-safe: call it from any thread. `sync_now` blocks the calling thread (up to its timeout): call
//! it off the UI thread. Listener callbacks arrive on the engine's `possync-status` thread.

use std::sync::Arc;

use possync_core::backoff::BackoffPolicy;
use possync_core::config::{DeviceToken, OutboxConfig, SyncConfig, TlsOptions};
use possync_core::engine::{EngineConfig, SyncEngine};
use possync_core::outbox::Outbox;
use possync_core::platform_http::PlatformTransport;
#[cfg(feature = "builtin-http")]
use possync_core::transport::HttpTransport;
use possync_core::transport::Transport;
use possync_core::ConfigError as CoreConfigError;

use crate::error::{ConfigError, OpenError, SaleError, StorageError, SyncError};
use crate::http::{HttpClient, HttpClientBridge};
use crate::listener::{ListenerBridge, StatusListener};
use crate::types::{
    int, millis, non_negative, page_size, AttentionItem, Counts, DrainReason, DrainReport, Durability,
    Enqueued, Resolution, SalePayload, SaleRecord, StatusSnapshot,
};

/// How a till opens its outbox and reaches its server. Times in ms; defaults as in docs/client.md.
/// The device token is not part of it (records print every field in `toString()`/`description`): it is
/// a separate argument of the engine's constructor and of `set_token`.
#[derive(Debug, Clone, uniffi::Record)]
pub struct PossyncConfig {
    /// Path of the outbox SQLite file, in the app's private storage (Android: `filesDir`, iOS:
    /// Application Support). Created when missing; its folder must exist.
    pub outbox_path: String,
    /// Base URL of the shop's server, e.g. `https://pos.example.com`.
    pub server_url: String,
    /// This till's device id, as registered with the token.
    pub device_id: String,
    /// Period of the engine's own `Interval` trigger, in ms (paused while offline).
    #[uniffi(default = 60000)]
    pub interval_ms: i64,
    /// TCP connect timeout, in ms.
    #[uniffi(default = 5000)]
    pub connect_timeout_ms: i64,
    /// Whole-request timeout, in ms (at least `connect_timeout_ms`).
    #[uniffi(default = 30000)]
    pub request_timeout_ms: i64,
    /// Lease length of sales being sent, in ms (at least `request_timeout_ms` + 5000).
    #[uniffi(default = 60000)]
    pub lease_ms: i64,
    /// Lease heartbeat while a request is in flight, in ms (at most `lease_ms` / 3).
    #[uniffi(default = 10000)]
    pub heartbeat_ms: i64,
    /// Sales per request, 1..=500.
    #[uniffi(default = 50)]
    pub batch_size: i64,
    /// First per-sale retry ceiling, in ms.
    #[uniffi(default = 1000)]
    pub retry_backoff_base_ms: i64,
    /// Largest per-sale retry ceiling, in ms.
    #[uniffi(default = 300000)]
    pub retry_backoff_cap_ms: i64,
    /// First whole-engine backoff ceiling after a failed request, in ms.
    #[uniffi(default = 2000)]
    pub offline_backoff_base_ms: i64,
    /// Largest whole-engine backoff ceiling, in ms.
    #[uniffi(default = 300000)]
    pub offline_backoff_cap_ms: i64,
    /// How long a write waits for another process's lock on the outbox, in ms.
    #[uniffi(default = 5000)]
    pub busy_timeout_ms: i64,
    /// Upper bound of the outbox file, in bytes (`null`/`None`: only the disk).
    #[uniffi(default = None)]
    pub max_size_bytes: Option<i64>,
    /// Flush policy of the outbox (`null`/`None`: `Full`, a sale survives a power cut).
    #[uniffi(default = None)]
    pub durability: Option<Durability>,
    /// Sent sales older than this are deleted, in ms (default 7 days); unsent sales and sales needing
    /// attention never are. The engine prunes after a run that sent sales, at most hourly.
    #[uniffi(default = 604800000)]
    pub sent_retention_ms: i64,
    /// Extra CA certificates (PEM) trusted besides the public roots, e.g. the shop's own CA.
    #[uniffi(default = [])]
    pub tls_extra_ca_pem: Vec<String>,
    /// SPKI SHA-256 pins (base64, as Android's `<pin digest="SHA-256">`): when any are given, the
    /// server's certificate or an intermediate it sends must carry one of these keys (on top of the
    /// usual chain check).
    #[uniffi(default = [])]
    pub tls_spki_sha256_pins: Vec<String>,
    /// Upper bound of the random wait before the run an `Online` trigger asks for, and before the
    /// first run after opening, in ms (0: none), so that a shop's tills coming back together spread
    /// out. `Manual` and `sync_now` do not wait.
    #[uniffi(default = 5000)]
    pub online_jitter_ms: i64,
    /// Failed requests in a row (connect, timeout, cut, 5xx, 429/503) after which a run stops and the
    /// engine backs off; at least 1. A run goes on past fewer, and any answer resets the count.
    #[uniffi(default = 3)]
    pub failures_before_backoff: i64,
    /// This engine is the outbox's only user (true: one app process per outbox file, the usual case):
    /// at opening it takes back, and sends at once, the sales an earlier life of the app left in
    /// flight (a crash or a kill). Set false when several processes drain one outbox file; each then
    /// waits out the others' leases.
    #[uniffi(default = true)]
    pub sole_user: bool,
}

impl PossyncConfig {
    /// The core's outbox settings (field for field; a negative value is a config error).
    fn outbox_config(&self) -> Result<OutboxConfig, CoreConfigError> {
        let defaults = OutboxConfig::default();
        Ok(OutboxConfig {
            busy_timeout_ms: non_negative("busy_timeout_ms", self.busy_timeout_ms)?,
            max_size_bytes: self.max_size_bytes.map(|v| non_negative("max_size_bytes", v)).transpose()?,
            durability: self.durability.unwrap_or(defaults.durability),
            sent_retention_ms: non_negative("sent_retention_ms", self.sent_retention_ms)?,
            ..defaults
        })
    }

    /// The core's engine settings (field for field; a negative value is a config error).
    fn engine_config(&self, token: String) -> Result<EngineConfig, CoreConfigError> {
        let mut sync = SyncConfig::new(&self.server_url, token, &self.device_id);
        sync.connect_timeout_ms = non_negative("connect_timeout_ms", self.connect_timeout_ms)?;
        sync.request_timeout_ms = non_negative("request_timeout_ms", self.request_timeout_ms)?;
        sync.lease_ms = non_negative("lease_ms", self.lease_ms)?;
        sync.heartbeat_ms = non_negative("heartbeat_ms", self.heartbeat_ms)?;
        sync.batch_size = usize::try_from(non_negative("batch_size", self.batch_size)?).unwrap_or(usize::MAX);
        sync.backoff = BackoffPolicy {
            base_ms: non_negative("retry_backoff_base_ms", self.retry_backoff_base_ms)?,
            cap_ms: non_negative("retry_backoff_cap_ms", self.retry_backoff_cap_ms)?,
        };
        sync.link.failures_before_backoff =
            u32::try_from(non_negative("failures_before_backoff", self.failures_before_backoff)?)
                .unwrap_or(u32::MAX);
        sync.tls = TlsOptions {
            extra_ca_pem: self.tls_extra_ca_pem.clone(),
            spki_sha256_pins: self.tls_spki_sha256_pins.clone(),
        };
        let mut engine = EngineConfig::new(sync);
        engine.interval_ms = non_negative("interval_ms", self.interval_ms)?;
        engine.offline_backoff = BackoffPolicy {
            base_ms: non_negative("offline_backoff_base_ms", self.offline_backoff_base_ms)?,
            cap_ms: non_negative("offline_backoff_cap_ms", self.offline_backoff_cap_ms)?,
        };
        engine.online_jitter_ms = non_negative("online_jitter_ms", self.online_jitter_ms)?;
        engine.sole_user = self.sole_user;
        Ok(engine)
    }
}

/// A till's outbox and its sync engine. Open one per outbox file and keep it for the app's life;
/// `shutdown()` or `close()` (dropping it) stop the engine and return at once, `await_shutdown` waits;
/// unsent sales stay in the outbox.
#[derive(uniffi::Object)]
pub struct PossyncEngine {
    engine: SyncEngine,
    transport: Link,
}

/// The engine's transport, kept for `set_token`: the built-in HTTP client or the app's.
#[derive(Debug, Clone)]
enum Link {
    #[cfg(feature = "builtin-http")]
    Builtin(Arc<HttpTransport>),
    App(Arc<PlatformTransport>),
}

impl Link {
    fn transport(&self) -> Arc<dyn Transport> {
        match self {
            #[cfg(feature = "builtin-http")]
            Link::Builtin(t) => t.clone(),
            Link::App(t) => t.clone(),
        }
    }

    fn set_token(&self, token: &DeviceToken) -> Result<(), CoreConfigError> {
        match self {
            #[cfg(feature = "builtin-http")]
            Link::Builtin(t) => t.set_token(token),
            Link::App(t) => t.set_token(token),
        }
    }
}

impl std::fmt::Debug for PossyncEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PossyncEngine").field("transport", &self.transport).finish_non_exhaustive()
    }
}

impl PossyncEngine {
    /// Checks the config, makes the transport, then opens the outbox and starts the engine (nothing
    /// is opened when the config or the transport is refused).
    fn open(
        config: PossyncConfig,
        token: String,
        listener: Option<Arc<dyn StatusListener>>,
        link: impl FnOnce(&SyncConfig) -> Result<Link, OpenError>,
    ) -> Result<Arc<Self>, OpenError> {
        let outbox_config = config.outbox_config().map_err(OpenError::from)?;
        let engine_config = config.engine_config(token).map_err(OpenError::from)?;
        let transport = link(&engine_config.sync)?;
        let outbox = Outbox::open(&config.outbox_path, outbox_config).map_err(OpenError::from)?;
        let listener = listener.map(|l| Arc::new(ListenerBridge(l)) as _);
        let engine = SyncEngine::start(Arc::new(outbox), transport.transport(), engine_config, listener)
            .map_err(OpenError::from)?;
        Ok(Arc::new(PossyncEngine { engine, transport }))
    }
}

#[uniffi::export]
impl PossyncEngine {
    /// Opens (or creates) the outbox and starts the engine with a `Startup` run. `token` is the device
    /// token (`pst_...`) from `possync-server token create`; it is kept out of every record, log and
    /// error. `listener`, if any, gets every status change and run report on the engine's
    /// `possync-status` thread.
    ///
    /// Requests go through the library's built-in HTTP client (with `config`'s TLS options). A library
    /// built without it (the slim mobile build) refuses this constructor: use `with_http_client`.
    ///
    /// # Errors
    /// [`OpenError`]: an invalid config or token, or an outbox that cannot be opened (left untouched).
    #[uniffi::constructor]
    pub fn new(
        config: PossyncConfig,
        token: String,
        listener: Option<Arc<dyn StatusListener>>,
    ) -> Result<Arc<Self>, OpenError> {
        #[cfg(feature = "builtin-http")]
        let link = |sync: &SyncConfig| Ok(Link::Builtin(Arc::new(HttpTransport::new(sync))));
        #[cfg(not(feature = "builtin-http"))]
        let link = |_: &SyncConfig| {
            Err(OpenError::InvalidConfig {
                reason: "this build of possync has no built-in HTTP client: open the engine with \
                         with_http_client and the app's own HTTP client"
                    .into(),
            })
        };
        Self::open(config, token, listener, link)
    }

    /// As `new`, but every request goes through the app's own HTTP stack (`http_client`: OkHttp or
    /// `HttpURLConnection` on Android, `URLSession` on iOS), so the platform's trust store, network
    /// security config, proxies and pinning apply. `config.tls` must then be empty: set up the shop's
    /// CA or pins in that stack.
    ///
    /// # Errors
    /// [`OpenError`], as `new`; `InvalidConfig` when `config.tls` is set.
    #[uniffi::constructor]
    pub fn with_http_client(
        config: PossyncConfig,
        token: String,
        http_client: Arc<dyn HttpClient>,
        listener: Option<Arc<dyn StatusListener>>,
    ) -> Result<Arc<Self>, OpenError> {
        Self::open(config, token, listener, |sync| {
            let transport = PlatformTransport::new(sync, Arc::new(HttpClientBridge(http_client)))?;
            Ok(Link::App(Arc::new(transport)))
        })
    }

    /// Replaces the device token (after `possync-server token create` issued a new one) without
    /// reopening the engine; the next request uses it. After an `AuthFailed` status, call
    /// `trigger(MANUAL)` or `sync_now` to send at once.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a token that cannot be sent (empty, spaces, non-ASCII); the old
    /// token stays in use.
    pub fn set_token(&self, token: String) -> Result<(), ConfigError> {
        self.transport.set_token(&DeviceToken::new(token)).map_err(Into::into)
    }

    /// Records a sale durably (it survives a crash once this returns) and returns its new
    /// `client_tx_id` (UUID v7). The engine starts sending it at once by itself (a `SaleRecorded`
    /// run), unless it is backing off from a down link; no trigger is needed after a sale.
    ///
    /// # Errors
    /// [`SaleError`]; nothing was stored.
    pub fn enqueue(&self, sale: SalePayload) -> Result<String, SaleError> {
        self.engine.outbox().enqueue(&sale).map_err(Into::into)
    }

    /// Records a sale under the app's own id. The same sale under the same id again is a no-op
    /// (`created == false`), so an app may retry after a crash without doubling the sale.
    ///
    /// # Errors
    /// [`SaleError::IdConflict`] when the id holds another sale; other [`SaleError`]s; nothing was stored.
    pub fn enqueue_with_id(&self, client_tx_id: String, sale: SalePayload) -> Result<Enqueued, SaleError> {
        self.engine.outbox().enqueue_with_id(&client_tx_id, &sale).map_err(Into::into)
    }

    /// Asks for a drain run and returns at once; triggers coalesce (a burst gives at most two runs).
    pub fn trigger(&self, reason: DrainReason) {
        self.engine.trigger(reason);
    }

    /// "Sync now": waits up to `timeout_ms` for a run that starts after this call (so it covers every
    /// sale recorded before) and returns its report. Blocks: call it off the UI thread.
    ///
    /// # Errors
    /// [`SyncError::Timeout`] (the run goes on), [`SyncError::ShutDown`], [`SyncError::DrainFailed`].
    pub fn sync_now(&self, timeout_ms: i64) -> Result<DrainReport, SyncError> {
        self.engine.sync_now(millis(timeout_ms)).map(DrainReport::from).map_err(Into::into)
    }

    /// The status, counts, unsent amounts per currency, oldest unsent age and last report.
    ///
    /// # Errors
    /// [`StorageError`] when the outbox cannot be read.
    pub fn status(&self) -> Result<StatusSnapshot, StorageError> {
        self.engine.status().map(StatusSnapshot::from).map_err(Into::into)
    }

    /// Sales in the outbox by state.
    ///
    /// # Errors
    /// [`StorageError`] when the outbox cannot be read.
    pub fn counts(&self) -> Result<Counts, StorageError> {
        self.engine.outbox().counts().map(Counts::from).map_err(Into::into)
    }

    /// Sales refused for good (`Conflict`, `Invalid`) that a person must look at, with the server's
    /// code and message.
    ///
    /// # Errors
    /// [`StorageError`] when the outbox cannot be read.
    pub fn attention_items(&self) -> Result<Vec<AttentionItem>, StorageError> {
        self.engine
            .outbox()
            .attention()
            .map(|items| items.into_iter().map(AttentionItem::from).collect())
            .map_err(Into::into)
    }

    /// Resolves a sale that needs attention as a person decided, with an optional note: `Rekey` and
    /// `Replace` record a new pending sale under a new id (returned) that the next run sends; `Void`
    /// keeps the sale unsent for good. The original sale is kept and leaves `attention_items`.
    ///
    /// # Errors
    /// [`SaleError`]; nothing was changed.
    pub fn resolve(
        &self,
        client_tx_id: String,
        resolution: Resolution,
        note: Option<String>,
    ) -> Result<Option<String>, SaleError> {
        self.engine.outbox().resolve(&client_tx_id, &resolution.into(), note.as_deref()).map_err(Into::into)
    }

    /// One sale of the outbox with its state, or `null`/`None` (never recorded, or pruned after the
    /// retention).
    ///
    /// # Errors
    /// [`StorageError`] when the outbox cannot be read.
    pub fn sale(&self, client_tx_id: String) -> Result<Option<SaleRecord>, StorageError> {
        self.engine.outbox().get(&client_tx_id).map(|e| e.map(SaleRecord::from)).map_err(Into::into)
    }

    /// A page of the most recent sales with their state, newest first: at most `limit`, all older than
    /// `before_seq` when given (pass the smallest `seq` of the previous page for the next one).
    ///
    /// # Errors
    /// [`StorageError`] when the outbox cannot be read.
    pub fn recent_sales(&self, limit: i64, before_seq: Option<i64>) -> Result<Vec<SaleRecord>, StorageError> {
        self.engine
            .outbox()
            .recent(page_size(limit), before_seq)
            .map(|page| page.into_iter().map(SaleRecord::from).collect())
            .map_err(Into::into)
    }

    /// Deletes sent sales older than `sent_retention_ms` now and returns how many (the engine also does
    /// it after runs, at most hourly). Unsent sales and sales needing attention are never deleted.
    ///
    /// # Errors
    /// [`StorageError`] when the outbox cannot be written.
    pub fn prune_sent(&self) -> Result<i64, StorageError> {
        self.engine.prune_sent().map(int).map_err(Into::into)
    }

    /// Writes a diagnostics bundle for support into the folder `dir` (created if missing; it must not
    /// hold an `outbox.db` already) and returns the files written: `outbox.db`, a consistent copy of the
    /// outbox (`possync-server verify --outbox` reads it), and `engine.txt` with the build, the
    /// settings without the device token, the status and the last runs' reports. Changes nothing.
    ///
    /// # Errors
    /// [`StorageError::Unavailable`] when the folder cannot be written; other [`StorageError`]s.
    pub fn export_diagnostics(&self, dir: String) -> Result<Vec<String>, StorageError> {
        self.engine
            .export_diagnostics(std::path::Path::new(&dir))
            .map(|files| files.iter().map(|f| f.display().to_string()).collect())
            .map_err(Into::into)
    }

    /// Asks the engine to stop and returns at once (call it from the UI thread): the batch in flight is
    /// still finished and finalized, pending statuses are delivered, then the threads end and the
    /// write-ahead log is truncated. Unsent sales stay in the outbox. Idempotent; after it, `sync_now`
    /// fails with `ShutDown` while `enqueue` and the queries still work. Closing (or dropping) the
    /// engine does the same.
    pub fn shutdown(&self) {
        self.engine.request_shutdown();
    }

    /// Waits up to `timeout_ms` for the engine to stop after `shutdown()`; returns whether it has (for
    /// those who must know, e.g. before copying the outbox file). Blocks: call it off the UI thread.
    pub fn await_shutdown(&self, timeout_ms: i64) -> bool {
        self.engine.await_shutdown(millis(timeout_ms))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::http::{HttpFailure, HttpPost, HttpReply};

    /// The app's HTTP client in these tests: every server is unreachable.
    struct Unreachable;

    impl HttpClient for Unreachable {
        fn post(&self, _request: HttpPost) -> Result<HttpReply, HttpFailure> {
            Err(HttpFailure::Unreachable { reason: "no network in this test".into() })
        }
    }

    /// Opens an engine with the app's own HTTP client, which every build has.
    fn open(config: PossyncConfig) -> Result<Arc<PossyncEngine>, OpenError> {
        PossyncEngine::with_http_client(config, "pst_test".into(), Arc::new(Unreachable), None)
    }

    #[test]
    fn the_apps_own_client_carries_the_runs_and_tls_options_are_refused_with_it() {
        let dir = std::env::temp_dir().join(format!("possync-ffi-own-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let engine = open(config(&dir.join("outbox.db"), None)).expect("open");
        let sale = crate::types::SalePayload {
            header: crate::types::SaleHeader {
                store_id: "store-1".into(),
                receipt_number: "R-1".into(),
                kind: crate::types::SaleKind::Sale,
                occurred_at_ms: 1_764_000_000_000,
                currency: "EUR".into(),
                subtotal_minor: 250,
                tax_minor: 0,
                total_minor: 250,
                change_minor: 0,
                cashier_id: None,
            },
            items: vec![crate::types::SaleItem {
                line_no: 1,
                sku: "sku-1".into(),
                name: "Article".into(),
                quantity_milli: 1000,
                unit_price_minor: 250,
                discount_minor: 0,
                line_total_minor: 250,
                refund: false,
            }],
            payments: vec![crate::types::SalePayment {
                method: "card".into(),
                amount_minor: 250,
                reference: None,
            }],
        };
        engine.enqueue(sale).expect("enqueue");
        let report = engine.sync_now(10_000).expect("a run");
        assert!(matches!(report.stop, Some(crate::types::DrainStop::Offline { .. })), "{report:?}");
        engine.shutdown();
        assert!(engine.await_shutdown(10_000));
        let mut pinned = config(&dir.join("pinned.db"), None);
        pinned.tls_spki_sha256_pins = vec!["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()];
        let refused = open(pinned).expect_err("TLS options with an own client");
        assert!(
            matches!(&refused, OpenError::InvalidConfig { reason } if reason.contains("built-in HTTP client"))
        );
        assert!(!dir.join("pinned.db").exists(), "a refused config created the outbox");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The slim mobile build (`--no-default-features`): `new` refuses and names `with_http_client`,
    /// before any file is made.
    #[cfg(not(feature = "builtin-http"))]
    #[test]
    fn without_the_built_in_client_new_refuses_and_names_with_http_client() {
        let dir = std::env::temp_dir().join(format!("possync-ffi-slim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let refused = PossyncEngine::new(config(&dir.join("outbox.db"), None), "pst_test".into(), None)
            .expect_err("no built-in client");
        assert!(
            matches!(&refused, OpenError::InvalidConfig { reason } if reason.contains("with_http_client"))
        );
        assert!(!dir.join("outbox.db").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The config with the defaults the bindings declare; a server nothing listens on.
    fn config(outbox: &Path, durability: Option<Durability>) -> PossyncConfig {
        PossyncConfig {
            outbox_path: outbox.display().to_string(),
            server_url: "http://127.0.0.1:9".into(),
            device_id: "till-1".into(),
            interval_ms: 60_000,
            connect_timeout_ms: 5_000,
            request_timeout_ms: 30_000,
            lease_ms: 60_000,
            heartbeat_ms: 10_000,
            batch_size: 50,
            retry_backoff_base_ms: 1_000,
            retry_backoff_cap_ms: 300_000,
            offline_backoff_base_ms: 2_000,
            offline_backoff_cap_ms: 300_000,
            busy_timeout_ms: 5_000,
            max_size_bytes: None,
            durability,
            sent_retention_ms: 604_800_000,
            tls_extra_ca_pem: Vec::new(),
            tls_spki_sha256_pins: Vec::new(),
            online_jitter_ms: 0,
            failures_before_backoff: 3,
            sole_user: true,
        }
    }

    #[test]
    fn durability_in_the_config_reaches_the_outbox_connection() {
        // SQLite's `PRAGMA synchronous` of the engine's own outbox connection: 1 = NORMAL, 2 = FULL.
        // NORMAL and FULL are both checked, so a config field that never reached the outbox fails one.
        let dir = std::env::temp_dir().join(format!("possync-ffi-durability-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let cases = [(None, 2), (Some(Durability::Normal), 1), (Some(Durability::Full), 2)];
        for (i, (durability, expected)) in cases.into_iter().enumerate() {
            let path = dir.join(format!("outbox-{i}.db"));
            let engine = open(config(&path, durability)).expect("open");
            let synchronous = engine.engine.outbox().synchronous().expect("pragma");
            engine.shutdown();
            assert!(engine.await_shutdown(20_000), "the engine did not stop");
            assert_eq!(synchronous, expected, "durability {durability:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
