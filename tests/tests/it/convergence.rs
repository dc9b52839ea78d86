//! Convergence under chaos: many tills (engines in threads, plus one OS process killed with SIGKILL
//! while it holds leases, and restarted), random triggers, a fault-injecting proxy, the server process
//! killed and restarted, a PostgreSQL crash (SIGKILL of a throwaway cluster's postmaster and all its
//! processes mid-push, then crash recovery), a restore of the database to a dump taken earlier in the
//! run (the acknowledged sales since are lost by the server and brought back by the tills),
//! connection-killing storms and injected lock contention.
//! At the end every sale is on the server exactly once, every outbox row is `sent` (or the expected
//! `conflict`), no lease is left, the verifier finds nothing missing or mismatched, and the audit trail
//! accounts for every attempt. The chaos itself is asserted too: a floor for each kind of proxy fault,
//! for lock holds and connection kills, leases held by the till at each of its kills, lock timeouts
//! answered `RETRY lock_timeout`, and failed answers while the database was down.
//!
//! Size and seed: `POSSYNC_CONVERGENCE_SALES` (default 20000) and `POSSYNC_SEED` (default: random; the
//! seed is printed so that a failing run can be replayed).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use possync_core::config::OutboxConfig;
use possync_core::engine::SyncEngine;
use possync_core::outbox::{Outbox, SaleState};
use possync_core::protocol::{canonical_json_string, payload_sha256};
use possync_core::reason::DrainReason;
use possync_core::transport::HttpTransport;
use possync_server::store::postgres::{PgOptions, PgStore};
use possync_server::store::{AdminStore, Device};
use possync_tests::cluster::Cluster;
use possync_tests::counting::{AnswerCounts, Answers, CountingTransport};
use possync_tests::leases::kill_while_leased;
use possync_tests::proxy::{FaultProxy, Mode};
use possync_tests::till::{engine_config, sale};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const THREAD_TILLS: usize = 8;
const CONFLICT_PAIRS: usize = 4;

/// A child process that is killed when dropped, so that a failing test leaves no server or till behind.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The server in its own process on a port it binds itself (no free-port guess that another test
/// could take in between); returns the process and the address from its `listening ADDR` line.
fn start_server(url: &str) -> (Proc, SocketAddr) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_possync-test-server"))
        .args([url, "127.0.0.1:0", "300"])
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start server process");
    let stdout = child.stdout.take().expect("piped stdout");
    let proc = Proc(child);
    let mut reader = std::io::BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).expect("read the server's first line");
    // Keep the pipe drained, so that a later line never meets a closed pipe.
    std::thread::spawn(move || reader.lines().for_each(drop));
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("the server process did not come up: {line:?}"));
    (proc, addr)
}

fn start_till(path: &std::path::Path, url: &str, token: &str) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_possync-test-till"))
            .args([path.to_str().expect("utf-8 path"), url, token, "till-p"])
            .spawn()
            .expect("start till process"),
    )
}

/// Waits until at least one push statement runs in the test database (the lock thread's `LOCK` aside)
/// and returns how many do.
fn pushes_in_progress(db: &postgres::Config) -> i64 {
    let mut c = db.connect(postgres::NoTls).expect("connect to watch for pushes");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND pid <> pg_backend_pid() AND state <> 'idle' AND query ILIKE '%pos_transaction%' \
                 AND query NOT ILIKE 'LOCK%'",
                &[],
            )
            .expect("pg_stat_activity")
            .get(0);
        if running > 0 {
            return running;
        }
        assert!(Instant::now() < deadline, "no push reached the database for a minute");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Clears the flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Sales the server holds.
fn sales_on_server(db: &postgres::Config) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match db
            .connect(postgres::NoTls)
            .and_then(|mut c| c.query_one("SELECT count(*) FROM pos_transactions", &[]))
        {
            Ok(row) => return row.get(0),
            Err(e) => assert!(Instant::now() < deadline, "cannot count the server's sales: {e}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A line of answer counts for the report.
fn answers_line(c: &AnswerCounts) -> String {
    format!(
        "{} requests: {} OK, {} DUPLICATE, RETRY {:?}, {} shed (429/503: {:?}), {} timeouts, {} other transport \
         errors",
        c.requests, c.ok, c.duplicate, c.retry, c.overloaded, c.shed, c.timeout, c.transport
    )
}

/// Items of the sale with global number `n` (1..=3).
fn items_of(n: i64) -> usize {
    1 + (n % 3) as usize
}

#[test]
fn every_sale_arrives_exactly_once_under_chaos() {
    let _serial = crate::exclusive();
    let total: usize =
        std::env::var("POSSYNC_CONVERGENCE_SALES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let seed: u64 =
        std::env::var("POSSYNC_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("convergence: seed {seed}, {total} sales (replay with POSSYNC_SEED={seed})");
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);

    // A throwaway cluster of the test's own, so that it may crash it.
    let cluster = Cluster::start();
    cluster
        .admin_config()
        .connect(postgres::NoTls)
        .expect("connect to the throwaway cluster")
        .batch_execute("CREATE DATABASE convergence")
        .expect("create the test database");
    let url = cluster.url("convergence");
    let db_config: postgres::Config = url.parse().expect("database url");
    let admin_store =
        PgStore::connect(db_config.clone(), &PgOptions { pool_size: 2, ..PgOptions::default() })
            .expect("store");
    admin_store.migrate().expect("migrate");
    let token_of = |device: &str| {
        let token = possync_server::auth::generate_token();
        let d = Device { store_id: "store-1".into(), device_id: device.into() };
        admin_store.create_token(&d, &possync_server::auth::token_sha256(&token), None).expect("token");
        token
    };

    let (mut server, server_addr) = start_server(&url);
    let proxy = FaultProxy::start_seeded(server_addr, seed);
    proxy.set_mode(Mode::Chaos { fault_percent: 15, stall: Duration::from_millis(2_500) });

    let dir = tempfile::tempdir().expect("tmp");
    let per_till = total / (THREAD_TILLS + 1);
    let mut next_sale = 0i64;
    let mut shares: Vec<Vec<(String, i64)>> = Vec::new();
    for _ in 0..=THREAD_TILLS {
        let share = (0..per_till)
            .map(|_| {
                next_sale += 1;
                (uuid::Uuid::now_v7().to_string(), next_sale)
            })
            .collect();
        shares.push(share);
    }
    // Deliberate conflicts: the same id with another sale on the next till.
    let mut conflicts: Vec<String> = Vec::new();
    for k in 0..CONFLICT_PAIRS {
        let id = format!("conflict-{k}");
        next_sale += 2;
        shares[k].push((id.clone(), next_sale - 1));
        shares[k + 1].push((id.clone(), next_sale));
        conflicts.push(id);
    }

    // The till that runs as its own OS process: its outbox is filled by this test.
    let process_path = dir.path().join("till-p.db");
    let process_outbox = Outbox::open(&process_path, OutboxConfig::default()).expect("process outbox");
    let process_token = token_of("till-p");
    let mut process_till = start_till(&process_path, &proxy.url(), &process_token);

    let chaos_on = Arc::new(AtomicBool::new(true));
    // What the thread tills were answered (the process till's answers stay in its process).
    let answers = Answers::default();
    let engines: Vec<(Arc<Outbox>, SyncEngine)> = (0..THREAD_TILLS)
        .map(|k| {
            let device = format!("till-{k}");
            let outbox = Arc::new(
                Outbox::open(dir.path().join(format!("{device}.db")), OutboxConfig::default())
                    .expect("outbox"),
            );
            let config = engine_config(&proxy.url(), &token_of(&device), &device);
            let transport =
                Arc::new(CountingTransport::new(HttpTransport::new(&config.sync), answers.clone()));
            let engine = SyncEngine::start(outbox.clone(), transport, config, None).expect("engine");
            (outbox, engine)
        })
        .collect();

    let mut chaos_log: Vec<String> = Vec::new();
    let mut leased_at_kills: Vec<u64> = Vec::new();
    let mut connections_killed = 0i64;
    // Answers before the database crash, at its restart, and 3 s after the restart.
    let mut around_crash: Vec<AnswerCounts> = Vec::new();
    let mut crash_restarted: Option<Instant> = None;
    let mut lock_holds = 0u32;
    let mut restored_away = 0i64;
    let mut dumped_rows = 0i64;
    let thread_seeds: Vec<u64> = (0..THREAD_TILLS).map(|_| rng.random()).collect();
    std::thread::scope(|s| {
        // Ends the lock thread also when this thread panics (else the scope would wait for it forever).
        let _stop_chaos = StopOnDrop(&chaos_on);
        // Lock contention: hold an exclusive lock on the headers longer than the server's lock timeout.
        let locker = s.spawn(|| {
            let mut held = 0;
            while chaos_on.load(Ordering::SeqCst) {
                if let Ok(mut c) = db_config.connect(postgres::NoTls) {
                    if let Ok(mut tx) = c.transaction() {
                        if tx.batch_execute("LOCK TABLE pos_transactions IN SHARE ROW EXCLUSIVE MODE").is_ok()
                        {
                            held += 1;
                            std::thread::sleep(Duration::from_millis(450));
                        }
                        let _ = tx.rollback();
                    }
                }
                std::thread::sleep(Duration::from_millis(900));
            }
            held
        });

        // Tills in threads: record sales with random triggers in between.
        let writers: Vec<_> = engines
            .iter()
            .zip(&shares)
            .zip(&thread_seeds)
            .map(|(((outbox, engine), share), seed)| {
                s.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(*seed);
                    for (i, (id, n)) in share.iter().enumerate() {
                        outbox.enqueue_with_id(id, &sale(*n, items_of(*n))).expect("enqueue");
                        if i % 40 == 0 {
                            match rng.random_range(0..10) {
                                0 => drop(engine.sync_now(Duration::from_secs(3))),
                                1..=3 => engine.trigger(DrainReason::Focus),
                                4..=5 => engine.trigger(DrainReason::Online),
                                _ => engine.trigger(DrainReason::Manual),
                            }
                        }
                    }
                })
            })
            .collect();

        // The process till's sales, with two SIGKILLs of that process (each while it holds leases), one
        // of the server, and one of the database in between.
        let share = &shares[THREAD_TILLS];
        let kill_at = [share.len() / 4, share.len() / 2, (share.len() * 5) / 8, (share.len() * 3) / 4];
        // The nightly backup, and its restore later: every sale acknowledged in between is lost by the
        // server and brought back by the tills that keep it.
        let (dump_at, restore_at) = ((share.len() * 11) / 16, (share.len() * 7) / 8);
        let dump_file = dir.path().join("convergence.dump");
        for (i, (id, n)) in share.iter().enumerate() {
            process_outbox.enqueue_with_id(id, &sale(*n, items_of(*n))).expect("enqueue");
            if i == kill_at[0] || i == kill_at[3] {
                let leased = kill_while_leased(&mut process_till.0, &process_path, 1).rows;
                leased_at_kills.push(leased);
                chaos_log
                    .push(format!("SIGKILL till process at its sale {i}, holding {leased} leased sale(s)"));
                std::thread::sleep(Duration::from_millis(rng.random_range(50..400)));
                process_till = start_till(&process_path, &proxy.url(), &process_token);
            }
            if i == kill_at[1] {
                let _ = server.0.kill();
                let _ = server.0.wait();
                chaos_log.push(format!("SIGKILL server at till-p sale {i}"));
                std::thread::sleep(Duration::from_millis(rng.random_range(100..800)));
                // A new port: the tills reach the server through the proxy, which follows it.
                let (restarted, addr) = start_server(&url);
                server = restarted;
                proxy.set_upstream(addr);
                // A storm of killed database connections right after the restart.
                for _ in 0..3 {
                    if let Ok(mut c) = db_config.connect(postgres::NoTls) {
                        let killed = c
                            .query_one(
                                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                                &[],
                            )
                            .map(|r| r.get::<_, i64>(0))
                            .unwrap_or(0);
                        connections_killed += killed;
                        chaos_log.push(format!("pg_terminate_backend storm: {killed} connection(s)"));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            if i == kill_at[2] {
                // A PostgreSQL crash mid-push: the postmaster and every process it forked, SIGKILL.
                // Mid-push: wait until a push statement is running (not the lock thread's), then crash.
                let in_progress = pushes_in_progress(&db_config);
                around_crash.push(answers.snapshot());
                let crashed_at = Instant::now();
                let killed = cluster.crash();
                std::thread::sleep(Duration::from_millis(rng.random_range(300..1_500)));
                cluster.start_again();
                around_crash.push(answers.snapshot());
                crash_restarted = Some(Instant::now());
                chaos_log.push(format!(
                    "PostgreSQL crash at till-p sale {i} with {in_progress} push statement(s) running: SIGKILL \
                     of the postmaster and {} other process(es); back after crash recovery in {:.1} s",
                    killed - 1,
                    crashed_at.elapsed().as_secs_f64()
                ));
            }
            if i == dump_at {
                crate::restore::pg_dump(&url, &dump_file);
                dumped_rows = sales_on_server(&db_config);
                chaos_log.push(format!("pg_dump at till-p sale {i}: {dumped_rows} sale(s) on the server"));
            }
            if i == restore_at {
                // Something must have been acknowledged since the dump, or the restore proves nothing:
                // the tills may all be between kills and restarts here, so wait (bounded) until the
                // server holds more than the dump did. The process till has unsent sales to push.
                let since_dump = Instant::now();
                while sales_on_server(&db_config) <= dumped_rows
                    && since_dump.elapsed() < Duration::from_secs(60)
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = server.0.kill();
                let _ = server.0.wait();
                let before = sales_on_server(&db_config);
                crate::restore::pg_restore(&cluster.admin_config(), "convergence", &url, &dump_file);
                let after = sales_on_server(&db_config);
                restored_away = before - after;
                let (restarted, addr) = start_server(&url);
                server = restarted;
                proxy.set_upstream(addr);
                chaos_log.push(format!(
                    "restore at till-p sale {i}: the database rolled back to the dump ({after} sale(s), \
                     {restored_away} acknowledged sale(s) lost); server restarted"
                ));
            }
            if around_crash.len() == 2
                && crash_restarted.is_some_and(|t| t.elapsed() >= Duration::from_secs(3))
            {
                around_crash.push(answers.snapshot());
            }
        }
        while around_crash.len() < 3 {
            let wait = crash_restarted.map(|t| Duration::from_secs(3).saturating_sub(t.elapsed()));
            std::thread::sleep(wait.unwrap_or_default());
            around_crash.push(answers.snapshot());
        }
        for w in writers {
            w.join().expect("till thread");
        }
        chaos_on.store(false, Ordering::SeqCst);
        lock_holds = locker.join().expect("locker");
        chaos_log.push(format!("lock contention: table locked {lock_holds} time(s)"));
    });
    let recorded = started.elapsed();

    // Faults stop; every till converges.
    proxy.set_mode(Mode::Pass);
    let chaos_stats = proxy.stats();
    let chaos_answers = answers.snapshot();
    // Generous: a debug build on two shared cores settles a few hundred sales per second.
    let deadline = Instant::now() + Duration::from_secs(60 + total as u64 / 100);
    let expected_sales = per_till * (THREAD_TILLS + 1) + CONFLICT_PAIRS;
    let mut last_report = Instant::now();
    loop {
        std::thread::scope(|s| {
            for (_, engine) in &engines {
                s.spawn(move || drop(engine.sync_now(Duration::from_secs(30))));
            }
        });
        let unsent: u64 = engines.iter().map(|(o, _)| o.counts().expect("counts").unsent()).sum::<u64>()
            + process_outbox.counts().expect("counts").unsent();
        // Nothing unsent is not enough after the restore: a till learns what the server lost with its
        // next request, so wait until the server holds every sale once more.
        if unsent == 0 && sales_on_server(&db_config) >= expected_sales as i64 {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!("convergence: {unsent} sale(s) unsent at {:.0} s", started.elapsed().as_secs_f64());
            last_report = Instant::now();
        }
        assert!(Instant::now() < deadline, "no convergence: {unsent} sale(s) still unsent");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(process_till);
    for (_, engine) in &engines {
        engine.shutdown();
    }
    let converged = started.elapsed();

    // 1. Every outbox row is sent, except exactly one side of each deliberate conflict.
    let mut outboxes: Vec<(&Outbox, String)> =
        engines.iter().enumerate().map(|(k, (o, _))| (o.as_ref(), format!("till-{k}"))).collect();
    outboxes.push((&process_outbox, "till-p".into()));
    let mut expected: HashMap<String, (i64, String)> = HashMap::new(); // id -> (sale number, hash) of what is stored
    let mut conflict_rows = 0;
    for ((outbox, device), share) in outboxes.iter().zip(&shares) {
        let counts = outbox.counts().expect("counts");
        assert_eq!((counts.pending, counts.in_flight, counts.invalid), (0, 0, 0), "{device}: {counts:?}");
        let numbers: HashMap<&str, i64> = share.iter().map(|(id, n)| (id.as_str(), *n)).collect();
        for e in outbox.summaries().expect("summaries") {
            match e.state {
                SaleState::Sent => {
                    let n = numbers[e.client_tx_id.as_str()];
                    let previous = expected.insert(e.client_tx_id.clone(), (n, e.payload_sha256.clone()));
                    assert!(previous.is_none(), "{} sent by two tills", e.client_tx_id);
                }
                SaleState::Conflict => {
                    assert!(conflicts.contains(&e.client_tx_id), "unexpected conflict {}", e.client_tx_id);
                    conflict_rows += 1;
                }
                other => panic!("{device}: {} left {other:?}", e.client_tx_id),
            }
        }
        let report = possync_server::verify::verify(
            &admin_store,
            outbox,
            None,
            Some(&Device { store_id: "store-1".into(), device_id: device.clone() }),
        )
        .expect("verify");
        assert!(report.is_clean(), "{device}: {report:?}");
        assert!(
            report.extra.is_empty(),
            "{device}: sales on the server that the outbox lacks: {:?}",
            report.extra
        );
    }
    assert_eq!(conflict_rows, CONFLICT_PAIRS, "exactly one side of each conflict pair");
    assert_eq!(expected.len(), per_till * (THREAD_TILLS + 1) + CONFLICT_PAIRS);

    // 2. The server holds each sale exactly once, with all its items and payments, and nothing else.
    let mut c = db_config.connect(postgres::NoTls).expect("connect to the test database");
    let rows = c
        .query(
            "SELECT t.client_tx_id, t.payload_sha256, \
               (SELECT count(*) FROM pos_transaction_items i \
                 WHERE i.store_id = t.store_id AND i.client_tx_id = t.client_tx_id), \
               (SELECT count(*) FROM pos_transaction_payments p \
                 WHERE p.store_id = t.store_id AND p.client_tx_id = t.client_tx_id) \
             FROM pos_transactions t",
            &[],
        )
        .expect("server sales");
    assert_eq!(rows.len(), expected.len(), "server headers vs sales sent");
    for row in &rows {
        let id: String = row.get(0);
        let (n, hash) = expected.get(&id).unwrap_or_else(|| panic!("server holds unknown sale {id}"));
        assert_eq!(&row.get::<_, String>(1), hash, "{id}");
        let canonical = canonical_json_string(&sale(*n, items_of(*n))).expect("canonical");
        assert_eq!(hash, &payload_sha256(canonical.as_bytes()), "{id}: stored hash is the sale's");
        assert_eq!((row.get::<_, i64>(2), row.get::<_, i64>(3)), (items_of(*n) as i64, 2), "{id}");
    }

    // 3. The audit trail: exactly one OK per sale, every other decided attempt a DUPLICATE (or the
    //    CONFLICT of a deliberate pair), and never more decided attempts than the tills made.
    let audit = c
        .query(
            "SELECT client_tx_id, count(*) FILTER (WHERE outcome = 'OK'), \
               count(*) FILTER (WHERE outcome = 'DUPLICATE'), count(*) FILTER (WHERE outcome = 'CONFLICT'), \
               count(*) FILTER (WHERE outcome = 'INVALID') \
             FROM pos_transaction_audit GROUP BY client_tx_id",
            &[],
        )
        .expect("audit");
    let mut attempts: HashMap<String, u32> = HashMap::new();
    for (outbox, _) in &outboxes {
        for e in outbox.summaries().expect("summaries") {
            *attempts.entry(e.client_tx_id).or_default() += e.attempt;
        }
    }
    let mut duplicates = 0i64;
    let conflict_set: HashSet<&String> = conflicts.iter().collect();
    assert_eq!(audit.len(), expected.len());
    for row in &audit {
        let id: String = row.get(0);
        let (ok, dup, conflict, invalid): (i64, i64, i64, i64) =
            (row.get(1), row.get(2), row.get(3), row.get(4));
        assert_eq!((ok, invalid), (1, 0), "{id}: exactly one OK");
        assert_eq!(conflict > 0, conflict_set.contains(&id), "{id}: CONFLICT only for the deliberate pairs");
        assert!((ok + dup + conflict) as u32 <= attempts[&id], "{id}: more decided attempts than sends");
        duplicates += dup;
    }

    // 4. The chaos happened: a floor for each kind of fault (a run without it would prove nothing).
    let proxied: u64 = chaos_stats.values().sum();
    // Each fault kind is 3 % of requests (15 % spread over five): a quarter of that is > 4 standard
    // deviations below the mean at CI size and above.
    let floor = ((proxied as f64 * 0.03 / 4.0) as u64).max(1);
    for kind in ["delay", "drop_before_forward", "cut_after_forward", "unavailable_503", "stall"] {
        let n = chaos_stats.get(kind).copied().unwrap_or(0);
        assert!(n >= floor, "proxy fault {kind}: {n} of {proxied} requests, expected at least {floor}");
    }
    assert!(lock_holds >= 3, "the lock thread held the table only {lock_holds} time(s)");
    let lock_timeouts = chaos_answers.retry.get("lock_timeout").copied().unwrap_or(0);
    assert!(lock_timeouts >= 1, "no lock timeout came back as RETRY: {chaos_answers:?}");
    assert!(connections_killed >= 1, "the connection storms killed no connection");
    assert_eq!(leased_at_kills.len(), 2, "two kills of the till process");
    let (during, after) = (around_crash[1].since(&around_crash[0]), around_crash[2].since(&around_crash[1]));
    // Only answers the crash causes count: the database unreachable (RETRY or 503
    // `database_unavailable`, a connection lost), not the proxy's own 503s and drops, nor lock
    // timeouts.
    let crash_answers = during.database_unreachable() + after.database_unreachable();
    assert!(crash_answers >= 1, "the database crash did not reach a push: {during:?} {after:?}");
    assert!(dumped_rows > 0, "the dump was taken");
    assert!(restored_away >= 1, "the restore lost no acknowledged sale: it proved nothing");

    eprintln!(
        "convergence: seed {seed}: {} sales on the server exactly once ({} items), {conflict_rows} deliberate \
         conflicts, {duplicates} replays answered DUPLICATE; recorded in {:.1} s, converged at {:.1} s",
        expected.len(),
        rows.iter().map(|r| r.get::<_, i64>(2)).sum::<i64>(),
        recorded.as_secs_f64(),
        converged.as_secs_f64()
    );
    eprintln!("convergence: proxy decisions during the chaos {chaos_stats:?} (floor per fault {floor})");
    eprintln!("convergence: thread tills' answers during the chaos: {}", answers_line(&chaos_answers));
    eprintln!("convergence: answers while PostgreSQL was down (crash to restart): {}", answers_line(&during));
    eprintln!("convergence: answers in the 3 s after its restart: {}", answers_line(&after));
    eprintln!(
        "convergence: leased sales at the till's kills {leased_at_kills:?}; {lock_timeouts} RETRY lock_timeout; \
         {connections_killed} connection(s) killed by storms"
    );
    for line in chaos_log {
        eprintln!("convergence: {line}");
    }
    drop(server);
}

/// The throwaway cluster the chaos test crashes: every transaction committed before a crash is there
/// after crash recovery, three crashes in a row, while a writer keeps committing.
#[test]
fn throwaway_cluster_keeps_every_commit_through_crashes() {
    let _serial = crate::exclusive();
    let cluster = Cluster::start();
    let mut admin = cluster.admin_config().connect(postgres::NoTls).expect("connect");
    admin.batch_execute("CREATE TABLE t (n bigint PRIMARY KEY)").expect("create table");
    let mut committed = 0i64;
    for round in 0..3 {
        let stop = AtomicBool::new(false);
        let last = std::thread::scope(|s| {
            let writer = s.spawn(|| {
                let mut c = cluster.admin_config().connect(postgres::NoTls).expect("connect");
                let mut n = committed;
                while !stop.load(Ordering::SeqCst) {
                    if c.execute("INSERT INTO t VALUES ($1)", &[&(n + 1)]).is_err() {
                        break; // the crash
                    }
                    n += 1;
                }
                n
            });
            std::thread::sleep(Duration::from_millis(300));
            let killed = cluster.crash();
            assert!(killed >= 2, "round {round}: the postmaster and its processes");
            stop.store(true, Ordering::SeqCst);
            writer.join().expect("writer")
        });
        cluster.start_again();
        admin = cluster.admin_config().connect(postgres::NoTls).expect("connect after recovery");
        let max: Option<i64> = admin.query_one("SELECT max(n) FROM t", &[]).expect("max").get(0);
        assert!(max.unwrap_or(0) >= last, "round {round}: committed up to {last}, found {max:?}");
        assert!(last > committed, "round {round}: the writer committed something");
        committed = max.unwrap_or(0);
    }
}
