//! possync-test-support: the shared harness of the workspace's integration tests (server-ref's and
//! possync-tests'): a fresh PostgreSQL database per test (created and dropped), an in-process server
//! on a free loopback port, tokens, sample sales, a small client, and `possync-server` as a child
//! process.
//!
//! PostgreSQL is found at `DATABASE_URL`, else `postgres://postgres@127.0.0.1:5432/postgres`; when it
//! cannot be reached the test fails with a message saying so (never a silent pass).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use possync_core::protocol::{
    canonical_json, payload_sha256, SaleHeader, SaleItem, SaleKind, SalePayload, SalePayment,
};
use possync_server::auth::{generate_token, token_sha256};
use possync_server::http::{self, HttpConfig, RunningServer, ShutdownHandle};
use possync_server::store::postgres::{PgOptions, PgStore};
use possync_server::store::{AdminStore, Device};
use postgres::{Client, NoTls};
use serde_json::{json, Value};

pub mod stores;

/// The `possync-server` binary: `POSSYNC_SERVER_BIN`, else `possync-server` in the folder above the
/// test binary's `deps/` (where cargo puts a package's binaries for its integration tests).
///
/// # Panics
/// When it is not there: build it first (`cargo build -p possync-server`).
pub fn server_bin() -> std::path::PathBuf {
    if let Some(bin) = std::env::var_os("POSSYNC_SERVER_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join(format!("possync-server{}", std::env::consts::EXE_SUFFIX)))
        .expect("the test binary is in target/<profile>/deps");
    assert!(bin.exists(), "{} is missing: build it first (cargo build -p possync-server)", bin.display());
    bin
}

/// Where the tests find PostgreSQL.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of its own for one test; dropped (with its connections) when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub config: postgres::Config,
    admin: postgres::Config,
}

impl TestDb {
    pub fn create() -> TestDb {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let url = admin_url();
        let admin: postgres::Config =
            url.parse().unwrap_or_else(|e| panic!("DATABASE_URL {url:?} is not a PostgreSQL URL: {e}"));
        let mut client = admin.connect(NoTls).unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is required for this test and cannot be reached at {url}: {e}. \
                 Run scripts/test (it starts the local cluster) or set DATABASE_URL."
            )
        });
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name =
            format!("possync_test_{}_{}_{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst), nanos);
        client.batch_execute(&format!("CREATE DATABASE {name}")).expect("create test database");
        let mut config = admin.clone();
        config.dbname(&name);
        TestDb { name, config, admin }
    }

    pub fn client(&self) -> Client {
        self.config.connect(NoTls).expect("connect to test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut c) = self.admin.connect(NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// A migrated database, a store on it, a running server and one token for `store-1` / `till-1`.
pub struct TestServer {
    pub store: Arc<PgStore>,
    pub base: String,
    pub token: String,
    server: Option<RunningServer>,
    agent: ureq::Agent,
    pub db: TestDb,
}

pub fn test_pg_options() -> PgOptions {
    PgOptions { pool_size: 8, lock_timeout_ms: 2_000, statement_timeout_ms: 10_000, ..PgOptions::default() }
}

/// Four database threads; up to 64 pushes and any number of sales admitted at once (they queue for
/// the threads), so tests that race many pushes measure the store, not the admission control.
pub fn test_http_config() -> HttpConfig {
    let limits = possync_server::http::FrontLimits {
        max_inflight_pushes: 64,
        max_inflight_sales: 100_000,
        ..Default::default()
    };
    HttpConfig { listen: "127.0.0.1:0".parse().expect("addr"), workers: 4, limits, ..HttpConfig::default() }
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(test_http_config(), test_pg_options())
    }

    pub fn start_with(http_config: HttpConfig, pg: PgOptions) -> TestServer {
        let db = TestDb::create();
        let store = Arc::new(PgStore::connect(db.config.clone(), &pg).expect("connect store"));
        store.migrate().expect("migrate");
        let server = http::start(store.clone(), http_config).expect("start server");
        let base = format!("http://{}", server.local_addr());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut s = TestServer { store, base, token: String::new(), server: Some(server), agent, db };
        s.token = s.add_token("store-1", "till-1");
        s
    }

    pub fn add_token(&self, store_id: &str, device_id: &str) -> String {
        let token = generate_token();
        let device = Device { store_id: store_id.into(), device_id: device_id.into() };
        self.store.create_token(&device, &token_sha256(&token), None).expect("create token");
        token
    }

    /// Sends raw bytes to `/sync/push`; returns status, JSON body and the echoed correlation id.
    pub fn push_raw(&self, token: Option<&str>, body: Vec<u8>) -> Reply {
        let mut req =
            self.agent.post(format!("{}/sync/push", self.base)).header("Content-Type", "application/json");
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let resp = req.send(&body[..]).expect("HTTP request to the test server");
        Reply::from(resp)
    }

    /// Pushes a request body made by [`request`] with the default token.
    pub fn push(&self, body: &Value) -> Reply {
        self.push_raw(Some(&self.token), serde_json::to_vec(body).expect("json"))
    }

    pub fn get(&self, path: &str) -> Reply {
        Reply::from(self.agent.get(format!("{}{path}", self.base)).call().expect("HTTP GET"))
    }

    /// Writes the device activity (last seen, backlog reports) noted by pushes so far.
    pub fn flush_activity(&self) {
        self.server.as_ref().expect("server running").flush_activity();
    }

    /// Stops the server from another thread while requests are in flight.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.server.as_ref().expect("server running").shutdown_handle()
    }

    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }

    /// Rows of `table` for `client_tx_id`.
    pub fn count(&self, table: &str, client_tx_id: &str) -> i64 {
        let mut c = self.db.client();
        c.query_one(&format!("SELECT count(*) FROM {table} WHERE client_tx_id = $1"), &[&client_tx_id])
            .expect("count")
            .get(0)
    }

    /// Rows of `table` in all.
    pub fn total(&self, table: &str) -> i64 {
        let mut c = self.db.client();
        c.query_one(&format!("SELECT count(*) FROM {table}"), &[]).expect("count").get(0)
    }

    /// Rows in the three sale tables (header, items, payments) for one sale.
    pub fn sale_rows(&self, client_tx_id: &str) -> (i64, i64, i64) {
        (
            self.count("pos_transactions", client_tx_id),
            self.count("pos_transaction_items", client_tx_id),
            self.count("pos_transaction_payments", client_tx_id),
        )
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An HTTP answer of the test server.
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub correlation_id: Option<String>,
    pub retry_after: Option<String>,
}

impl From<ureq::http::Response<ureq::Body>> for Reply {
    fn from(mut resp: ureq::http::Response<ureq::Body>) -> Self {
        let status = resp.status().as_u16();
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let correlation_id = header("X-Correlation-Id");
        let retry_after = header("Retry-After");
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, body, correlation_id, retry_after }
    }
}

impl Reply {
    /// The `i`-th per-sale result.
    pub fn result(&self, i: usize) -> &Value {
        &self.body["results"][i]
    }

    pub fn status_of(&self, i: usize) -> &str {
        self.result(i)["status"].as_str().unwrap_or("<none>")
    }

    pub fn code_of(&self, i: usize) -> &str {
        self.result(i)["code"].as_str().unwrap_or("<none>")
    }

    pub fn error_code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("<none>")
    }
}

/// A valid sale of `store_id` with `n_items` items and two payments; `seed` varies its content.
pub fn sale(store_id: &str, seed: i64, n_items: usize) -> SalePayload {
    let items: Vec<SaleItem> = (0..n_items)
        .map(|i| {
            let qty = 1000 * (1 + (seed + i as i64) % 3);
            let price = 100 + 37 * ((seed + i as i64) % 50);
            let total = qty * price / 1000;
            SaleItem {
                line_no: i as u32 + 1,
                sku: format!("sku-{i}"),
                name: format!("Article {i}"),
                quantity_milli: qty,
                unit_price_minor: price,
                discount_minor: 0,
                line_total_minor: total,
                refund: false,
            }
        })
        .collect();
    let subtotal: i64 = items.iter().map(|i| i.line_total_minor).sum();
    let card = subtotal / 2;
    SalePayload {
        header: SaleHeader {
            store_id: store_id.into(),
            receipt_number: format!("R-{seed}"),
            kind: SaleKind::Sale,
            occurred_at_ms: 1_764_000_000_000 + seed,
            currency: "EUR".into(),
            subtotal_minor: subtotal,
            tax_minor: 0,
            total_minor: subtotal,
            change_minor: 0,
            cashier_id: None,
        },
        items,
        payments: vec![
            SalePayment { method: "card".into(), amount_minor: card, reference: Some("auth-1".into()) },
            SalePayment { method: "cash".into(), amount_minor: subtotal - card, reference: None },
        ],
    }
}

/// The envelope of one sale, hashed as a till does.
pub fn envelope(client_tx_id: &str, payload: &SalePayload) -> Value {
    let canonical = canonical_json(payload).expect("canonical");
    let payload_value: Value = serde_json::from_slice(&canonical).expect("json");
    json!({
        "client_tx_id": client_tx_id,
        "payload_hash_version": 1,
        "payload_sha256": payload_sha256(&canonical),
        "attempt": 1,
        "payload": payload_value,
    })
}

/// A push request body of `till-1` with these envelopes.
pub fn request(envelopes: Vec<Value>) -> Value {
    json!({"device_id": "till-1", "transactions": envelopes})
}

/// A fresh client_tx_id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A URL of the test database `db` (same server and user as [`admin_url`]).
pub fn db_url(db: &TestDb) -> String {
    let admin = admin_url();
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or(admin);
    format!("{base}/{}", db.name)
}

/// The `possync-server` binary with a clean environment: no `DATABASE_URL` or `POSSYNC_*` from the
/// test's own environment, logs at `warn`.
///
/// The binary is found next to the running test binary's folder (`target/<profile>/possync-server`,
/// which cargo builds for server-ref's integration tests); `POSSYNC_SERVER_BIN` overrides it.
pub fn cli() -> std::process::Command {
    let bin = server_bin();
    let mut cmd = std::process::Command::new(bin);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key == "DATABASE_URL" || key.starts_with("POSSYNC_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("POSSYNC_LOG", "warn");
    cmd
}

/// Runs a prepared [`cli`] command; returns (success, stdout, stderr).
pub fn run(cmd: &mut std::process::Command) -> (bool, String, String) {
    let out = cmd.output().expect("run possync-server");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `possync-server ARGS` against `url` (as `DATABASE_URL`).
pub fn run_cli(url: &str, args: &[&str]) -> (bool, String, String) {
    run(cli().args(args).env("DATABASE_URL", url))
}

/// Moves every audit row of `client_tx_id` `days` days into the past.
pub fn age_audit(db: &TestDb, client_tx_id: &str, days: i32) {
    db.client()
        .execute(
            "UPDATE pos_transaction_audit SET at = at - make_interval(days => $2) WHERE client_tx_id = $1",
            &[&client_tx_id, &days],
        )
        .expect("age audit rows");
}

/// A `possync-server serve` child process.
pub struct ServeProcess {
    child: std::process::Child,
    /// Its stderr (JSON-lines logs), written to a file so it can be read while the process runs.
    log: std::path::PathBuf,
    pub base: String,
}

impl ServeProcess {
    /// Spawns `cmd`, a [`cli`] `serve` command listening on port 0 (`--listen 127.0.0.1:0`, or
    /// `listen` in its config file), so the kernel picks a free port and hands it to the server
    /// itself (no port is chosen here and reused later, which another process could take meanwhile).
    /// Reads the address from the server's `possync-server listening` log line and waits until
    /// `/readyz` answers 200; panics with its stderr if it exits first.
    pub fn spawn(cmd: &mut std::process::Command) -> ServeProcess {
        let log = std::env::temp_dir().join(format!("possync-serve-{}.log", new_id()));
        let child = cmd
            .env("POSSYNC_LOG", "info") // the `listening` line is at info
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn possync-server serve");
        let mut process = ServeProcess { child, log, base: String::new() };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                let (_, stderr) = process.wait_output();
                panic!("possync-server serve exited with {status} before it was ready: {stderr}");
            }
            if process.base.is_empty() {
                if let Some(addr) = listening_address(&process.log_text()) {
                    process.base = format!("http://{addr}");
                }
            }
            if !process.base.is_empty() {
                let ready = agent.get(format!("{}/readyz", process.base)).call();
                if ready.is_ok_and(|r| r.status() == 200) {
                    return process;
                }
            }
            assert!(std::time::Instant::now() < deadline, "possync-server serve not ready within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits; returns whether it exited successfully, and its stderr.
    pub fn terminate(mut self) -> (bool, String) {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        let status = self.child.wait().expect("wait for possync-server");
        (status.success(), self.wait_output().1)
    }

    fn wait_output(&mut self) -> (String, String) {
        use std::io::Read;
        let mut out = String::new();
        if let Some(mut s) = self.child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        (out, self.log_text())
    }
}

/// The address `possync-server serve` bound, from its `listening` log line (JSON lines).
pub fn listening_address(log: &str) -> Option<String> {
    listening_field(log, "listen")
}

/// A field of `possync-server serve`'s `listening` log line (e.g. `listen`, `monitor`), if present.
pub fn listening_field(log: &str, field: &str) -> Option<String> {
    log.lines().filter(|l| l.contains("possync-server listening")).find_map(|l| {
        let v: Value = serde_json::from_str(l).ok()?;
        v.get(field)?.as_str().map(str::to_owned)
    })
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}
