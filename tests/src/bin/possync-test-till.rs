//! Test helper: a till's sync engine in its own OS process, draining an outbox file that the test fills,
//! until it is killed (the chaos test kills it with SIGKILL mid-drain and starts it again).
//!
//! Usage: `possync-test-till OUTBOX SERVER_URL TOKEN DEVICE_ID`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use possync_core::config::OutboxConfig;
use possync_core::engine::SyncEngine;
use possync_core::outbox::Outbox;
use possync_core::transport::HttpTransport;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [outbox, url, token, device] = args.as_slice() else {
        eprintln!("usage: possync-test-till OUTBOX SERVER_URL TOKEN DEVICE_ID");
        return ExitCode::from(2);
    };
    let config = possync_tests::till::engine_config(url, token, device);
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
