//! Server benchmarks: push throughput against `pgbench` running the same per-sale SQL, and the latency
//! of a duplicate storm. Each run creates its own database and drops it.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use possync_core::protocol::{canonical_json, payload_sha256, PushResponse, PushStatus};
use possync_server::auth::{generate_token, token_sha256};
use possync_server::http::HttpConfig;
use possync_server::store::postgres::{PgOptions, PgStore};
use possync_server::store::{AdminStore, Device};

use crate::child::ServerProcess;

use crate::outbox::sample_sale;
use crate::{median, Row, Target};

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

    /// Flushes the machine's dirty pages (`sync`: an earlier scenario's outbox files of a gigabyte may
    /// still be being written back) and runs a `CHECKPOINT`, so that a measured run starts with no
    /// dirty pages and a checkpoint's writes fall inside the runs as their own WAL brings them, not
    /// where an earlier run left them.
    pub fn checkpoint(&self) {
        let synced = std::process::Command::new("sync").status();
        assert!(synced.as_ref().is_ok_and(|s| s.success()), "sync failed: {synced:?}");
        let mut c = self.admin.connect(postgres::NoTls).expect("PostgreSQL reachable at DATABASE_URL");
        c.batch_execute("CHECKPOINT").expect("CHECKPOINT");
    }
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        if let Ok(mut c) = self.admin.connect(postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// A benchmark database with the schema, device tokens, and the server in its own process.
pub struct Served {
    /// The server process.
    pub server: ServerProcess,
    /// The device token of device `bench` of `store-1`.
    pub token: String,
    /// One device per pusher (a device has one push in flight at most, as a till): `(device_id,
    /// token)`, the first one `bench`.
    pub pushers: Vec<(String, String)>,
}

/// Most pusher devices registered by [`serve`].
const MAX_PUSHERS: usize = 64;

/// Migrates `db`, registers device `bench` (and `bench-1`, `bench-2`, ... up to one per pusher) and
/// starts the server (`exe child-server`) with one worker per pusher up to the server's default, and
/// two pooled connections more than workers.
pub fn serve(exe: &Path, db: &BenchDb, concurrency: usize) -> Served {
    let store = PgStore::connect(db.config.clone(), &PgOptions { pool_size: 2, ..PgOptions::default() })
        .expect("store");
    store.migrate().expect("migrate");
    let pushers: Vec<(String, String)> = (0..concurrency.clamp(1, MAX_PUSHERS))
        .map(|i| {
            let device_id = if i == 0 { "bench".to_owned() } else { format!("bench-{i}") };
            let token = generate_token();
            let device = Device { store_id: "store-1".into(), device_id: device_id.clone() };
            store.create_token(&device, &token_sha256(&token), None).expect("token");
            (device_id, token)
        })
        .collect();
    let token = pushers[0].1.clone();
    // Up to the server's default worker count (four per core, 4 to 16): the server as a shop runs it. More workers than
    // cores only add context switches; requests beyond them wait in the accept queue.
    let workers = concurrency.clamp(2, HttpConfig::default().workers);
    Served { server: ServerProcess::start(exe, &db.url, workers, workers as u32 + 2), token, pushers }
}

/// One sale of a push request, serialized once: everything after its `client_tx_id`.
fn envelope_tail(seed: i64) -> String {
    let sale = sample_sale(seed);
    let canonical = canonical_json(&sale).expect("canonical");
    let payload = String::from_utf8(canonical).expect("utf-8");
    format!(
        r#""payload_hash_version":1,"payload_sha256":"{}","attempt":1,"payload":{payload}}}"#,
        payload_sha256(payload.as_bytes())
    )
}

/// A push request body of `ids.len()` copies of one sale, each under its own id. The load generator
/// builds bodies from a pre-serialized sale so that its own CPU use stays small next to the server's.
fn push_body(device_id: &str, tail: &str, ids: &[String]) -> Vec<u8> {
    let mut body = String::with_capacity(32 + ids.len() * (tail.len() + 64));
    body.push_str(r#"{"device_id":""#);
    body.push_str(device_id);
    body.push_str(r#"","transactions":["#);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(r#"{"client_tx_id":""#);
        body.push_str(id);
        body.push_str(r#"","#);
        body.push_str(tail);
    }
    body.push_str("]}");
    body.into_bytes()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// Sends one push with `token`; returns the statuses of its results (empty for a failed request),
/// and the server's `Retry-After` when it shed the push (503).
fn push(agent: &ureq::Agent, served: &Served, token: &str, body: &[u8]) -> (Vec<PushStatus>, Option<u64>) {
    let response = agent
        .post(format!("{}/sync/push", served.server.base))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body);
    let Ok(mut response) = response else { return (Vec::new(), None) };
    if response.status() != 200 {
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        return (Vec::new(), retry_after);
    }
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let statuses = serde_json::from_str::<PushResponse>(&text)
        .map(|r| r.results.into_iter().map(|r| r.status).collect())
        .unwrap_or_default();
    (statuses, None)
}

/// Sales per second stored (`OK`) by `concurrency` pushers sending batches of `batch` for `seconds`.
pub fn push_rate(served: &Served, concurrency: usize, batch: usize, seconds: u64) -> f64 {
    let stop = AtomicBool::new(false);
    let stored = AtomicU64::new(0);
    let tail = envelope_tail(1);
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..concurrency {
            let (stop, stored, tail) = (&stop, &stored, &tail);
            s.spawn(move || {
                let agent = agent();
                let (device, token) = &served.pushers[t % served.pushers.len()];
                let run = uuid::Uuid::now_v7().simple().to_string();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let ids: Vec<String> = (0..batch)
                        .map(|_| {
                            n += 1;
                            format!("b-{run}-{t}-{n}")
                        })
                        .collect();
                    let (statuses, retry_after) = push(&agent, served, token, &push_body(device, tail, &ids));
                    let ok = statuses.into_iter().filter(|s| *s == PushStatus::Ok).count();
                    stored.fetch_add(ok as u64, Ordering::Relaxed);
                    // Shed: come back when the server says, as a till does (not in a tight loop
                    // that would spend the server's cores on refusals).
                    if let Some(secs) = retry_after {
                        let until = Instant::now() + Duration::from_secs(secs);
                        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    stored.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
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
         INSERT INTO pos_transactions (client_tx_id, payload_sha256, payload_hash_version, store_id, device_id, receipt_number, kind, occurred_at, currency, subtotal_minor, tax_minor, total_minor, change_minor, cashier_id, payload_canonical, correlation_id, server_tx_id, outbox_seq, outbox_id) VALUES ({id}, repeat('a', 64), 1, 'store-1', 'pgbench', 'R-1', 'sale', timestamptz 'epoch' + 1764000000000::int8 * interval '1 millisecond', 'EUR', 597, 0, 597, 0, 'cashier-1', '{payload}', 'pgbench', (floor(extract(epoch from clock_timestamp()) * 1000)::int8 << 21) | floor(random() * 2097152)::int8, :r, 'pgbench-outbox') ON CONFLICT (store_id, client_tx_id) DO NOTHING RETURNING server_tx_id;\n\
         INSERT INTO pos_transaction_items (store_id, client_tx_id, line_no, sku, name, quantity_milli, unit_price_minor, discount_minor, line_total_minor, refund) SELECT 'store-1', {id}, * FROM UNNEST(ARRAY[1,2,3]::int4[], ARRAY['a','b','c']::text[], ARRAY['x','y','z']::text[], ARRAY[1000,1000,1000]::int8[], ARRAY[199,199,199]::int8[], ARRAY[0,0,0]::int8[], ARRAY[199,199,199]::int8[], ARRAY[false,false,false]::bool[]);\n\
         INSERT INTO pos_transaction_payments (store_id, client_tx_id, payment_no, method, amount_minor, reference) SELECT 'store-1', {id}, * FROM UNNEST(ARRAY[1]::int4[], ARRAY['card']::text[], ARRAY[597]::int8[], ARRAY['auth']::text[]);\n\
         INSERT INTO pos_transaction_audit (client_tx_id, store_id, device_id, correlation_id, attempt, payload_hash_version, payload_sha256, stored_sha256, outcome, code, message, outbox_seq, attempted_payload, outbox_id) VALUES ({id}, 'store-1', 'pgbench', 'pgbench', 1, 1, repeat('a', 64), NULL, 'OK', NULL, NULL, :r, NULL, 'pgbench-outbox');\n\
         COMMIT;\n"
    )
}

/// Transactions per second of `pgbench -M prepared` with [`pgbench_script`] at `concurrency` for
/// `seconds`: each statement parsed and planned once per connection, as the server's push path does
/// (since `ad222eb`, 2026-11-30). The baseline of every push, storm and drain ratio: the rate
/// PostgreSQL itself reaches with the server's SQL, the true limit.
pub fn pgbench_rate(db: &BenchDb, concurrency: usize, seconds: u64) -> f64 {
    pgbench_rate_in(db, concurrency, seconds, "prepared")
}

/// [`pgbench_rate`] in pgbench's default simple query protocol (each statement parsed and planned
/// every time): context beside the ratios, the baseline of the targets before 2026-12-07.
pub fn pgbench_rate_simple(db: &BenchDb, concurrency: usize, seconds: u64) -> f64 {
    pgbench_rate_in(db, concurrency, seconds, "simple")
}

/// Seconds `pgbench -M prepared` with [`pgbench_script`] takes for `transactions` per-sale
/// transactions at `concurrency` (split evenly over the clients), wall clock: the baseline of a run
/// that stores a given number of sales (its tables grow as much as the run's do).
pub fn pgbench_seconds_for(db: &BenchDb, concurrency: usize, transactions: usize) -> f64 {
    let per_client = transactions.div_ceil(concurrency.max(1));
    let started = std::time::Instant::now();
    pgbench_in(db, concurrency, &["-t", &per_client.to_string()], "prepared");
    started.elapsed().as_secs_f64()
}

fn pgbench_rate_in(db: &BenchDb, concurrency: usize, seconds: u64, protocol: &str) -> f64 {
    pgbench_in(db, concurrency, &["-T", &seconds.to_string()], protocol)
}

/// Runs pgbench with [`pgbench_script`] for as long or as many transactions as `run` says (`-T N` or
/// `-t N`) and returns its transactions per second.
fn pgbench_in(db: &BenchDb, concurrency: usize, run: &[&str], protocol: &str) -> f64 {
    let dir = tempfile::tempdir().expect("tmp");
    let script = dir.path().join("sale.sql");
    let mut sql = pgbench_script();
    if protocol == "prepared" {
        // In prepared mode pgbench takes every `:word` for a variable, the payload's `"qty":1000`
        // included; a space after the JSON's colons keeps them literal (the payload is only stored).
        sql = sql.replace("\":", "\": ");
    }
    std::fs::write(&script, sql).expect("script");
    let out = Command::new("pgbench")
        .args(["-n", "-M", protocol, "-c", &concurrency.to_string(), "-j", &concurrency.to_string()])
        .args(run)
        .arg("-f")
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

/// Scenario 3's measurement of one cell, and the server's memory during it.
#[derive(Debug, Clone)]
pub struct PushCell {
    /// Push throughput vs pgbench.
    pub row: Row,
    /// RSS of the server process just after it started, in KiB (last round).
    pub server_idle_rss_kib: u64,
    /// Peak RSS of the server process at the end of the load, in KiB (largest over the rounds).
    pub server_peak_rss_kib: u64,
}

/// Push throughput vs `pgbench -M prepared` with the same SQL at the same concurrency, two interleaved
/// rounds on a fresh database each (medians); the simple protocol's rate goes in the note.
pub fn push_vs_pgbench(
    exe: &Path,
    admin_url: &str,
    concurrency: usize,
    batch: usize,
    seconds: u64,
) -> PushCell {
    let (mut ours, mut theirs, mut simple) = (Vec::new(), Vec::new(), Vec::new());
    let (mut idle, mut peak) = (0, 0);
    for round in 0..2 {
        let db = BenchDb::create(admin_url, 10 + round);
        let served = serve(exe, &db, concurrency);
        idle = served.server.rss_kib();
        ours.push(push_rate(&served, concurrency, batch, seconds));
        peak = peak.max(served.server.peak_rss_kib());
        served.server.stop();
        theirs.push(pgbench_rate(&db, concurrency, seconds));
        simple.push(pgbench_rate_simple(&db, concurrency, seconds));
    }
    let (ours, simple) = (median(ours), median(simple));
    PushCell {
        row: Row::measured(
            format!("server push, batch {batch}, concurrency {concurrency}"),
            ours,
            median(theirs),
            "sales/s",
        )
        .target(Target::RatioAtLeast(0.8))
        .note(format!(
            "vs pgbench -M prepared running the server's per-sale SQL at the same concurrency, same database; \
             against pgbench's simple protocol ({simple:.0}/s): {:.2}",
            ours / simple
        )),
        server_idle_rss_kib: idle,
        server_peak_rss_kib: peak,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Scenario 5: `pushers` concurrent pushes of one sale, `rounds` times. Asserts that every round
/// stored the sale exactly once (one `OK`, the rest `DUPLICATE`). Reports the storm's p50 and p99
/// latency against the same percentiles of one pusher sending new sales alone, same server.
pub fn duplicate_storm(exe: &Path, admin_url: &str, pushers: usize, rounds: usize) -> Vec<Row> {
    let db = BenchDb::create(admin_url, 20);
    let served = serve(exe, &db, pushers);
    let tail = envelope_tail(7);
    let alone: Vec<f64> = {
        let agent = agent();
        let mut v: Vec<f64> = (0..rounds)
            .map(|round| {
                let body = push_body("bench", &tail, &[format!("alone-{round}")]);
                let t = Instant::now();
                let (statuses, _) = push(&agent, &served, &served.token, &body);
                assert_eq!(statuses, [PushStatus::Ok], "uncontended push {round}");
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    };
    let mut storm = Vec::new();
    for round in 0..rounds {
        let barrier = Barrier::new(pushers);
        let results: Vec<(f64, Vec<PushStatus>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..pushers)
                .map(|p| {
                    // The same sale from `pushers` tills of the store at once.
                    let (device, token) = &served.pushers[p % served.pushers.len()];
                    let body = push_body(device, &tail, &[format!("storm-{round}")]);
                    let (served, barrier) = (&served, &barrier);
                    s.spawn(move || {
                        let agent = agent();
                        barrier.wait();
                        let t = Instant::now();
                        let (statuses, _) = push(&agent, served, token, &body);
                        (t.elapsed().as_secs_f64() * 1000.0, statuses)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("pusher")).collect()
        });
        let count = |want: PushStatus| results.iter().filter(|(_, s)| s.as_slice() == [want]).count();
        assert_eq!(
            (count(PushStatus::Ok), count(PushStatus::Duplicate)),
            (1, pushers - 1),
            "duplicate storm round {round}: exactly one OK, the rest DUPLICATE"
        );
        storm.extend(results.into_iter().map(|(ms, _)| ms));
    }
    served.server.stop();
    storm.sort_by(|a, b| a.total_cmp(b));
    [("p50", 0.50), ("p99", 0.99)]
        .into_iter()
        .map(|(name, p)| {
            Row::measured(
                format!("duplicate storm, {pushers} pushers of one sale, {name} latency"),
                percentile(&storm, p),
                percentile(&alone, p),
                "ms",
            )
            .note(format!(
                "exactly one OK per round checked ({rounds} rounds); baseline: one pusher alone, new sales"
            ))
        })
        .collect()
}
