//! Test helper: runs one drain of an outbox file in its own OS process, so tests can run claimers in
//! two processes and kill a till with SIGKILL mid-send.
//!
//! Usage: `possync-test-drain OUTBOX SERVER_URL TOKEN DEVICE_ID`. Prints the report's counts as JSON.

use std::process::ExitCode;

use possync_core::config::OutboxConfig;
use possync_core::drain::{DrainHooks, Drainer};
use possync_core::outbox::Outbox;
use possync_core::reason::DrainReason;
use possync_core::transport::HttpTransport;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [outbox, url, token, device] = args.as_slice() else {
        eprintln!("usage: possync-test-drain OUTBOX SERVER_URL TOKEN DEVICE_ID");
        return ExitCode::from(2);
    };
    let config = possync_tests::till::sync_config(url, token, device);
    let result =
        Outbox::open(outbox, OutboxConfig::default()).map_err(possync_core::Error::from).and_then(|outbox| {
            let transport = HttpTransport::new(&config);
            let drainer = Drainer::new(&outbox, &transport, &config)?;
            let mut total = (0, 0);
            loop {
                let report = drainer.drain(DrainReason::Manual.into(), DrainHooks::default())?;
                total.0 += report.sent;
                total.1 += report.duplicate;
                if report.stop.is_some() || report.sent + report.duplicate + report.retry == 0 {
                    return Ok(total);
                }
            }
        });
    match result {
        Ok((sent, duplicate)) => {
            println!("{{\"sent\":{sent},\"duplicate\":{duplicate}}}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("possync-test-drain: {e}");
            ExitCode::FAILURE
        }
    }
}
