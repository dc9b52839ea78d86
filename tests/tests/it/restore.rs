//! The server's database loses its last hours; the shop loses no sale. Tills push, the database is
//! backed up, more sales are pushed and acknowledged, the backup is restored (PostgreSQL: `pg_dump`,
//! the database dropped, `pg_restore`; SQLite: a `VACUUM INTO` copy put back), and the server
//! restarts. One run of each till later every sale is on the server exactly once; meanwhile `gaps`
//! and `/metrics` count the acknowledged sales that are missing, and afterwards none.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use possync_core::config::OutboxConfig;
use possync_core::outbox::Outbox;
use possync_core::reason::DrainReason;
use possync_server::auth::{generate_token, token_sha256};
use possync_server::http::{self, HttpConfig, RunningServer};
use possync_server::store::postgres::PgStore;
use possync_server::store::sqlite::{SqliteOptions, SqliteStore};
use possync_server::store::{Device, GapKind, Store};
use possync_tests::server::{admin_url, test_http_config, test_pg_options, TestDb};
use possync_tests::till::{drain_once, sale, sync_config};

const TILLS: usize = 3;

/// Where the shop's data lives, and how to open a store on it.
enum Backing<'a> {
    Pg(&'a TestDb),
    Sqlite(PathBuf),
}

impl Backing<'_> {
    fn open(&self) -> Arc<dyn Store> {
        match self {
            Backing::Pg(db) => {
                let store = PgStore::connect(db.config.clone(), &test_pg_options()).expect("connect");
                store.migrate().expect("migrate");
                Arc::new(store)
            }
            Backing::Sqlite(path) => {
                let store = SqliteStore::open(path, true, &SqliteOptions::default()).expect("open");
                store.migrate().expect("migrate");
                Arc::new(store)
            }
        }
    }
}

/// A shop server that can be stopped and started again on the same address, as after a restore.
struct Shop<'a> {
    backing: Backing<'a>,
    addr: SocketAddr,
    store: Arc<dyn Store>,
    server: Option<RunningServer>,
}

impl<'a> Shop<'a> {
    fn start(backing: Backing<'a>) -> Shop<'a> {
        let store = backing.open();
        let server = http::start(store.clone(), test_http_config()).expect("start");
        let addr = server.local_addr();
        Shop { backing, addr, store, server: Some(server) }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }

    fn restart(&mut self) {
        self.stop();
        self.store = self.backing.open();
        let config = HttpConfig { listen: self.addr, ..test_http_config() };
        self.server = Some(http::start(self.store.clone(), config).expect("restart on the same address"));
    }

    fn flush_activity(&self) {
        self.server.as_ref().expect("running").flush_activity();
    }

    fn token(&self, device: &str) -> String {
        let token = generate_token();
        let device = Device { store_id: "store-1".into(), device_id: device.into() };
        self.store.create_token(&device, &token_sha256(&token), None).expect("token");
        token
    }

    /// The per-device gauge `name` of `device` once it shows `want` (the gauges are computed off the
    /// scrape and may be up to 0.5 s old); the last value seen after 10 s otherwise.
    fn metric(&self, name: &str, device: &str, want: f64) -> Option<f64> {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let text = agent
                .get(format!("{}/metrics", self.base()))
                .call()
                .expect("GET /metrics")
                .body_mut()
                .read_to_string()
                .expect("metrics text");
            let got = text
                .lines()
                .find(|l| l.starts_with(name) && l.contains(&format!("device_id=\"{device}\"")))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok());
            if got == Some(want) || std::time::Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for Shop<'_> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A till: its outbox and token.
struct Till {
    device: String,
    token: String,
    outbox: Outbox,
}

impl Till {
    fn record(&self, n: i64, seed: i64) {
        for i in 0..n {
            self.outbox.enqueue(&sale(seed + i, 1 + (i as usize % 3))).expect("enqueue");
        }
    }

    fn run(&self, shop: &Shop<'_>, reason: DrainReason) -> possync_core::drain::DrainReport {
        drain_once(&self.outbox, &sync_config(&shop.base(), &self.token, &self.device), reason)
    }
}

fn tills(shop: &Shop<'_>, dir: &Path) -> Vec<Till> {
    (1..=TILLS)
        .map(|n| {
            let device = format!("till-{n}");
            let outbox =
                Outbox::open(dir.join(format!("{device}.db")), OutboxConfig::default()).expect("open");
            Till { token: shop.token(&device), device, outbox }
        })
        .collect()
}

/// Every sale of every till is on the server exactly once, whole, and marked sent on the till.
fn assert_exactly_once(shop: &Shop<'_>, tills: &[Till], total: i64) {
    let mut checked = 0;
    for till in tills {
        let device = Device { store_id: "store-1".into(), device_id: till.device.clone() };
        let report =
            possync_server::verify::verify(&*shop.store, &till.outbox, Some("store-1"), Some(&device))
                .expect("verify");
        assert!(report.is_clean(), "{}: {report:?}", till.device);
        assert_eq!(report.unsent_not_on_server, 0, "{}: {report:?}", till.device);
        assert_eq!(till.outbox.counts().expect("counts").unsent(), 0, "{}", till.device);
        checked += report.checked as i64;
    }
    assert_eq!(checked, total);
}

fn sent(till: &Till, report: &possync_core::drain::DrainReport, n: u64) {
    assert_eq!(report.sent + report.duplicate, n, "{}: {report:?}", till.device);
}

/// The restore scenario on either store: `backup` copies the data after the first 40 sales of each
/// till, `restore` puts the copy back while the server is stopped.
fn a_restore_loses_nothing(mut shop: Shop<'_>, backup: &dyn Fn(&Path), restore: &dyn Fn(&Path)) {
    let dir = tempfile::tempdir().expect("tmp");
    let tills = tills(&shop, dir.path());
    for (i, till) in tills.iter().enumerate() {
        till.record(40, 1_000 * i as i64);
        let report = till.run(&shop, DrainReason::Manual);
        sent(till, &report, 40);
    }
    shop.flush_activity();
    let copy = dir.path().join("backup");
    backup(&copy);
    for (i, till) in tills.iter().enumerate() {
        till.record(40, 1_000 * i as i64 + 40);
        let report = till.run(&shop, DrainReason::Manual);
        sent(till, &report, 40);
    }
    assert_exactly_once(&shop, &tills, 240);

    shop.stop();
    restore(&copy);
    shop.restart();
    let report = possync_server::verify::verify(&*shop.store, &tills[0].outbox, Some("store-1"), None)
        .expect("verify");
    assert_eq!(report.missing.len(), 40, "the restore lost till-1's last 40 acknowledged sales");

    // till-2 has nothing new: its run sends one report-only request and learns what the server
    // lacks. Before it sends them, the detector counts them (a till's word that they are missing is
    // enough to say "not all clear"; only what the server holds clears them).
    let till2 = &tills[1];
    let report = possync_core::drain::Drainer::new(
        &till2.outbox,
        &BrokenAfterCheck::new(&sync_config(&shop.base(), &till2.token, &till2.device)),
        &sync_config(&shop.base(), &till2.token, &till2.device),
    )
    .expect("drainer")
    .drain(DrainReason::Interval.into(), Default::default())
    .expect("drain");
    assert_eq!(report.resent, 40, "{report:?}");
    shop.flush_activity();
    let gaps = shop.store.seq_gaps(None).expect("gaps");
    let resending: Vec<_> = gaps
        .iter()
        .filter(|g| g.kind == GapKind::Resending)
        .map(|g| (g.device_id.as_str(), g.from, g.to))
        .collect();
    assert_eq!(resending, vec![("till-2", 41, 80)], "{gaps:?}");
    assert_eq!(shop.metric("possync_device_resending_sales", "till-2", 40.0), Some(40.0));
    assert_eq!(
        possync_server::console::views::gap_sentence(&gaps[0], "sales 41–80"),
        "sales 41–80 acknowledged to till-2 and not on the server; being re-sent"
    );

    // Every till runs as usual (till-1 and till-3 recorded 10 more): one run brings everything back.
    for (i, till) in tills.iter().enumerate() {
        till.record(10, 1_000 * i as i64 + 80);
        let report = till.run(&shop, DrainReason::Interval);
        assert_eq!(report.settled(), 50, "{}: 40 acknowledged again and 10 new: {report:?}", till.device);
        assert!(report.stop.is_none(), "{report:?}");
    }
    assert_exactly_once(&shop, &tills, 270);
    shop.flush_activity();
    assert!(shop.store.seq_gaps(None).expect("gaps").is_empty(), "all clear, now truly");
    assert_eq!(shop.metric("possync_device_missing_sales", "till-2", 0.0), Some(0.0));
    // A later run finds nothing missing: no sale is sent twice.
    for till in &tills {
        let report = till.run(&shop, DrainReason::Interval);
        assert_eq!((report.resent, report.settled()), (0, 0), "{report:?}");
    }
}

/// A transport that answers the first (report-only) request and then fails: the till learns what
/// the server lacks and queues it, but cannot send it yet, so the test can look at the detector.
struct BrokenAfterCheck {
    inner: possync_core::transport::HttpTransport,
    calls: std::sync::atomic::AtomicU32,
}

impl BrokenAfterCheck {
    fn new(config: &possync_core::config::SyncConfig) -> Self {
        BrokenAfterCheck {
            inner: possync_core::transport::HttpTransport::new(config),
            calls: Default::default(),
        }
    }
}

impl possync_core::transport::Transport for BrokenAfterCheck {
    fn push(
        &self,
        request: &possync_core::protocol::PushRequest,
        correlation_id: &str,
    ) -> Result<possync_core::protocol::PushResponse, possync_core::transport::TransportError> {
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(request.transactions.is_empty(), "nothing was due: a report-only request");
            self.inner.push(request, correlation_id)
        } else {
            Err(possync_core::transport::TransportError::Unreachable("cut by the test".into()))
        }
    }
}

/// A PostgreSQL client tool, found where the throwaway clusters' binaries are.
fn pg_tool(name: &str) -> PathBuf {
    possync_tests::cluster::bin_dir().join(name)
}

fn run_tool(cmd: &mut std::process::Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (PostgreSQL's client tools are needed)"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `pg_dump -Fc` of the database at `url` into `file`, as a shop's nightly backup.
pub(crate) fn pg_dump(url: &str, file: &Path) {
    run_tool(std::process::Command::new(pg_tool("pg_dump")).args(["-Fc", "-f"]).arg(file).arg(url));
}

/// Restores `file` (from [`pg_dump`]) as deploy.md says: the database `name` is dropped (its
/// connections closed) and created again through `admin`, then `pg_restore` fills it (`url`).
pub(crate) fn pg_restore(admin: &postgres::Config, name: &str, url: &str, file: &Path) {
    let mut c = admin.connect(postgres::NoTls).expect("admin connection");
    c.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)")).expect("drop");
    c.batch_execute(&format!("CREATE DATABASE {name}")).expect("create");
    run_tool(std::process::Command::new(pg_tool("pg_restore")).args(["--no-owner", "-d", url]).arg(file));
    // As deploy.md says: the planner needs the restored tables' statistics.
    admin
        .clone()
        .dbname(name)
        .connect(postgres::NoTls)
        .expect("restored db")
        .batch_execute("ANALYZE")
        .expect("analyze");
}

#[test]
fn a_restored_postgres_backup_loses_no_sale_the_tills_keep() {
    let _serial = crate::shared();
    let db = TestDb::create();
    let url = possync_tests::server::db_url(&db);
    let backup = |file: &Path| pg_dump(&url, file);
    let admin: postgres::Config = admin_url().parse().expect("url");
    let restore = |file: &Path| pg_restore(&admin, &db.name, &url, file);
    a_restore_loses_nothing(Shop::start(Backing::Pg(&db)), &backup, &restore);
}

#[test]
fn a_restored_sqlite_copy_loses_no_sale_the_tills_keep() {
    let _serial = crate::shared();
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("shop.db");
    let backup = |file: &Path| {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute("VACUUM INTO ?1", [file.to_str().expect("utf-8")]).expect("VACUUM INTO");
    };
    let restore = |file: &Path| {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        std::fs::copy(file, &path).expect("put the copy back");
    };
    a_restore_loses_nothing(Shop::start(Backing::Sqlite(path.clone())), &backup, &restore);
}
