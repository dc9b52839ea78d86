//! Test helper: the reference server in its own OS process, so chaos tests can kill it with SIGKILL and
//! start it again on the same port.
//!
//! Usage: `possync-test-server DATABASE_URL LISTEN_ADDR LOCK_TIMEOUT_MS`. Runs until killed. With port 0
//! the server binds a free port itself; the first line on stdout is `listening ADDR`, the bound address.

use std::process::ExitCode;
use std::sync::Arc;

use possync_server::http::{self, HttpConfig};
use possync_server::store::postgres::{PgOptions, PgStore};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, listen, lock_timeout_ms] = args.as_slice() else {
        eprintln!("usage: possync-test-server DATABASE_URL LISTEN_ADDR LOCK_TIMEOUT_MS");
        return ExitCode::from(2);
    };
    let (Ok(config), Ok(listen), Ok(lock_timeout_ms)) =
        (url.parse::<postgres::Config>(), listen.parse(), lock_timeout_ms.parse::<u64>())
    else {
        eprintln!("possync-test-server: bad arguments");
        return ExitCode::from(2);
    };
    // The pool timeout below the test tills' 2 s request timeout, as a shop's 2 s is below its tills'
    // 30 s: while the database is down, a till is answered (503 or RETRY database_unavailable) before
    // it gives up on the request, so the chaos test sees what the database crash caused.
    let opts = PgOptions {
        pool_size: 8,
        lock_timeout_ms,
        statement_timeout_ms: 10_000,
        pool_timeout: std::time::Duration::from_secs(1),
        ..PgOptions::default()
    };
    let store = match PgStore::connect(config, &opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("possync-test-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let http = HttpConfig { listen, workers: 8, ..HttpConfig::default() };
    match http::start(Arc::new(store), http) {
        Ok(server) => {
            println!("listening {}", server.local_addr());
            server.join();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("possync-test-server: {e}");
            ExitCode::FAILURE
        }
    }
}
