//! The pg_auto_failover formation harness (`possync_tests::failover`) does what the failover tests
//! rely on: a killed primary is replaced by its standby within seconds and clients find the new
//! primary through the same multi-host URL; with asynchronous replication and the standby's stream
//! frozen, commits the primary acknowledged are lost at the failover; with synchronous replication no
//! acknowledged commit is lost, even with a writer committing while the primary dies.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use possync_tests::failover::Formation;

/// How long the monitor may take to promote the standby and open it to writes.
const PROMOTION_TIMEOUT: Duration = Duration::from_secs(30);

fn connect(url: &str) -> postgres::Client {
    let mut config: postgres::Config = url.parse().unwrap_or_else(|e| panic!("parse {url}: {e}"));
    config.connect_timeout(Duration::from_secs(5));
    config.connect(postgres::NoTls).unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

fn server_port(client: &mut postgres::Client) -> u16 {
    let port: i32 = client.query_one("SELECT inet_server_port()", &[]).expect("inet_server_port").get(0);
    u16::try_from(port).expect("a port")
}

/// Inserts rows `ids` with `phase`, one committed transaction each.
fn insert(client: &mut postgres::Client, ids: std::ops::Range<i32>, phase: &str) {
    for id in ids {
        client
            .execute("INSERT INTO sales (id, phase) VALUES ($1, $2)", &[&id, &phase])
            .expect("insert a row");
    }
}

fn count(client: &mut postgres::Client, phase: &str) -> i64 {
    client.query_one("SELECT count(*) FROM sales WHERE phase = $1", &[&phase]).expect("count rows").get(0)
}

#[test]
fn formation_promotes_the_standby_and_async_loses_frozen_commits() {
    let _guard = super::shared();
    let started = Instant::now();
    let f = Formation::start(false);
    let setup = started.elapsed();
    let (primary, standby) = (f.primary_port(), f.standby_port());
    eprintln!("async formation up in {setup:?}: primary {primary}, standby {standby}, url {}", f.url());

    let mut client = connect(&f.url());
    assert_eq!(server_port(&mut client), primary, "the multi-host URL lands on the primary");
    client
        .batch_execute("CREATE TABLE sales (id int PRIMARY KEY, phase text NOT NULL)")
        .expect("create table");
    insert(&mut client, 0..20, "before");

    f.freeze_standby_replication();
    insert(&mut client, 20..40, "frozen");
    assert_eq!(count(&mut client, "frozen"), 20, "the primary acknowledged every frozen-phase commit");
    let mut on_standby = connect(&f.node_url(standby));
    assert_eq!(count(&mut on_standby, "before"), 20, "the standby has every row committed before the freeze");
    assert_eq!(count(&mut on_standby, "frozen"), 0, "the standby has none committed after the freeze");
    drop((client, on_standby));

    let killed = f.kill_primary();
    assert_eq!(killed, primary);
    let took = f.wait_promoted(PROMOTION_TIMEOUT);
    eprintln!("async: standby {standby} promoted and writable {took:?} after the kill");

    let mut client = connect(&f.url());
    assert_eq!(server_port(&mut client), standby, "the same URL now lands on the promoted standby");
    assert_eq!(count(&mut client, "before"), 20, "rows replicated before the freeze survive the failover");
    assert_eq!(count(&mut client, "frozen"), 0, "acknowledged commits the standby never got are lost");
    insert(&mut client, 40..41, "after");
    assert_eq!(count(&mut client, "after"), 1, "the new primary takes writes");
    f.thaw_standby_replication(); // a no-op: the frozen sender died with the primary
}

#[test]
fn sync_formation_loses_no_commit_at_failover() {
    let _guard = super::shared();
    let started = Instant::now();
    let f = Formation::start(true);
    let setup = started.elapsed();
    let (primary, standby) = (f.primary_port(), f.standby_port());
    eprintln!("sync formation up in {setup:?}: primary {primary}, standby {standby}");

    let mut client = connect(&f.url());
    client
        .batch_execute("CREATE TABLE sales (id int PRIMARY KEY, phase text NOT NULL)")
        .expect("create table");
    insert(&mut client, 0..20, "before");
    drop(client);

    // A writer commits one row after another while the primary is killed; it stops at the first
    // error. Every commit it saw acknowledged must be on the promoted standby.
    let url = f.url();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut client = connect(&url);
            let mut acked = Vec::new();
            for id in 1000.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                match client.execute("INSERT INTO sales (id, phase) VALUES ($1, 'during')", &[&id]) {
                    Ok(_) => acked.push(id),
                    Err(_) => break,
                }
            }
            acked
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    f.kill_primary();
    let took = f.wait_promoted(PROMOTION_TIMEOUT);
    stop.store(true, Ordering::SeqCst);
    let acked = writer.join().expect("writer thread");
    eprintln!(
        "sync: standby {standby} promoted and writable {took:?} after the kill; {} commits \
         acknowledged while writing",
        acked.len()
    );
    assert!(!acked.is_empty(), "the writer committed rows before the kill");

    let mut client = connect(&f.url());
    assert_eq!(server_port(&mut client), standby, "the same URL now lands on the promoted standby");
    assert_eq!(count(&mut client, "before"), 20, "every row committed before the kill survives");
    let present: HashSet<i32> = client
        .query("SELECT id FROM sales WHERE phase = 'during' ORDER BY id", &[])
        .expect("read the writer's rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let lost: Vec<i32> = acked.iter().copied().filter(|id| !present.contains(id)).collect();
    assert!(lost.is_empty(), "synchronous replication lost acknowledged commits {lost:?}");
}
