//! One simulated till: its engine (and outbox), its register, its run reports and what it rang up.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use parking_lot::Mutex;
use possync_core::config::OutboxConfig;
use possync_core::drain::DrainReport;
use possync_core::engine::{EngineConfig, SyncEngine};
use possync_core::outbox::Outbox;
use possync_core::status::{StatusListener, SyncStatus};
use possync_core::transport::HttpTransport;
use possync_server::auth::{generate_token, token_sha256};
use possync_server::store::Device;

use super::backend::Backend;
use super::DemoArgs;
use crate::inspect;
use crate::sales::Register;
use crate::TillError;

/// Run reports of one till, as its status listener receives them.
#[derive(Default)]
pub(super) struct Reports(pub(super) Mutex<Vec<DrainReport>>);

impl StatusListener for Reports {
    fn on_status(&self, _status: SyncStatus) {}
    fn on_report(&self, report: DrainReport) {
        self.0.lock().push(report);
    }
}

/// One simulated till: its engine (and outbox), its register and what it rang up.
pub(super) struct Till {
    /// `till-1`, `till-2`, ...
    pub(super) name: String,
    /// The device it sends as.
    pub(super) device: Device,
    /// Its sync engine, which owns its outbox.
    pub(super) engine: SyncEngine,
    /// What rings up its sales.
    pub(super) register: Mutex<Register>,
    /// Its engine's run reports.
    pub(super) reports: Arc<Reports>,
    /// Sales rung up so far.
    pub(super) rung_up: AtomicU64,
}

impl Till {
    /// The till's outbox.
    pub(super) fn outbox(&self) -> &Arc<Outbox> {
        self.engine.outbox()
    }
}

/// Opens a till for each of `names`: its outbox file in `dir`, a token for it (on an in-process
/// server; a real server's tills all send with `--token` as `--device`), and its engine, started
/// against `url` with a 500 ms interval and a short offline backoff.
///
/// # Errors
/// A storage error of an outbox or of the server's token table, or an engine that cannot start.
pub(super) fn open_tills(
    args: &DemoArgs,
    backend: &Backend,
    dir: &Path,
    store_id: &str,
    url: &str,
    names: &[String],
) -> Result<Vec<Till>, TillError> {
    let mut tills = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let (device, token) = match backend {
            Backend::InProcess { store, .. } => {
                let device = Device { store_id: store_id.to_owned(), device_id: name.clone() };
                let token = generate_token();
                store.create_token(&device, &token_sha256(&token), Some("possync-till demo"))?;
                (device, token)
            }
            Backend::Remote { .. } => (
                Device { store_id: store_id.to_owned(), device_id: args.device.clone() },
                args.token.clone().unwrap_or_default(),
            ),
        };
        let outbox = Arc::new(Outbox::open(dir.join(format!("{name}.db")), OutboxConfig::default())?);
        let mut config = EngineConfig::new(inspect::sync_config(url, &token, &device.device_id));
        config.interval_ms = 500;
        config.offline_backoff.base_ms = 300;
        config.offline_backoff.cap_ms = 2_000;
        let transport = Arc::new(HttpTransport::new(&config.sync));
        let reports = Arc::new(Reports::default());
        let engine = SyncEngine::start(outbox, transport, config, Some(reports.clone()))?;
        let register = Register::new(args.seed.wrapping_add(i as u64), store_id, name);
        tills.push(Till {
            name: name.clone(),
            device,
            engine,
            register: Mutex::new(register),
            reports,
            rung_up: AtomicU64::new(0),
        });
    }

    Ok(tills)
}
