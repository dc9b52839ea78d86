//! Test helper: a till's sync engine in its own OS process, draining an outbox file that the test fills,
//! until it is killed (the chaos test kills it with SIGKILL mid-drain and starts it again).
//!
//! Usage: `possync-test-till OUTBOX SERVER_URL TOKEN DEVICE_ID [LEASE_MS]` (the lease length of its
//! claims; default the tests' `engine_config`). The engine is its outbox's sole user (the default):
//! at start it takes back the leases an earlier, killed life of it left and sends them at once.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use possync_core::config::OutboxConfig;
use possync_core::engine::SyncEngine;
use possync_core::outbox::Outbox;
use possync_core::transport::HttpTransport;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (outbox, url, token, device, lease_ms) = match args.as_slice() {
        [o, u, t, d] => (o, u, t, d, None),
        [o, u, t, d, lease] => match lease.parse::<u64>() {
            Ok(ms) => (o, u, t, d, Some(ms)),
            Err(_) => {
                eprintln!("possync-test-till: LEASE_MS must be a number of milliseconds");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: possync-test-till OUTBOX SERVER_URL TOKEN DEVICE_ID [LEASE_MS]");
            return ExitCode::from(2);
        }
    };
    let mut config = possync_tests::till::engine_config(url, token, device);
    if let Some(ms) = lease_ms {
        config.sync.lease_ms = ms;
    }
    let transport = Arc::new(HttpTransport::new(&config.sync));
    let started = Outbox::open(outbox, OutboxConfig::default())
        .map_err(possync_core::Error::from)
        .and_then(|outbox| SyncEngine::start(Arc::new(outbox), transport, config, None));
    match started {
        Ok(_engine) => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        Err(e) => {
            eprintln!("possync-test-till: {e}");
            ExitCode::FAILURE
        }
    }
}
