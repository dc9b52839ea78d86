//! Scenario 10: the server's database restored from a backup. Many tills push a first share of their
//! sales, the nightly `pg_dump` is taken, then they push their sales of the day fresh (the baseline);
//! the database is then restored to that dump as docs/deploy.md says (`pg_restore`, `ANALYZE`) and the
//! server restarted; the same tills bring every acknowledged sale back by themselves (a report-only
//! request, the server's `resend` answer, the sales sent again). Both phases run the same tills the
//! same way (a drain loop per till on its own thread, waiting out shedding), so the ratio is the cost
//! of recovery against pushing the same sales for the first time. Each phase ends with every sale
//! on the server exactly once.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use possync_core::config::{Durability, OutboxConfig, SyncConfig};
use possync_core::drain::{DrainHooks, DrainStop, Drainer};
use possync_core::outbox::Outbox;
use possync_core::reason::DrainReason;
use possync_core::transport::HttpTransport;
use possync_server::auth::{generate_token, token_sha256};
use possync_server::store::postgres::{PgOptions, PgStore};
use possync_server::store::{AdminStore, Device};

use crate::child::ServerProcess;
use crate::outbox::sample_sale;
use crate::server::BenchDb;
use crate::{Row, Target};

/// What the restore scenario measured.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// Seconds for every till to push its sales fresh.
    pub fresh_seconds: f64,
    /// Seconds from the restarted server to every acknowledged sale back on it.
    pub recovery_seconds: f64,
    /// Sales the restore lost and the tills sent again.
    pub resent: u64,
    /// Whether both phases ended with every sale on the server exactly once.
    pub exactly_once: bool,
}

fn pg_tool(name: &str) -> String {
    for dir in ["/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path.display().to_string();
        }
    }
    name.to_owned()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Sales each till pushed before the nightly dump (they survive the restore).
const BEFORE_DUMP: usize = 200;

/// Every till drains until nothing is unsent (and, in the recovery phase, until it has sent again what
/// the server lost), each on its own thread, waiting out the server's `Retry-After` after a run it
/// shed (spread as an engine spreads it); returns the wall time and the sales sent again.
fn drain_all(tills: &[(Arc<Outbox>, SyncConfig)], recovery: bool) -> (f64, u64) {
    let started = Instant::now();
    let resent: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = tills
            .iter()
            .map(|(outbox, config)| {
                s.spawn(move || {
                    let transport = HttpTransport::new(config);
                    let drainer = Drainer::new(outbox, &transport, config).expect("drainer");
                    let mut resent = 0;
                    let deadline = Instant::now() + Duration::from_secs(600);
                    loop {
                        let reason = if recovery { DrainReason::Interval } else { DrainReason::Manual };
                        let report = drainer.drain(reason.into(), DrainHooks::default()).expect("drain");
                        resent += report.resent;
                        if report.stop.is_none() && report.remaining_pending == 0 && (!recovery || resent > 0)
                        {
                            return resent;
                        }
                        assert!(Instant::now() < deadline, "a till did not finish: {report:?}");
                        // As an engine does: the server's Retry-After, spread over [r, 2r]; else 200 ms.
                        let wait = match &report.stop {
                            Some(DrainStop::Offline { error }) => {
                                error.retry_after_ms().map(|r| r + rand::random_range(0..=r)).unwrap_or(200)
                            }
                            _ => 200,
                        };
                        std::thread::sleep(Duration::from_millis(wait));
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("till thread")).sum()
    });
    (started.elapsed().as_secs_f64(), resent)
}

fn sales_on(db: &BenchDb) -> (i64, i64) {
    let mut c = db.config.connect(postgres::NoTls).expect("connect");
    let row = c
        .query_one("SELECT count(*), count(DISTINCT (store_id, client_tx_id)) FROM pos_transactions", &[])
        .expect("count");
    (row.get(0), row.get(1))
}

/// Runs scenario 10 with `tills` tills of `sales` sales each.
///
/// # Panics
/// When PostgreSQL's tools or the server cannot be run: the result would be meaningless.
pub fn restore_rows(
    exe: &Path,
    dir: &Path,
    admin_url: &str,
    tills: usize,
    sales: usize,
) -> (RestoreReport, Row) {
    let db = BenchDb::create(admin_url, 100);
    let store = PgStore::connect(db.config.clone(), &PgOptions { pool_size: 2, ..PgOptions::default() })
        .expect("store");
    store.migrate().expect("migrate");
    let workers = possync_server::settings::workers_for(0);
    let mut server = ServerProcess::start(exe, &db.url, workers, workers as u32 + 2);
    let outbox_config = OutboxConfig { durability: Durability::Normal, ..OutboxConfig::default() };
    let mut list = Vec::with_capacity(tills);
    for t in 0..tills {
        let device = format!("till-{t}");
        let token = generate_token();
        let d = Device { store_id: "store-1".into(), device_id: device.clone() };
        store.create_token(&d, &token_sha256(&token), None).expect("token");
        let outbox = Arc::new(
            Outbox::open(dir.join(format!("restore-{device}.db")), outbox_config.clone()).expect("outbox"),
        );
        for i in 0..BEFORE_DUMP {
            outbox.enqueue(&sample_sale((t * (sales + BEFORE_DUMP) + i) as i64)).expect("enqueue");
        }
        list.push((outbox, SyncConfig::new(server.base.clone(), token, device)));
    }
    drop(store);
    drain_all(&list, false);
    // The nightly backup, with the sales so far.
    let dump = dir.join("restore.dump");
    run(Command::new(pg_tool("pg_dump")).args(["-Fc", "-f"]).arg(&dump).arg(&db.url));
    for (t, (outbox, _)) in list.iter().enumerate() {
        for i in BEFORE_DUMP..BEFORE_DUMP + sales {
            outbox.enqueue(&sample_sale((t * (sales + BEFORE_DUMP) + i) as i64)).expect("enqueue");
        }
    }

    let (fresh_seconds, _) = drain_all(&list, false);
    let before = (tills * BEFORE_DUMP) as i64;
    let total = (tills * (sales + BEFORE_DUMP)) as i64;
    let fresh_once = sales_on(&db) == (total, total);

    // The restore: server stopped, database dropped and restored, server started again (same port).
    let port: u16 = server.base.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    server.stop();
    let admin: postgres::Config = admin_url.parse().expect("url");
    let mut c = admin.connect(postgres::NoTls).expect("admin");
    c.batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", db.name)).expect("drop");
    c.batch_execute(&format!("CREATE DATABASE {}", db.name)).expect("create");
    run(Command::new(pg_tool("pg_restore")).args(["--no-owner", "-d", &db.url]).arg(&dump));
    run(Command::new(pg_tool("vacuumdb")).args(["--analyze-only", "--dbname", &db.url]));
    assert_eq!(sales_on(&db).0, before, "the restore went back to the dump");
    server = ServerProcess::start_on(exe, &db.url, workers, workers as u32 + 2, port);

    let (recovery_seconds, resent) = drain_all(&list, true);
    let exactly_once = fresh_once && sales_on(&db) == (total, total) && resent == (total - before) as u64;
    server.stop();
    let report = RestoreReport { fresh_seconds, recovery_seconds, resent, exactly_once };
    let row = Row::measured(
        format!("restore: {tills} tills × {sales} acknowledged sales back after a restore"),
        recovery_seconds,
        fresh_seconds,
        "s",
    )
    .target(Target::RatioAtMost(2.0))
    .note(format!(
        "the same sales pushed fresh in the same run; {resent} sent again, {}",
        if exactly_once { "exactly once" } else { "NOT exactly once" }
    ));
    (report, row)
}
