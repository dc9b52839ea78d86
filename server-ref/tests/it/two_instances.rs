//! Two server instances (two `PgStore` pools, two HTTP fronts) on one database, eight tills pushing
//! the same 400 sales in different orders and batch sizes, alternating between the instances: every
//! sale is stored exactly once, with exactly one `OK` in the audit trail and `DUPLICATE` for all
//! other attempts. This is the "stateless instances behind a load balancer" claim of docs/scaling.md.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use possync_server::auth::{generate_token, token_sha256};
use possync_server::http;
use possync_server::store::postgres::PgStore;
use possync_server::store::{AdminStore, Device};
use possync_test_support::{envelope, new_id, sale, test_http_config, test_pg_options, TestDb};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde_json::{json, Value};

const SALES: usize = 400;
const THREADS: usize = 8;

fn items_of(i: usize) -> usize {
    1 + i % 5
}

#[test]
fn two_instances_one_database_concurrent_tills_store_every_sale_exactly_once() {
    let db = TestDb::create();
    let stores: Vec<Arc<PgStore>> = (0..2)
        .map(|_| Arc::new(PgStore::connect(db.config.clone(), &test_pg_options()).expect("connect")))
        .collect();
    // Both instances migrate at once, as two freshly deployed servers would.
    std::thread::scope(|s| {
        for store in &stores {
            s.spawn(|| store.migrate().expect("migrate"));
        }
    });
    let servers: Vec<_> =
        stores.iter().map(|s| http::start(s.clone(), test_http_config()).expect("start")).collect();
    let bases: Arc<Vec<String>> =
        Arc::new(servers.iter().map(|s| format!("http://{}", s.local_addr())).collect());
    // One till per thread (a till never has two pushes in flight: the server answers a second 429).
    let tokens: Vec<String> = (0..THREADS)
        .map(|t| {
            let token = generate_token();
            let device = Device { store_id: "store-1".into(), device_id: format!("till-{t}") };
            stores[0].create_token(&device, &token_sha256(&token), None).expect("token");
            token
        })
        .collect();

    let sales: Arc<Vec<(String, Value)>> = Arc::new(
        (0..SALES)
            .map(|i| {
                let id = new_id();
                let env = envelope(&id, &sale("store-1", i as i64, items_of(i)));
                (id, env)
            })
            .collect(),
    );
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (sales, bases, barrier, token) =
                (sales.clone(), bases.clone(), barrier.clone(), tokens[t].clone());
            std::thread::Builder::new()
                .name(format!("till-{t}"))
                .spawn(move || till(t, &sales, &bases, &barrier, &token))
                .expect("spawn till")
        })
        .collect();
    // Per sale: how many OK and DUPLICATE answers the tills got, and the server_tx_ids named.
    let mut answers: HashMap<String, (usize, usize, Vec<i64>)> = HashMap::new();
    for h in handles {
        for (id, status, server_tx_id) in h.join().expect("till thread") {
            let entry = answers.entry(id).or_default();
            match status.as_str() {
                "OK" => entry.0 += 1,
                "DUPLICATE" => entry.1 += 1,
                other => panic!("unexpected final status {other}"),
            }
            entry.2.push(server_tx_id);
        }
    }
    for server in servers {
        server.shutdown();
    }

    assert_eq!(answers.len(), SALES);
    for (id, (ok, dup, server_ids)) in &answers {
        assert_eq!((*ok, *dup), (1, THREADS - 1), "sale {id}: one OK, the rest DUPLICATE");
        assert!(server_ids.windows(2).all(|w| w[0] == w[1]), "sale {id}: one server_tx_id {server_ids:?}");
    }

    let mut c = db.client();
    let mut count = |sql: &str| -> i64 { c.query_one(sql, &[]).expect(sql).get(0) };
    assert_eq!(count("SELECT count(*) FROM pos_transactions"), SALES as i64);
    let expected_items: usize = (0..SALES).map(items_of).sum();
    assert_eq!(count("SELECT count(*) FROM pos_transaction_items"), expected_items as i64);
    assert_eq!(count("SELECT count(*) FROM pos_transaction_payments"), 2 * SALES as i64);
    assert_eq!(count("SELECT count(*) FROM pos_transaction_audit"), (SALES * THREADS) as i64);
    let rows = c
        .query(
            "SELECT t.client_tx_id, \
               (SELECT count(*) FROM pos_transaction_items i WHERE i.client_tx_id = t.client_tx_id), \
               (SELECT count(*) FROM pos_transaction_payments p WHERE p.client_tx_id = t.client_tx_id), \
               (SELECT count(*) FILTER (WHERE outcome = 'OK') FROM pos_transaction_audit a \
                  WHERE a.client_tx_id = t.client_tx_id), \
               (SELECT count(*) FILTER (WHERE outcome = 'DUPLICATE') FROM pos_transaction_audit a \
                  WHERE a.client_tx_id = t.client_tx_id), \
               (SELECT count(*) FROM pos_transaction_audit a WHERE a.client_tx_id = t.client_tx_id) \
             FROM pos_transactions t",
            &[],
        )
        .expect("per-sale counts");
    let index: HashMap<&str, usize> = sales.iter().enumerate().map(|(i, (id, _))| (id.as_str(), i)).collect();
    assert_eq!(rows.len(), SALES);
    for row in rows {
        let id: String = row.get(0);
        let i = *index.get(id.as_str()).unwrap_or_else(|| panic!("stored sale {id} was never pushed"));
        let got: (i64, i64, i64, i64, i64) = (row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
        let want = (items_of(i) as i64, 2, 1, THREADS as i64 - 1, THREADS as i64);
        assert_eq!(got, want, "sale {id}: (items, payments, OK, DUPLICATE, audit rows)");
    }
}

/// One till: pushes every sale in its own order and batch sizes, alternating instances, and pushes
/// again whatever came back `RETRY` until each sale is settled. Returns each sale's final answer.
fn till(
    t: usize,
    sales: &[(String, Value)],
    bases: &[String],
    barrier: &Barrier,
    token: &str,
) -> Vec<(String, String, i64)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_0000 + t as u64);
    let mut order: Vec<usize> = (0..sales.len()).collect();
    order.shuffle(&mut rng);
    if t % 2 == 1 {
        order.reverse();
    }
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(120))).build().into();
    let mut settled = Vec::with_capacity(sales.len());
    let mut request_no = t;
    barrier.wait();
    while !order.is_empty() {
        let mut retry = Vec::new();
        let mut rest = &order[..];
        while !rest.is_empty() {
            let size = rng.random_range(1..=40).min(rest.len());
            let (batch, tail) = rest.split_at(size);
            rest = tail;
            let body = json!({
                "device_id": format!("till-{t}"),
                "transactions": batch.iter().map(|&i| sales[i].1.clone()).collect::<Vec<_>>(),
            });
            let base = &bases[request_no % bases.len()];
            request_no += 1;
            let mut resp = agent
                .post(format!("{base}/sync/push"))
                .header("Authorization", format!("Bearer {token}"))
                .header("X-Correlation-Id", format!("till-{t}-{request_no}"))
                .send_json(&body)
                .expect("push");
            let reply: Value = resp.body_mut().read_json().expect("JSON reply");
            let results = reply["results"].as_array().expect("results");
            assert_eq!(results.len(), batch.len());
            for (&i, r) in batch.iter().zip(results) {
                assert_eq!(r["client_tx_id"].as_str(), Some(sales[i].0.as_str()), "results in request order");
                match r["status"].as_str() {
                    Some("RETRY") => retry.push(i),
                    Some(status) => settled.push((
                        sales[i].0.clone(),
                        status.to_owned(),
                        r["server_tx_id"].as_i64().expect("server_tx_id"),
                    )),
                    None => panic!("no status: {r}"),
                }
            }
        }
        order = retry;
    }
    settled
}
