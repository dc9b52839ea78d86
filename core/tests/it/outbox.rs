//! The outbox's guarantees without a server: enqueue rules, atomic claims, fencing tokens, heartbeats,
//! retention and the typed errors of bad files.

use std::collections::HashSet;
use std::sync::Arc;

use crate::common::{sale, TempOutbox, T0};
use possync_core::clock::ManualClock;
use possync_core::config::{Durability, OutboxConfig};
use possync_core::outbox::{Finalized, LeaseState, Outbox, Outcome, SaleState};
use possync_core::{SaleError, StorageError};

const LEASE_MS: u64 = 60_000;

fn sent() -> Outcome {
    Outcome::Sent { duplicate: false, server_tx_id: Some(1) }
}

#[test]
fn enqueue_stores_canonical_payload_and_hash() {
    let t = TempOutbox::new();
    let outbox = t.open();
    let id = outbox.enqueue(&sale(1)).expect("enqueue");
    assert_eq!(id.len(), 36, "a UUID");
    let entry = outbox.get(&id).expect("get").expect("stored");
    assert_eq!(entry.state, SaleState::Pending);
    assert_eq!(entry.attempt, 0);
    let canonical = possync_core::protocol::canonical_json_string(&sale(1)).expect("canonical");
    assert_eq!(entry.payload, canonical);
    assert_eq!(entry.payload_sha256, possync_core::protocol::payload_sha256(canonical.as_bytes()));
    assert_eq!(outbox.counts().expect("counts").pending, 1);
}

#[test]
fn invalid_sale_is_refused_with_a_typed_error_and_nothing_stored() {
    let t = TempOutbox::new();
    let outbox = t.open();
    let mut bad = sale(1);
    bad.header.total_minor += 1;
    match outbox.enqueue(&bad) {
        Err(SaleError::Invalid(e)) => assert_eq!(e.code(), "totals_mismatch"),
        other => panic!("expected InvalidSale, got {other:?}"),
    }
    assert!(matches!(outbox.enqueue_with_id("bad id", &sale(1)), Err(SaleError::Invalid(_))));
    assert_eq!(outbox.counts().expect("counts"), Default::default());
}

#[test]
fn caller_supplied_id_same_payload_is_noop_other_payload_is_error() {
    let t = TempOutbox::new();
    let outbox = t.open();
    let first = outbox.enqueue_with_id("till-1:000001", &sale(1)).expect("first");
    assert!(first.created);
    let again = outbox.enqueue_with_id("till-1:000001", &sale(1)).expect("same again");
    assert!(!again.created, "same id and payload is a no-op");
    match outbox.enqueue_with_id("till-1:000001", &sale(2)) {
        Err(SaleError::IdConflict { client_tx_id }) => assert_eq!(client_tx_id, "till-1:000001"),
        other => panic!("expected IdConflict, got {other:?}"),
    }
    let entry = outbox.get("till-1:000001").expect("get").expect("stored");
    assert!(entry.payload.contains("R-1"), "the first sale is kept");
    assert_eq!(outbox.counts().expect("counts").pending, 1);
}

#[test]
fn two_claimers_in_threads_never_hold_the_same_sale() {
    let t = TempOutbox::new();
    let setup = t.open();
    let n = 1_000;
    for i in 0..n {
        setup.enqueue(&sale(i)).expect("enqueue");
    }
    // Each thread has its own connection, as two processes would.
    let barrier = std::sync::Barrier::new(4);
    let claimed: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|k| {
                let path = t.path.clone();
                let barrier = &barrier;
                s.spawn(move || {
                    let outbox = Outbox::open(&path, OutboxConfig::default()).expect("open");
                    barrier.wait();
                    let owner = format!("owner-{k}");
                    let mut mine = Vec::new();
                    let mut first = true;
                    loop {
                        let batch = outbox.claim(&owner, 7, LEASE_MS).expect("claim");
                        if first {
                            // Every claimer holds its first batch at the same time as the others.
                            assert_eq!(batch.len(), 7);
                            barrier.wait();
                            first = false;
                        }
                        if batch.is_empty() {
                            break;
                        }
                        let outcomes: Vec<_> = batch.iter().map(|c| (c.lease.clone(), sent())).collect();
                        let written = outbox.finalize_all(&outcomes).expect("finalize");
                        assert!(written.iter().all(|w| *w == Finalized::Written));
                        mine.extend(batch.into_iter().map(|c| c.lease.client_tx_id));
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("claimer")).collect()
    });
    let all: Vec<&String> = claimed.iter().flatten().collect();
    let unique: HashSet<&String> = all.iter().copied().collect();
    assert_eq!(all.len(), n as usize, "every sale claimed exactly once in total");
    assert_eq!(unique.len(), n as usize, "no sale claimed twice");
    assert_eq!(setup.counts().expect("counts").sent, n as u64);
}

#[test]
fn stale_lease_token_cannot_overwrite_a_newer_result() {
    let t = TempOutbox::new();
    let clock = Arc::new(ManualClock::new(T0));
    let outbox = t.open_with(clock.clone());
    let id = outbox.enqueue(&sale(1)).expect("enqueue");

    let old = outbox.claim("sender-a", 10, 1_000).expect("claim a").remove(0);
    clock.advance(1_001);
    let new = outbox.claim("sender-b", 10, 1_000).expect("claim b").remove(0);
    assert_eq!(new.lease.client_tx_id, id);
    assert_ne!(old.lease.token, new.lease.token, "every claim gets a fresh fencing token");
    assert_eq!(new.attempt, 2);

    assert_eq!(outbox.finalize(&new.lease, &sent()).expect("finalize b"), Finalized::Written);
    let stale = Outcome::Retry {
        from_server: false,
        code: "timeout".into(),
        message: "late".into(),
        next_attempt_at_ms: T0,
    };
    assert_eq!(outbox.finalize(&old.lease, &stale).expect("finalize a"), Finalized::LeaseLost);

    let entry = outbox.get(&id).expect("get").expect("row");
    assert_eq!(entry.state, SaleState::Sent, "the newer result stands");
    assert_eq!(entry.last_result.as_deref(), Some("OK"));
    assert_eq!(entry.lease_token, None);
    // A heartbeat with the stale token is refused too.
    assert_eq!(outbox.heartbeat(&[old.lease], 1_000).expect("heartbeat"), vec![LeaseState::Lost]);
}

#[test]
fn heartbeat_keeps_a_slow_send_and_without_it_the_lease_is_taken_over() {
    let t = TempOutbox::new();
    let clock = Arc::new(ManualClock::new(T0));
    let outbox = t.open_with(clock.clone());
    outbox.enqueue(&sale(1)).expect("enqueue");
    outbox.enqueue(&sale(2)).expect("enqueue");

    let batch = outbox.claim("slow", 1, 1_000).expect("claim");
    let kept = batch[0].lease.clone();
    for _ in 0..10 {
        clock.advance(600);
        assert_eq!(outbox.heartbeat(std::slice::from_ref(&kept), 1_000).expect("hb"), vec![LeaseState::Held]);
        assert!(
            outbox.claim("thief", 10, 1_000).expect("claim").iter().all(|c| c.lease.seq != kept.seq),
            "a heartbeated lease is never taken over"
        );
    }
    // The second sale was claimed by the thief meanwhile; take it back under a lease nobody extends.
    let unbeaten = outbox.claim("slow", 1, 1_000).expect("claim");
    assert!(unbeaten.is_empty(), "the thief holds the other sale");
    clock.advance(6_000);
    let taken = outbox.claim("thief-2", 10, 1_000).expect("claim");
    let taken_ids: HashSet<i64> = taken.iter().map(|c| c.lease.seq).collect();
    assert!(taken_ids.contains(&kept.seq), "without heartbeats the lease expires and is taken over");
    assert_eq!(outbox.heartbeat(&[kept], 1_000).expect("hb"), vec![LeaseState::Lost]);
}

#[test]
fn retry_outcome_waits_for_its_backoff_and_keeps_the_error() {
    let t = TempOutbox::new();
    let clock = Arc::new(ManualClock::new(T0));
    let outbox = t.open_with(clock.clone());
    let id = outbox.enqueue(&sale(1)).expect("enqueue");
    let c = outbox.claim("a", 1, LEASE_MS).expect("claim").remove(0);
    let retry = Outcome::Retry {
        from_server: true,
        code: "lock_timeout".into(),
        message: "busy".into(),
        next_attempt_at_ms: T0 + 5_000,
    };
    assert_eq!(outbox.finalize(&c.lease, &retry).expect("finalize"), Finalized::Written);
    assert!(outbox.claim("a", 1, LEASE_MS).expect("claim").is_empty(), "not due yet");
    clock.advance(5_000);
    let again = outbox.claim("a", 1, LEASE_MS).expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
    let entry = outbox.get(&id).expect("get").expect("row");
    assert_eq!(
        (entry.last_result.as_deref(), entry.last_code.as_deref()),
        (Some("RETRY"), Some("lock_timeout"))
    );
}

#[test]
fn conflict_and_invalid_are_terminal_and_listed_for_attention() {
    let t = TempOutbox::new();
    let outbox = t.open();
    let a = outbox.enqueue(&sale(1)).expect("enqueue");
    let b = outbox.enqueue(&sale(2)).expect("enqueue");
    let claimed = outbox.claim("x", 10, LEASE_MS).expect("claim");
    let outcomes = vec![
        (claimed[0].lease.clone(), Outcome::Conflict { code: "hash_differs".into(), message: "m1".into() }),
        (claimed[1].lease.clone(), Outcome::Invalid { code: "totals_mismatch".into(), message: "m2".into() }),
    ];
    outbox.finalize_all(&outcomes).expect("finalize");
    assert!(outbox.claim("x", 10, LEASE_MS).expect("claim").is_empty(), "terminal sales are never resent");
    let attention = outbox.attention().expect("attention");
    assert_eq!(attention.len(), 2);
    assert_eq!((attention[0].client_tx_id.as_str(), attention[0].state), (a.as_str(), SaleState::Conflict));
    assert_eq!(attention[0].code.as_deref(), Some("hash_differs"));
    assert_eq!((attention[1].client_tx_id.as_str(), attention[1].state), (b.as_str(), SaleState::Invalid));
    let counts = outbox.counts().expect("counts");
    assert_eq!((counts.conflict, counts.invalid, counts.unsent()), (1, 1, 0));
}

#[test]
fn unsent_amounts_per_currency_and_oldest_age() {
    let t = TempOutbox::new();
    let clock = Arc::new(ManualClock::new(T0));
    let outbox = t.open_with(clock.clone());
    assert_eq!(outbox.oldest_unsent_age_ms().expect("age"), None);
    for i in 0..4 {
        outbox.enqueue(&sale(i)).expect("enqueue");
        clock.advance(1_000);
    }
    let amounts = outbox.unsent_by_currency().expect("amounts");
    let expected: Vec<(String, u64, i64)> =
        vec![("EUR".into(), 2, 2 * 100 + 2 * 102), ("USD".into(), 2, 2 * 101 + 2 * 103)];
    let got: Vec<(String, u64, i64)> =
        amounts.into_iter().map(|a| (a.currency, a.count, a.total_minor)).collect();
    assert_eq!(got, expected);
    assert_eq!(outbox.oldest_unsent_age_ms().expect("age"), Some(4_000));
}

#[test]
fn sent_sales_are_pruned_after_retention_unsent_never() {
    let t = TempOutbox::new();
    let clock = Arc::new(ManualClock::new(T0));
    let config = OutboxConfig { sent_retention_ms: 10_000, ..OutboxConfig::default() };
    let outbox = Outbox::open_with_clock(&t.path, config, clock.clone()).expect("open");
    let sent_id = outbox.enqueue(&sale(1)).expect("enqueue");
    let pending_id = outbox.enqueue(&sale(2)).expect("enqueue");
    let conflict_id = outbox.enqueue(&sale(3)).expect("enqueue");
    let claimed = outbox.claim("x", 3, LEASE_MS).expect("claim");
    let by_id =
        |id: &str| claimed.iter().find(|c| c.lease.client_tx_id == id).expect("claimed").lease.clone();
    let retry = Outcome::Retry {
        from_server: false,
        code: "timeout".into(),
        message: String::new(),
        next_attempt_at_ms: T0,
    };
    let written = outbox
        .finalize_all(&[
            (by_id(&sent_id), sent()),
            (by_id(&pending_id), retry),
            (by_id(&conflict_id), Outcome::Conflict { code: "hash_differs".into(), message: String::new() }),
        ])
        .expect("finalize");
    assert!(written.iter().all(|w| *w == Finalized::Written));

    clock.advance(9_999);
    assert_eq!(outbox.prune_sent().expect("prune"), 0, "not old enough");
    clock.advance(1);
    assert_eq!(outbox.prune_sent().expect("prune"), 1);
    assert!(outbox.get(&sent_id).expect("get").is_none());
    clock.advance(365 * 24 * 3_600 * 1_000);
    assert_eq!(outbox.prune_sent().expect("prune"), 0);
    assert!(outbox.get(&pending_id).expect("get").is_some(), "unsent sales are never pruned");
    assert!(outbox.get(&conflict_id).expect("get").is_some(), "sales needing attention are never pruned");
}

#[test]
fn durability_sets_the_synchronous_pragma_of_the_outbox_connection() {
    // SQLite's `PRAGMA synchronous`: 1 = NORMAL, 2 = FULL. Both settings are checked, so an opener that
    // ignored `durability` (SQLite's default is one of the two) fails one of them.
    let open = |path: &std::path::Path, durability| {
        Outbox::open(path, OutboxConfig { durability, ..OutboxConfig::default() }).expect("open")
    };
    let full = TempOutbox::new();
    assert_eq!(open(&full.path, Durability::Full).synchronous().expect("pragma"), 2);
    let normal = TempOutbox::new();
    assert_eq!(open(&normal.path, Durability::Normal).synchronous().expect("pragma"), 1);
    // The setting belongs to each opening, not to the file: the same file reopened with FULL is FULL,
    // and the default is FULL.
    assert_eq!(open(&normal.path, Durability::Full).synchronous().expect("pragma"), 2);
    assert_eq!(OutboxConfig::default().durability, Durability::Full);
    assert_eq!(normal.open().synchronous().expect("pragma"), 2);
}

#[test]
fn corrupt_file_is_a_typed_error_and_left_untouched() {
    let t = TempOutbox::new();
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&t.path, &garbage).expect("write garbage");
    match Outbox::open(&t.path, OutboxConfig::default()) {
        Err(StorageError::Corrupt { path, .. }) => assert_eq!(path, t.path),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(std::fs::read(&t.path).expect("read"), garbage, "the file is kept as it was");
}

#[test]
fn file_of_a_newer_build_is_refused() {
    let t = TempOutbox::new();
    {
        let outbox = t.open();
        outbox.enqueue(&sale(1)).expect("enqueue");
    }
    let raw = rusqlite::Connection::open(&t.path).expect("raw open");
    raw.pragma_update(None, "user_version", 99).expect("bump version");
    drop(raw);
    match Outbox::open(&t.path, OutboxConfig::default()) {
        Err(StorageError::IncompatibleVersion { found, supported, .. }) => {
            assert_eq!((found, supported), (99, possync_core::outbox::SCHEMA_VERSION))
        }
        other => panic!("expected IncompatibleVersion, got {other:?}"),
    }
}

#[test]
fn full_disk_refuses_new_sales_and_keeps_the_old_ones() {
    let t = TempOutbox::new();
    let config = OutboxConfig { max_size_bytes: Some(64 * 1024), ..OutboxConfig::default() };
    let outbox = Outbox::open(&t.path, config).expect("open");
    let mut stored = Vec::new();
    let err = loop {
        match outbox.enqueue(&sale(stored.len() as i64)) {
            Ok(id) => stored.push(id),
            Err(e) => break e,
        }
        assert!(stored.len() < 10_000, "the size cap never hit");
    };
    assert!(matches!(err, SaleError::Storage(StorageError::DiskFull { .. })), "got {err:?}");
    assert!(!stored.is_empty());
    for id in &stored {
        assert!(outbox.get(id).expect("get").is_some(), "earlier sales are safe");
    }
    assert_eq!(outbox.counts().expect("counts").pending, stored.len() as u64);
}

#[test]
fn read_only_file_is_a_typed_error_and_no_sale_is_lost() {
    let t = TempOutbox::new();
    let id = {
        let outbox = t.open();
        outbox.enqueue(&sale(1)).expect("enqueue")
    };
    // The tests run as root, for whom file modes do not apply: make the directory immutable instead.
    let status = std::process::Command::new("chattr").arg("+i").arg(t.dir.path()).status();
    assert!(
        status.as_ref().is_ok_and(|s| s.success()),
        "this test needs `chattr +i` (e2fsprogs, root): {status:?}"
    );
    let result = Outbox::open(&t.path, OutboxConfig::default())
        .map_err(SaleError::from)
        .and_then(|o| o.enqueue(&sale(2)));
    let _ = std::process::Command::new("chattr").arg("-i").arg(t.dir.path()).status();
    match result {
        Err(SaleError::Storage(StorageError::ReadOnly { .. } | StorageError::CannotOpen { .. })) => {}
        other => panic!("expected ReadOnly or CannotOpen, got {other:?}"),
    }
    let outbox = t.open();
    assert!(outbox.get(&id).expect("get").is_some(), "the stored sale survived");
}

#[test]
fn resolving_keeps_the_original_and_links_the_new_sale() {
    use possync_core::outbox::Resolution;
    let t = TempOutbox::new();
    let outbox = t.open();
    let ids: Vec<String> = (1..=4).map(|i| outbox.enqueue(&sale(i)).expect("enqueue")).collect();
    let claimed = outbox.claim("x", 10, LEASE_MS).expect("claim");
    let lease =
        |id: &str| claimed.iter().find(|c| c.lease.client_tx_id == id).expect("claimed").lease.clone();
    let conflict = || Outcome::Conflict { code: "hash_differs".into(), message: "m".into() };
    let invalid = || Outcome::Invalid { code: "totals_mismatch".into(), message: "m".into() };
    outbox
        .finalize_all(&[
            (lease(&ids[0]), conflict()),
            (lease(&ids[1]), invalid()),
            (lease(&ids[2]), conflict()),
            (lease(&ids[3]), sent()),
        ])
        .expect("finalize");
    assert_eq!(outbox.attention().expect("attention").len(), 3);

    // Re-key the conflict: the same payload goes again under a new id.
    let rekeyed =
        outbox.resolve(&ids[0], &Resolution::Rekey, Some("id reused by another till")).expect("rekey");
    let new_id = rekeyed.expect("a new id");
    let (old, new) =
        (outbox.get(&ids[0]).expect("get").expect("old"), outbox.get(&new_id).expect("get").expect("new"));
    assert_eq!((old.state, old.resolution.as_deref()), (SaleState::Conflict, Some("rekeyed")));
    assert_eq!(old.linked_client_tx_id.as_deref(), Some(new_id.as_str()));
    assert_eq!(old.resolution_note.as_deref(), Some("id reused by another till"));
    assert_eq!((new.state, new.linked_client_tx_id.as_deref()), (SaleState::Pending, Some(ids[0].as_str())));
    assert_eq!(
        (new.payload.as_str(), new.payload_sha256.as_str()),
        (old.payload.as_str(), old.payload_sha256.as_str())
    );

    // Replace the invalid sale with a corrected one; an invalid replacement is refused and changes nothing.
    let mut bad = sale(20);
    bad.header.total_minor += 1;
    assert!(matches!(outbox.resolve(&ids[1], &Resolution::Replace(bad), None), Err(SaleError::Invalid(_))));
    let replaced =
        outbox.resolve(&ids[1], &Resolution::Replace(sale(21)), None).expect("replace").expect("new id");
    assert!(outbox.get(&replaced).expect("get").expect("new").payload.contains("R-21"));
    assert!(outbox.get(&ids[1]).expect("get").expect("old").payload.contains("R-2"), "original payload kept");

    // Void the other conflict: no new sale, still kept.
    assert_eq!(outbox.resolve(&ids[2], &Resolution::Void, Some("test sale")).expect("void"), None);
    assert_eq!(outbox.get(&ids[2]).expect("get").expect("kept").resolution.as_deref(), Some("voided"));

    assert!(outbox.attention().expect("attention").is_empty(), "resolved sales leave the attention list");
    let counts = outbox.counts().expect("counts");
    assert_eq!((counts.conflict, counts.invalid, counts.pending), (0, 0, 2));
    for (id, why) in [(&ids[0], "resolved already"), (&ids[3], "sent"), (&"nope".to_owned(), "no such sale")]
    {
        match outbox.resolve(id, &Resolution::Void, None) {
            Err(SaleError::NotResolvable { reason, .. }) => assert!(reason.contains(why), "{reason}"),
            other => panic!("expected NotResolvable for {id}, got {other:?}"),
        }
    }
}

#[test]
fn pruning_never_lets_a_sequence_number_be_handed_out_again() {
    let t = TempOutbox::new();
    let clock = Arc::new(ManualClock::new(T0));
    let config = OutboxConfig { sent_retention_ms: 10, ..OutboxConfig::default() };
    let outbox = Outbox::open_with_clock(&t.path, config, clock.clone()).expect("open");
    let ids: Vec<String> = (0..3).map(|i| outbox.enqueue(&sale(i)).expect("enqueue")).collect();
    let claimed = outbox.claim("x", 3, LEASE_MS).expect("claim");
    let all: Vec<_> = claimed.iter().map(|c| (c.lease.clone(), sent())).collect();
    outbox.finalize_all(&all).expect("finalize");
    clock.advance(1_000);
    assert_eq!(outbox.prune_sent().expect("prune"), 2, "the newest row stays");
    assert!(outbox.get(&ids[2]).expect("get").is_some());
    outbox.enqueue(&sale(9)).expect("enqueue");
    let next = outbox.claim("x", 1, LEASE_MS).expect("claim");
    assert_eq!(next[0].lease.seq, 4, "numbering goes on after a prune");
}

#[test]
fn the_backlog_report_names_unsent_sales_sequence_bounds_and_retired_numbers() {
    let t = TempOutbox::new();
    let clock = Arc::new(ManualClock::new(T0));
    let outbox = t.open_with(clock.clone());
    let ids: Vec<String> = (0..4).map(|i| outbox.enqueue(&sale(i)).expect("enqueue")).collect();
    clock.advance(2_000);
    let claimed = outbox.claim("x", 2, LEASE_MS).expect("claim");
    let conflict = Outcome::Conflict { code: "hash_differs".into(), message: String::new() };
    outbox
        .finalize_all(&[(claimed[0].lease.clone(), sent()), (claimed[1].lease.clone(), conflict)])
        .expect("finalize");
    outbox.resolve(&ids[1], &possync_core::outbox::Resolution::Void, Some("entered twice")).expect("void");
    let report = outbox.backlog_report().expect("report");
    assert_eq!(report.unsent_count, Some(2));
    assert_eq!(report.oldest_unsent_age_ms, Some(2_000));
    assert_eq!((report.last_seq, report.seq_start), (Some(4), Some(3)), "first unsent is seq 3");
    assert_eq!(report.retired_seqs, vec![2], "the voided sale will never arrive");
    assert_eq!(report.unsent_minor.values().sum::<i64>(), 2 * 102 + 2 * 103);
    assert_eq!(report.library_version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(report.outbox_id, Some(outbox.outbox_id().expect("id")), "the report names its outbox");
}

#[test]
fn an_outbox_keeps_its_identity_across_reopens_and_a_wiped_one_gets_a_new_one() {
    let t = TempOutbox::new();
    let first = t.open();
    first.enqueue(&sale(1)).expect("enqueue");
    let id = first.outbox_id().expect("id");
    drop(first);
    let reopened = t.open();
    assert_eq!(reopened.outbox_id().expect("id"), id, "same file, same outbox");
    drop(reopened);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", t.path.display()));
    }
    let wiped = t.open();
    assert_ne!(wiped.outbox_id().expect("id"), id, "a wiped outbox is another outbox");
    wiped.enqueue(&sale(2)).expect("enqueue");
    let seq = wiped.backlog_report().expect("report").last_seq;
    assert_eq!(seq, Some(1), "and numbers its sales from 1 again");
}

#[test]
fn read_only_open_of_a_missing_file_names_the_path_and_creates_nothing() {
    let t = TempOutbox::new();
    match Outbox::open_read_only(&t.path) {
        Err(e @ StorageError::NotFound { .. }) => {
            assert!(e.to_string().contains(&t.path.display().to_string()), "{e}")
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(!t.path.exists(), "a read-only open never creates the file");
    assert_eq!(std::fs::read_dir(t.dir.path()).expect("dir").count(), 0, "nor anything beside it");
}

#[test]
fn read_only_open_reads_without_writing_and_refuses_writes() {
    let t = TempOutbox::new();
    let id = {
        let outbox = t.open();
        outbox.enqueue(&sale(1)).expect("enqueue")
    };
    let before = std::fs::read(&t.path).expect("read");
    let outbox = Outbox::open_read_only(&t.path).expect("open read-only");
    assert_eq!(outbox.counts().expect("counts").pending, 1);
    assert!(outbox.get(&id).expect("get").is_some());
    assert!(matches!(outbox.enqueue(&sale(2)), Err(SaleError::Storage(StorageError::ReadOnly { .. }))));
    drop(outbox);
    assert_eq!(std::fs::read(&t.path).expect("read"), before, "the file is unchanged");
}

#[test]
fn read_only_open_of_an_older_schema_is_a_clear_error_and_no_migration() {
    let t = TempOutbox::new();
    {
        let mut raw = rusqlite::Connection::open(&t.path).expect("raw open");
        raw.pragma_update(None, "journal_mode", "WAL").expect("wal");
        // The version 1 schema, as an older build left it.
        raw.execute_batch(
            "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, client_tx_id TEXT NOT NULL UNIQUE) STRICT;
             PRAGMA user_version = 1;",
        )
        .expect("v1");
        let _ = &mut raw;
    }
    match Outbox::open_read_only(&t.path) {
        Err(e @ StorageError::OlderVersion { found: 1, .. }) => {
            assert!(e.to_string().contains("older"), "{e}")
        }
        other => panic!("expected OlderVersion, got {other:?}"),
    }
    let raw = rusqlite::Connection::open(&t.path).expect("raw open");
    let version: i64 = raw.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
    assert_eq!(version, 1, "not migrated");
}

#[test]
fn read_only_open_of_garbage_is_corrupt_and_left_untouched() {
    let t = TempOutbox::new();
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&t.path, &garbage).expect("write garbage");
    assert!(matches!(Outbox::open_read_only(&t.path), Err(StorageError::Corrupt { .. })));
    assert_eq!(std::fs::read(&t.path).expect("read"), garbage);
}

#[test]
fn recent_pages_newest_first_through_every_state() {
    let t = TempOutbox::new();
    let outbox = t.open();
    let ids: Vec<String> = (0..5).map(|i| outbox.enqueue(&sale(i)).expect("enqueue")).collect();
    let claimed = outbox.claim("x", 1, LEASE_MS).expect("claim");
    let _ = outbox.finalize(&claimed[0].lease, &sent()).expect("finalize");
    let page = outbox.recent(2, None).expect("page");
    assert_eq!(
        page.iter().map(|e| e.client_tx_id.clone()).collect::<Vec<_>>(),
        vec![ids[4].clone(), ids[3].clone()]
    );
    let next = outbox.recent(10, Some(page[1].seq)).expect("page");
    assert_eq!(next.len(), 3);
    let first = next.last().expect("oldest");
    assert_eq!((first.client_tx_id.as_str(), first.state), (ids[0].as_str(), SaleState::Sent));
    assert!(first.sent_at_ms.is_some());
    assert_eq!(first.sale(), Some(sale(0)));
    assert_eq!((first.currency.as_str(), first.total_minor), ("EUR", sale(0).header.total_minor));
    assert!(outbox.recent(10, Some(first.seq)).expect("page").is_empty());
}

#[test]
fn an_unknown_state_in_the_file_is_an_error_not_read_as_invalid() {
    let t = TempOutbox::new();
    let outbox = t.open();
    let id = outbox.enqueue(&sale(1)).expect("enqueue");
    {
        // A file damaged (or written by a build with a state this one does not know).
        let raw = rusqlite::Connection::open(&t.path).expect("raw open");
        raw.execute_batch("PRAGMA ignore_check_constraints = ON").expect("pragma");
        raw.execute("UPDATE outbox SET state = 'parked' WHERE client_tx_id = ?1", [&id]).expect("update");
    }
    let err = outbox.summaries().expect_err("an unknown state is not a sale state");
    assert!(err.to_string().contains("unknown sale state \"parked\""), "{err}");
    assert!(outbox.get(&id).is_err(), "nor is it read as one by get");
}
