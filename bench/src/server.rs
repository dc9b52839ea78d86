//! Server benchmarks: push throughput against `pgbench` running the same per-sale SQL, and the latency
//! of a duplicate storm. Each run creates its own database and drops it.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use possync_core::protocol::{canonical_json, payload_sha256};
use possync_server::auth::{generate_token, token_sha256};
use possync_server::http::{self, HttpConfig, RunningServer};
use possync_server::store::postgres::{PgOptions, PgStore};
use possync_server::store::{Device, Store};
use serde_json::{json, Value};

use crate::outbox::sample_sale;
use crate::{median, Row};

/// A database of its own for one benchmark, dropped at the end.
pub struct BenchDb {
    admin: postgres::Config,
    /// Its name.
    pub name: String,
    /// Connection config of the database.
    pub config: postgres::Config,
    /// Its URL, for pgbench.
    pub url: String,
}

impl BenchDb {
    /// Creates `possync_bench_<pid>_<n>` next to the database of `admin_url`.
    pub fn create(admin_url: &str, n: u32) -> BenchDb {
        let admin: postgres::Config = admin_url.parse().expect("DATABASE_URL");
        let name = format!("possync_bench_{}_{n}", std::process::id());
        let mut c = admin.connect(postgres::NoTls).expect("PostgreSQL reachable at DATABASE_URL");
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).expect("drop old db");
        c.batch_execute(&format!("CREATE DATABASE {name}")).expect("create db");
        let mut config = admin.clone();
        config.dbname(&name);
        let base =
            admin_url.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or_else(|| admin_url.to_owned());
        BenchDb { admin, url: format!("{base}/{name}"), name, config }
    }
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        if let Ok(mut c) = self.admin.connect(postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

struct Served {
    server: Option<RunningServer>,
    base: String,
    token: String,
}

fn serve(db: &BenchDb, concurrency: usize) -> Served {
    let pg = PgOptions { pool_size: (concurrency as u32 + 2).max(4), ..PgOptions::default() };
    let store = Arc::new(PgStore::connect(db.config.clone(), &pg).expect("store"));
    store.migrate().expect("migrate");
    let token = generate_token();
    let device = Device { store_id: "store-1".into(), device_id: "bench".into() };
    store.create_token(&device, &token_sha256(&token), None).expect("token");
    let config = HttpConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        workers: concurrency.max(2),
        ..HttpConfig::default()
    };
    let server = http::start(store, config).expect("server");
    Served { base: format!("http://{}", server.local_addr()), server: Some(server), token }
}

fn envelope(id: &str, seed: i64) -> Value {
    let sale = sample_sale(seed);
    let canonical = canonical_json(&sale).expect("canonical");
    json!({"client_tx_id": id, "payload_hash_version": 1, "payload_sha256": payload_sha256(&canonical),
           "attempt": 1, "payload": serde_json::from_slice::<Value>(&canonical).expect("json")})
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// Sales per second stored by `concurrency` pushers sending batches of `batch` for `seconds`.
pub fn push_rate(db: &BenchDb, concurrency: usize, batch: usize, seconds: u64) -> f64 {
    let served = serve(db, concurrency);
    let stop = AtomicBool::new(false);
    let stored = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..concurrency {
            let (served, stop, stored) = (&served, &stop, &stored);
            s.spawn(move || {
                let agent = agent();
                let mut n = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let txs: Vec<Value> = (0..batch)
                        .map(|_| {
                            n += 1;
                            envelope(&format!("b-{t}-{n}-{}", uuid::Uuid::now_v7()), n)
                        })
                        .collect();
                    let body = serde_json::to_vec(&json!({"device_id": "bench", "transactions": txs}))
                        .expect("json");
                    let resp = agent
                        .post(format!("{}/sync/push", served.base))
                        .header("Authorization", format!("Bearer {}", served.token))
                        .send(&body[..]);
                    if let Ok(mut r) = resp {
                        let v: Value =
                            serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default())
                                .unwrap_or(Value::Null);
                        let ok =
                            v["results"].as_array().map(|a| a.iter().filter(|r| r["status"] == "OK").count());
                        stored.fetch_add(ok.unwrap_or(0) as u64, Ordering::Relaxed);
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    let rate = stored.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let mut served = served;
    if let Some(server) = served.server.take() {
        server.shutdown();
    }
    rate
}

/// The per-sale SQL of the server (header, three items, one payment, audit, in one transaction), as a
/// pgbench script.
pub fn pgbench_script() -> String {
    let payload = String::from_utf8(canonical_json(&sample_sale(1)).expect("canonical")).expect("utf-8");
    let payload = payload.replace('\'', "''");
    let id = "'pgb-' || :client_id || '-' || :r";
    format!(
        "\\set r random(1, 9000000000000)\n\
         BEGIN;\n\
         SELECT set_config('lock_timeout', '2000', true), set_config('statement_timeout', '5000', true);\n\
         INSERT INTO pos_transactions (client_tx_id, payload_sha256, payload_hash_version, store_id, device_id, receipt_number, kind, occurred_at, currency, subtotal_minor, tax_minor, total_minor, change_minor, cashier_id, payload_canonical, correlation_id) VALUES ({id}, repeat('a', 64), 1, 'store-1', 'pgbench', 'R-1', 'sale', timestamptz 'epoch' + 1764000000000::int8 * interval '1 millisecond', 'EUR', 597, 0, 597, 0, 'cashier-1', '{payload}', 'pgbench') ON CONFLICT (client_tx_id) DO NOTHING RETURNING server_tx_id;\n\
         INSERT INTO pos_transaction_items (client_tx_id, line_no, sku, name, quantity_milli, unit_price_minor, discount_minor, line_total_minor, refund) SELECT {id}, * FROM UNNEST(ARRAY[1,2,3]::int4[], ARRAY['a','b','c']::text[], ARRAY['x','y','z']::text[], ARRAY[1000,1000,1000]::int8[], ARRAY[199,199,199]::int8[], ARRAY[0,0,0]::int8[], ARRAY[199,199,199]::int8[], ARRAY[false,false,false]::bool[]);\n\
         INSERT INTO pos_transaction_payments (client_tx_id, payment_no, method, amount_minor, reference) SELECT {id}, * FROM UNNEST(ARRAY[1]::int4[], ARRAY['card']::text[], ARRAY[597]::int8[], ARRAY['auth']::text[]);\n\
         INSERT INTO pos_transaction_audit (client_tx_id, store_id, device_id, correlation_id, attempt, payload_hash_version, payload_sha256, stored_sha256, outcome, code, message) VALUES ({id}, 'store-1', 'pgbench', 'pgbench', 1, 1, repeat('a', 64), NULL, 'OK', NULL, NULL);\n\
         COMMIT;\n"
    )
}

/// Transactions per second of `pgbench` with [`pgbench_script`] at `concurrency` for `seconds`.
pub fn pgbench_rate(db: &BenchDb, concurrency: usize, seconds: u64) -> f64 {
    let dir = tempfile::tempdir().expect("tmp");
    let script = dir.path().join("sale.sql");
    std::fs::write(&script, pgbench_script()).expect("script");
    let out = Command::new("pgbench")
        .args([
            "-n",
            "-c",
            &concurrency.to_string(),
            "-j",
            &concurrency.to_string(),
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(&script)
        .arg(&db.url)
        .output()
        .expect("run pgbench (PostgreSQL's pgbench must be on PATH)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("pgbench failed: {}{}", text, String::from_utf8_lossy(&out.stderr)))
}

/// Push throughput vs pgbench with the same SQL at the same concurrency, on one fresh database each.
pub fn push_vs_pgbench(admin_url: &str, concurrency: usize, batch: usize, seconds: u64) -> Row {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..2 {
        let db = BenchDb::create(admin_url, 10 + round);
        ours.push(push_rate(&db, concurrency, batch, seconds));
        theirs.push(pgbench_rate(&db, concurrency, seconds));
    }
    Row {
        scenario: format!("server push, batch {batch}, concurrency {concurrency}"),
        value: median(ours),
        baseline: median(theirs),
        unit: "sales/s",
        note: "vs pgbench running the same per-sale SQL at the same concurrency, same database; target ≥ 0.8"
            .into(),
    }
}

/// Latencies (ms) of `pushers` concurrent pushes of one sale, over `rounds` rounds; checks that each
/// round stored the sale exactly once. Returns (p50, p99).
pub fn duplicate_storm(admin_url: &str, pushers: usize, rounds: usize) -> (f64, f64) {
    let db = BenchDb::create(admin_url, 20);
    let served = serve(&db, pushers);
    let mut latencies = Vec::new();
    for round in 0..rounds {
        let body =
            serde_json::to_vec(&json!({"device_id": "bench", "transactions": [envelope(&format!("storm-{round}"), round as i64)]}))
                .expect("json");
        let barrier = Barrier::new(pushers);
        let results: Vec<(f64, String)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..pushers)
                .map(|_| {
                    let (served, body, barrier) = (&served, &body, &barrier);
                    s.spawn(move || {
                        let agent = agent();
                        barrier.wait();
                        let t = Instant::now();
                        let mut r = agent
                            .post(format!("{}/sync/push", served.base))
                            .header("Authorization", format!("Bearer {}", served.token))
                            .send(&body[..])
                            .expect("push");
                        let v: Value =
                            serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default())
                                .unwrap_or(Value::Null);
                        (
                            t.elapsed().as_secs_f64() * 1000.0,
                            v["results"][0]["status"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("pusher")).collect()
        });
        let ok = results.iter().filter(|(_, s)| s == "OK").count();
        let dup = results.iter().filter(|(_, s)| s == "DUPLICATE").count();
        assert_eq!((ok, dup), (1, pushers - 1), "duplicate storm round {round}: exactly one OK");
        latencies.extend(results.into_iter().map(|(ms, _)| ms));
    }
    let mut served = served;
    if let Some(server) = served.server.take() {
        server.shutdown();
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    (pct(0.50), pct(0.99))
}
