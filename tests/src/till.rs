//! Till-side helpers of the end-to-end tests.

use possync_core::config::SyncConfig;
use possync_core::protocol::SalePayload;

/// One drain run of `outbox` for `reason` over real HTTP with `config`, as a till's engine would run
/// it; panics if the run cannot start or fails.
pub fn drain_once(
    outbox: &possync_core::outbox::Outbox,
    config: &SyncConfig,
    reason: possync_core::reason::DrainReason,
) -> possync_core::drain::DrainReport {
    let transport = possync_core::transport::HttpTransport::new(config);
    possync_core::drain::Drainer::new(outbox, &transport, config)
        .expect("drainer")
        .drain(reason.into(), possync_core::drain::DrainHooks::default())
        .expect("drain")
}

/// A sync config for tests: short timeouts, the minimum lease margin, tiny backoff.
pub fn sync_config(server_url: &str, token: &str, device_id: &str) -> SyncConfig {
    let mut c = SyncConfig::new(server_url, token, device_id);
    c.connect_timeout_ms = 1_000;
    c.request_timeout_ms = 2_000;
    c.lease_ms = 7_000;
    c.heartbeat_ms = 1_000;
    c.batch_size = 50;
    c.backoff.base_ms = 1;
    c.backoff.cap_ms = 5;
    c
}

/// A valid sale of `store-1` (the server harness's `sale`).
pub fn sale(seed: i64, items: usize) -> SalePayload {
    crate::server::sale("store-1", seed, items)
}

/// An engine config for chaos tests: a drain every 100 ms, short offline backoff, a hold of up to
/// 200 ms after `Online` and at start.
pub fn engine_config(server_url: &str, token: &str, device_id: &str) -> possync_core::engine::EngineConfig {
    let mut c = possync_core::engine::EngineConfig::new(sync_config(server_url, token, device_id));
    c.interval_ms = 100;
    c.sync.batch_size = 20;
    c.sync.backoff.base_ms = 20;
    c.sync.backoff.cap_ms = 300;
    c.offline_backoff.base_ms = 50;
    c.offline_backoff.cap_ms = 500;
    c.online_jitter_ms = 200;
    c
}
