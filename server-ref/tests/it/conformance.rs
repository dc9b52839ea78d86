//! One conformance suite for both stores: every test function takes a [`Harness`] and runs against
//! PostgreSQL (a fresh database) and the embedded SQLite store (a fresh file). PostgreSQL also carries
//! the concurrency tests (push_idempotency.rs, two_instances.rs); the failpoint case is in
//! conformance_failpoint.rs (failpoints are process-global).

use std::time::{Duration, SystemTime};

use possync_core::protocol::PushStatus;
use possync_server::store::{
    Device, DeviceActivity, PushContext, Rejection, SaleQuery, TillReport, TokenLookup,
};
use possync_test_support::stores::{push, till1, Harness, Prepared};

use possync_test_support::{new_id, sale};

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $( #[test] fn $name() { super::$name(&possync_test_support::stores::Pg::new()); } )*
        }
        mod sqlite {
            $( #[test] fn $name() { super::$name(&possync_test_support::stores::Lite::new()); } )*
        }
    };
}

conformance!(
    ok_then_duplicate,
    conflict_leaves_the_stored_sale_unchanged,
    mixed_batch_row_counts,
    database_refusal_is_invalid_with_zero_partial_rows,
    tokens_create_lookup_revoke_list,
    attention_lists_conflicts_and_invalid_of_one_store,
    prune_audit_deletes_only_old_audit_rows,
    sale_hashes_and_device_sales,
    ready_and_pool_state,
    the_same_id_in_two_stores_is_two_sales,
    activity_and_backlog_report_are_kept_per_device,
    a_lost_run_of_sequence_numbers_is_exactly_one_gap,
    a_replaced_outbox_keeps_its_lost_run_and_the_new_one_starts_from_scratch,
    a_till_that_starts_sending_its_outbox_identity_keeps_its_numbers,
    conflicts_keep_both_payloads_and_settle_with_a_note,
    admins_and_sessions,
    expired_sessions_are_deleted_by_the_app_clock,
    deleting_an_admin_ends_their_sessions_and_no_one_else_s,
    sales_are_found_by_id_store_and_day,
);

fn activity_and_backlog_report_are_kept_per_device(h: &dyn Harness) {
    let st = h.store();
    let report = TillReport {
        library_version: Some("0.4.0".into()),
        unsent_count: Some(80),
        oldest_unsent_age_ms: Some(3_600_000),
        unsent_minor: Some(r#"{"EUR":1234}"#.into()),
        last_seq: Some(10),
        seq_start: Some(1),
        outbox_id: Some("0f1e2d3c4b5a69788796a5b4c3d2e1f0".into()),
        acked_seq: Some(8),
        kept_seq: Some(2),
        kept_since_ms: Some(1_763_000_000_000),
    };
    let now = 1_764_000_000_000;
    let pushed = DeviceActivity {
        seen_ms: now,
        pushed_ms: Some(now),
        report: Some(&report),
        reported_ms: Some(now),
        retired_seqs: &[],
    };
    st.record_activity(&till1(), &pushed).expect("record");
    // A later request without a report keeps the last report; an older report (another instance
    // writing late) does not overwrite it.
    let seen = DeviceActivity {
        seen_ms: now + 5,
        pushed_ms: None,
        report: None,
        reported_ms: None,
        retired_seqs: &[],
    };
    st.record_activity(&till1(), &seen).expect("record");
    let stale = TillReport { unsent_count: Some(1), ..TillReport::default() };
    let late = DeviceActivity { report: Some(&stale), reported_ms: Some(now - 1), ..seen };
    st.record_activity(&till1(), &late).expect("record");
    push(h, &till1(), "c1", &Prepared::new(&new_id(), sale("store-1", 1, 1)));
    let tills = st.tills(0).expect("tills");
    let t = tills.iter().find(|t| t.device_id == "till-1").expect("till-1 listed");
    assert_eq!(t.report, report, "{}", h.name());
    assert_eq!((t.last_seen_ms, t.last_push_ms, t.reported_at_ms), (Some(now + 5), Some(now), Some(now)));
    assert_eq!(t.sales_today, 1, "{}", h.name());
}

fn a_lost_run_of_sequence_numbers_is_exactly_one_gap(h: &dyn Harness) {
    let st = h.store();
    for seq in [1, 2, 6, 7] {
        push(h, &till1(), "c", &Prepared::new(&new_id(), sale("store-1", seq, 1)).with_seq(seq));
    }
    // Sequence 8 was voided on the till: no gap.
    let voided =
        DeviceActivity { seen_ms: 1, pushed_ms: None, report: None, reported_ms: None, retired_seqs: &[8] };
    st.record_activity(&till1(), &voided).expect("record");
    push(h, &till1(), "c", &Prepared::new(&new_id(), sale("store-1", 9, 1)).with_seq(9));
    let gaps = st.seq_gaps(Some("store-1")).expect("gaps");
    let got: Vec<_> =
        gaps.iter().map(|g| (g.device_id.as_str(), g.from, g.to, g.after_last_received)).collect();
    assert_eq!(got, vec![("till-1", 3, 5, false)], "{}", h.name());
    // Asking again gives the same answer (the contiguous run was advanced to 2, not past the gap).
    assert_eq!(st.seq_gaps(None).expect("gaps").len(), 1, "{}", h.name());
}

/// Stores sale number `seq` of outbox `outbox` (`None`: an older till) as till-1.
fn push_from(h: &dyn Harness, outbox: Option<&str>, seq: i64) {
    let p = Prepared::new(&new_id(), sale("store-1", seq, 1)).with_seq(seq);
    let ctx = PushContext { device: &till1(), correlation_id: "c", outbox_id: outbox };
    let result = possync_server::push::push_result(&p.id, &h.store().store_sale(&ctx, &p.checked()));
    assert_eq!(result.status, PushStatus::Ok, "{}", h.name());
}

/// Records a report of till-1's outbox `outbox` numbered up to `last_seq`, received at `at_ms`.
fn report_from(h: &dyn Harness, outbox: Option<&str>, last_seq: i64, at_ms: i64) {
    let report = TillReport {
        last_seq: Some(last_seq),
        seq_start: Some(1),
        outbox_id: outbox.map(str::to_owned),
        ..TillReport::default()
    };
    let activity = DeviceActivity {
        seen_ms: at_ms,
        pushed_ms: Some(at_ms),
        report: Some(&report),
        reported_ms: Some(at_ms),
        retired_seqs: &[],
    };
    h.store().record_activity(&till1(), &activity).expect("record");
}

type Gap = (i64, i64, bool, Option<String>);

fn gaps_of_till1(h: &dyn Harness) -> Vec<Gap> {
    let gaps = h.store().seq_gaps(Some("store-1")).expect("gaps");
    gaps.into_iter().map(|g| (g.from, g.to, g.after_last_received, g.previous_outbox)).collect()
}

fn a_replaced_outbox_keeps_its_lost_run_and_the_new_one_starts_from_scratch(h: &dyn Harness) {
    let (old, new) = ("outbox-old", "outbox-new");
    let t0 = 1_764_000_000_000;
    for seq in 1..=100 {
        push_from(h, Some(old), seq);
    }
    report_from(h, Some(old), 150, t0);
    assert_eq!(gaps_of_till1(h), vec![(101, 150, true, None)], "still on the till: {}", h.name());
    // The till is reinstalled: a new outbox numbers its sales from 1 again.
    for seq in 1..=5 {
        push_from(h, Some(new), seq);
    }
    report_from(h, Some(new), 5, t0 + 1_000);
    let lost = (101, 150, false, Some(old.to_owned()));
    assert_eq!(gaps_of_till1(h), vec![lost.clone()], "new sales 1..5 are no gap: {}", h.name());
    assert_eq!(gaps_of_till1(h), vec![lost.clone()], "the lost run stays: {}", h.name());
    // New numbers in the old run's range do not fill it: 101 of the new outbox is its own, and
    // leaves its own gap 6–100.
    push_from(h, Some(new), 101);
    assert_eq!(gaps_of_till1(h), vec![lost.clone(), (6, 100, false, None)], "{}", h.name());
    // A late report of the old outbox (another instance writing late) does not switch back.
    report_from(h, Some(old), 150, t0 + 500);
    let till = h.store().tills(0).expect("tills").into_iter().find(|t| t.device_id == "till-1");
    assert_eq!(till.and_then(|t| t.report.outbox_id).as_deref(), Some(new), "{}", h.name());
    assert_eq!(gaps_of_till1(h), vec![lost, (6, 100, false, None)], "{}", h.name());
}

fn a_till_that_starts_sending_its_outbox_identity_keeps_its_numbers(h: &dyn Harness) {
    // An older library numbered 1..3 without an identity; upgraded, its outbox gets one and goes on.
    for seq in 1..=3 {
        push_from(h, None, seq);
    }
    report_from(h, None, 3, 1_000);
    push_from(h, Some("outbox-a"), 4);
    report_from(h, Some("outbox-a"), 5, 2_000);
    assert_eq!(gaps_of_till1(h), vec![(5, 5, true, None)], "no reset, no lost run: {}", h.name());
}

fn conflicts_keep_both_payloads_and_settle_with_a_note(h: &dyn Harness) {
    let st = h.store();
    let id = new_id();
    push(h, &till1(), "c1", &Prepared::new(&id, sale("store-1", 1, 1)));
    let attempted = Prepared::new(&id, sale("store-1", 2, 1));
    push(h, &till1(), "c2", &attempted);
    let entries = st.attention_entries(None, false, 50).expect("entries");
    assert_eq!(entries.len(), 1, "{}", h.name());
    let e = &entries[0];
    assert_eq!(e.attempted_payload.as_deref(), Some(attempted.canonical.as_str()));
    assert!(e.stored_payload.is_some() && e.stored_payload != e.attempted_payload);
    assert!(st.mark_reviewed(&id, e.record.audit_id, "manager", "phoned the till").expect("settle"));
    assert!(!st.mark_reviewed(&id, e.record.audit_id, "manager", "again").expect("settle twice"));
    assert!(st.attention_entries(None, false, 50).expect("entries").is_empty(), "{}", h.name());
    let all = st.attention_entries(Some("store-1"), true, 50).expect("entries");
    assert_eq!(all[0].settled_note.as_deref(), Some("phoned the till"));
    assert_eq!(all[0].settled_by.as_deref(), Some("manager"));
}

fn admins_and_sessions(h: &dyn Harness) {
    let st = h.store();
    assert!(!st.has_admin().expect("has_admin"));
    assert!(st.create_admin("manager", "$argon2id$x").expect("create"));
    assert!(!st.create_admin("manager", "$argon2id$y").expect("create twice"));
    assert_eq!(st.admin_secret("manager").expect("secret").as_deref(), Some("$argon2id$x"));
    assert!(st.has_admin().expect("has_admin"));
    let sha = "a".repeat(64);
    let year_2100_ms = 4_102_444_800_000;
    st.create_session(&sha, "manager", "csrf", year_2100_ms, 0).expect("session");
    let s = st.session(&sha, 0).expect("session").expect("live");
    assert_eq!((s.admin_name.as_str(), s.csrf_token.as_str()), ("manager", "csrf"));
    assert!(st.session(&sha, year_2100_ms + 1).expect("session").is_none(), "expired");
    st.delete_session(&sha).expect("logout");
    assert!(st.session(&sha, 0).expect("session").is_none());
    assert!(st.delete_admin("manager").expect("delete"));
}

/// Creating a session deletes those expired by the `now_ms` the app passes, never by the database's
/// own clock (the two stores used to differ: PostgreSQL's `now()`, SQLite's app time).
fn expired_sessions_are_deleted_by_the_app_clock(h: &dyn Harness) {
    let st = h.store();
    assert!(st.create_admin("manager", "$argon2id$x").expect("admin"));
    let year_2100_ms = 4_102_444_800_000;
    let (old, live, later) = ("b".repeat(64), "c".repeat(64), "d".repeat(64));
    // Expired in 1970 by the database's clock, live by the app's (`now_ms` 1 000 and 2 000).
    st.create_session(&old, "manager", "csrf", 5_000, 1_000).expect("old session");
    st.create_session(&live, "manager", "csrf", year_2100_ms, 2_000).expect("live session");
    assert!(
        st.session(&old, 0).expect("session").is_some(),
        "{}: a session live by the app's clock was deleted by the database's",
        h.name()
    );
    // The app's clock passes 2100: both are expired then, though the database's clock says otherwise.
    st.create_session(&later, "manager", "csrf", year_2100_ms * 2, year_2100_ms + 1).expect("later");
    assert!(st.session(&old, 0).expect("session").is_none(), "{}: expired session kept", h.name());
    assert!(
        st.session(&live, 0).expect("session").is_none(),
        "{}: a session expired by the app's clock was kept by the database's",
        h.name()
    );
    assert!(st.session(&later, 0).expect("session").is_some(), "{}", h.name());
}

/// Deleting an admin deletes their sessions (explicitly, not by relying on a foreign-key cascade)
/// and nobody else's.
fn deleting_an_admin_ends_their_sessions_and_no_one_else_s(h: &dyn Harness) {
    let st = h.store();
    assert!(st.create_admin("manager", "$argon2id$x").expect("admin"));
    assert!(st.create_admin("clerk", "$argon2id$y").expect("admin"));
    let year_2100_ms = 4_102_444_800_000;
    let (manager, clerk) = ("e".repeat(64), "f".repeat(64));
    st.create_session(&manager, "manager", "csrf", year_2100_ms, 0).expect("session");
    st.create_session(&clerk, "clerk", "csrf", year_2100_ms, 0).expect("session");
    assert!(st.delete_admin("manager").expect("delete"), "{}", h.name());
    assert!(st.session(&manager, 0).expect("session").is_none(), "{}: session outlived its admin", h.name());
    let kept = st.session(&clerk, 0).expect("session").expect("another admin's session is kept");
    assert_eq!(kept.admin_name, "clerk", "{}", h.name());
    assert!(!st.delete_admin("manager").expect("delete again"), "{}", h.name());
    assert_eq!(st.admin_secret("manager").expect("secret"), None, "{}", h.name());
    assert!(st.has_admin().expect("has_admin"), "{}", h.name());
}

fn sales_are_found_by_id_store_and_day(h: &dyn Harness) {
    let st = h.store();
    let p = Prepared::new(&new_id(), sale("store-1", 1, 2));
    push(h, &till1(), "c", &p);
    let by_id = SaleQuery { client_tx_id: Some(p.id.clone()), limit: 10, ..SaleQuery::default() };
    let found = st.find_sales(&by_id).expect("find");
    assert_eq!(found.len(), 1, "{}", h.name());
    assert_eq!(found[0].payload_canonical, p.canonical);
    let at = p.payload.header.occurred_at_ms;
    let day = SaleQuery {
        store_id: Some("store-1".into()),
        occurred_ms: Some((at - 1, at + 1)),
        limit: 10,
        ..SaleQuery::default()
    };
    assert_eq!(st.find_sales(&day).expect("find").len(), 1, "{}", h.name());
    let other = SaleQuery { store_id: Some("store-2".into()), limit: 10, ..SaleQuery::default() };
    assert!(st.find_sales(&other).expect("find").is_empty());
}

fn ok_then_duplicate(h: &dyn Harness) {
    let s = Prepared::new(&new_id(), sale("store-1", 1, 3));
    let first = push(h, &till1(), "corr-1", &s);
    assert_eq!(first.status, PushStatus::Ok, "{}: {first:?}", h.name());
    let server_tx_id = first.server_tx_id.expect("server_tx_id on OK");
    let again = push(h, &till1(), "corr-2", &s);
    assert_eq!(again.status, PushStatus::Duplicate, "{}: {again:?}", h.name());
    assert_eq!(again.server_tx_id, Some(server_tx_id), "{}: a replay answers the stored id", h.name());
    assert_eq!(h.sale_rows(&s.id), (1, 3, 2), "{}: stored once", h.name());
    let trail = h.store().audit_trail("store-1", &s.id).expect("audit trail");
    let outcomes: Vec<_> = trail.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes, ["OK", "DUPLICATE"], "{}", h.name());
    assert_eq!(trail[1].stored_sha256.as_deref(), Some(s.sha.as_str()), "{}", h.name());
    assert_eq!(trail[1].correlation_id.as_deref(), Some("corr-2"), "{}", h.name());
    assert!(
        trail[0].at.ends_with('Z') && trail[0].at.len() == 24,
        "{}: RFC 3339 ms: {}",
        h.name(),
        trail[0].at
    );
}

fn conflict_leaves_the_stored_sale_unchanged(h: &dyn Harness) {
    let id = new_id();
    let a = Prepared::new(&id, sale("store-1", 1, 2));
    let b = Prepared::new(&id, sale("store-1", 2, 5));
    assert_ne!(a.sha, b.sha);
    assert_eq!(push(h, &till1(), "c1", &a).status, PushStatus::Ok, "{}", h.name());
    let before = h.store().stored_sale("store-1", &id).expect("read").expect("stored");
    let conflict = push(h, &till1(), "c2", &b);
    assert_eq!(conflict.status, PushStatus::Conflict, "{}: {conflict:?}", h.name());
    assert_eq!(conflict.code.as_deref(), Some("hash_differs"), "{}", h.name());
    assert_eq!(conflict.server_tx_id, None, "{}", h.name());
    let after = h.store().stored_sale("store-1", &id).expect("read").expect("stored");
    assert_eq!(before, after, "{}: nothing overwritten", h.name());
    assert_eq!(after.payload_sha256, a.sha, "{}", h.name());
    assert_eq!(h.sale_rows(&id), (1, 2, 2), "{}: A's rows only", h.name());
    let trail = h.store().audit_trail("store-1", &id).expect("audit trail");
    let last = trail.last().expect("audit rows");
    assert_eq!(last.outcome, "CONFLICT", "{}", h.name());
    assert_eq!(last.payload_sha256.as_deref(), Some(b.sha.as_str()), "{}", h.name());
    assert_eq!(last.stored_sha256.as_deref(), Some(a.sha.as_str()), "{}", h.name());
}

fn mixed_batch_row_counts(h: &dyn Harness) {
    let sales: Vec<Prepared> = [1usize, 3, 7, 2]
        .iter()
        .enumerate()
        .map(|(i, n)| Prepared::new(&new_id(), sale("store-1", i as i64, *n)))
        .collect();
    let mut statuses = Vec::new();
    for s in &sales {
        statuses.push(push(h, &till1(), "batch", s).status);
    }
    // A replay of the second and a conflict on the third, in the same "batch".
    statuses.push(push(h, &till1(), "batch", &sales[1]).status);
    let clash = Prepared::new(&sales[2].id, sale("store-1", 99, 1));
    statuses.push(push(h, &till1(), "batch", &clash).status);
    use PushStatus::*;
    assert_eq!(statuses, [Ok, Ok, Ok, Ok, Duplicate, Conflict], "{}", h.name());
    for s in &sales {
        assert_eq!(h.sale_rows(&s.id), (1, s.payload.items.len() as i64, 2), "{}: {}", h.name(), s.id);
    }
    assert_eq!(h.total("pos_transactions"), 4, "{}", h.name());
    assert_eq!(h.total("pos_transaction_items"), 13, "{}", h.name());
    assert_eq!(h.total("pos_transaction_payments"), 8, "{}", h.name());
    assert_eq!(h.total("pos_transaction_audit"), 6, "{}", h.name());
}

fn database_refusal_is_invalid_with_zero_partial_rows(h: &dyn Harness) {
    // A zero quantity passes no validation, but if one slipped through, the database's CHECK refuses
    // the item row after the header was inserted: the whole sale must roll back.
    let mut payload = sale("store-1", 5, 3);
    payload.items[2].quantity_milli = 0;
    let s = Prepared::new(&new_id(), payload);
    let result = push(h, &till1(), "c", &s);
    assert_eq!(result.status, PushStatus::Invalid, "{}: {result:?}", h.name());
    assert_eq!(result.code.as_deref(), Some("rejected_by_database"), "{}", h.name());
    assert_eq!(h.sale_rows(&s.id), (0, 0, 0), "{}: no partial sale", h.name());
    let trail = h.store().audit_trail("store-1", &s.id).expect("audit trail");
    assert_eq!(trail.len(), 1, "{}: the refusal is audited", h.name());
    assert_eq!(trail[0].outcome, "INVALID", "{}", h.name());
}

fn tokens_create_lookup_revoke_list(h: &dyn Harness) {
    let st = h.store();
    let t1 = "a".repeat(64);
    let t2 = "b".repeat(64);
    let t3 = "c".repeat(64);
    st.create_token(&till1(), &t1, Some("front till")).expect("create");
    st.create_token(&till1(), &t2, None).expect("create second");
    let other = Device { store_id: "store-2".into(), device_id: "till-9".into() };
    st.create_token(&other, &t3, None).expect("create other store");
    assert!(st.create_token(&till1(), &t1, None).is_err(), "{}: a token hash is unique", h.name());
    assert_eq!(st.lookup_token(&t1).expect("lookup"), TokenLookup::Active(till1()), "{}", h.name());
    assert_eq!(st.lookup_token(&"d".repeat(64)).expect("lookup"), TokenLookup::Unknown, "{}", h.name());
    let listed = st.list_tokens(Some("store-1")).expect("list");
    assert_eq!(listed.len(), 2, "{}", h.name());
    assert!(
        listed.iter().all(|t| t.token_sha256_prefix.len() == 12 && t.revoked_at.is_none()),
        "{}",
        h.name()
    );
    assert!(listed.iter().any(|t| t.label.as_deref() == Some("front till")), "{}", h.name());
    assert!(listed[0].created_at.ends_with('Z'), "{}: {}", h.name(), listed[0].created_at);
    assert_eq!(st.list_tokens(None).expect("list all").len(), 3, "{}", h.name());
    assert_eq!(st.revoke_tokens(&till1()).expect("revoke"), 2, "{}", h.name());
    assert_eq!(st.revoke_tokens(&till1()).expect("revoke again"), 0, "{}", h.name());
    assert_eq!(st.lookup_token(&t1).expect("lookup"), TokenLookup::Revoked, "{}", h.name());
    assert_eq!(st.lookup_token(&t3).expect("lookup"), TokenLookup::Active(other), "{}", h.name());
    assert!(st.list_tokens(Some("store-1")).expect("list")[0].revoked_at.is_some(), "{}", h.name());
}

fn attention_lists_conflicts_and_invalid_of_one_store(h: &dyn Harness) {
    let id = new_id();
    push(h, &till1(), "c1", &Prepared::new(&id, sale("store-1", 1, 1)));
    push(h, &till1(), "c2", &Prepared::new(&id, sale("store-1", 2, 1)));
    let rejection = Rejection {
        client_tx_id: "bad id!",
        attempt: Some(3),
        payload_hash_version: Some(1),
        payload_sha256: Some("0000"),
        code: "bad_client_tx_id",
        message: "client_tx_id has characters outside A-Z a-z 0-9 . _ : -",
        outbox_seq: None,
        attempted_payload: None,
    };
    h.store()
        .audit_rejections(
            &PushContext { device: &till1(), correlation_id: "c3", outbox_id: None },
            &[rejection],
        )
        .expect("audit rejection");
    let items = h.store().attention_items("store-1", None).expect("attention");
    let got: Vec<_> = items.iter().map(|r| (r.outcome.as_str(), r.client_tx_id.as_str())).collect();
    assert_eq!(got, [("CONFLICT", id.as_str()), ("INVALID", "bad id!")], "{}", h.name());
    assert_eq!(items[1].attempt, Some(3), "{}", h.name());
    assert_eq!(items[1].code.as_deref(), Some("bad_client_tx_id"), "{}", h.name());
    assert!(h.store().attention_items("store-2", None).expect("attention").is_empty(), "{}", h.name());
    let hour_ago = SystemTime::now() - Duration::from_secs(3_600);
    assert_eq!(h.store().attention_items("store-1", Some(hour_ago)).expect("since").len(), 2, "{}", h.name());
    let later = SystemTime::now() + Duration::from_secs(3_600);
    assert!(h.store().attention_items("store-1", Some(later)).expect("since").is_empty(), "{}", h.name());
}

fn prune_audit_deletes_only_old_audit_rows(h: &dyn Harness) {
    let old = Prepared::new(&new_id(), sale("store-1", 1, 2));
    let new = Prepared::new(&new_id(), sale("store-1", 2, 2));
    push(h, &till1(), "c", &old);
    push(h, &till1(), "c", &old);
    push(h, &till1(), "c", &new);
    h.age_audit(&old.id, 10);
    assert_eq!(h.store().prune_audit(30).expect("prune"), 0, "{}", h.name());
    assert_eq!(h.store().prune_audit(5).expect("prune"), 2, "{}", h.name());
    assert_eq!(h.count("pos_transaction_audit", &old.id), 0, "{}", h.name());
    assert_eq!(h.count("pos_transaction_audit", &new.id), 1, "{}", h.name());
    assert_eq!(h.sale_rows(&old.id), (1, 2, 2), "{}: sales are never pruned", h.name());
}

fn sale_hashes_and_device_sales(h: &dyn Harness) {
    let a = Prepared::new(&new_id(), sale("store-1", 1, 1));
    let b = Prepared::new(&new_id(), sale("store-1", 2, 1));
    let till2 = Device { store_id: "store-1".into(), device_id: "till-2".into() };
    push(h, &till1(), "c", &a);
    push(h, &till2, "c", &b);
    let hashes = h.store().sale_hashes(None, &[a.id.clone(), b.id.clone(), "absent".into()]).expect("hashes");
    assert_eq!(hashes.len(), 2, "{}", h.name());
    assert_eq!(hashes.get(&a.id), Some(&a.sha), "{}", h.name());
    assert_eq!(hashes.get(&b.id), Some(&b.sha), "{}", h.name());
    assert!(h.store().sale_hashes(None, &[]).expect("no ids").is_empty(), "{}", h.name());
    assert_eq!(h.store().device_sales(&till1()).expect("device sales"), vec![a.id.clone()], "{}", h.name());
    assert_eq!(h.store().device_sales(&till2).expect("device sales"), vec![b.id.clone()], "{}", h.name());
    assert!(h.store().stored_sale("store-2", &a.id).expect("other store").is_none(), "{}", h.name());
    assert!(h.store().stored_sale("store-1", "absent").expect("absent").is_none(), "{}", h.name());
}

fn ready_and_pool_state(h: &dyn Harness) {
    h.store().check_ready().expect("migrated store is ready");
    let pool = h.store().pool_state();
    assert!(
        pool.max >= 1 && pool.connections <= pool.max && pool.idle <= pool.connections,
        "{}: {pool:?}",
        h.name()
    );
}

/// SQLite only: a writer holding the file's lock past the busy timeout makes a sale `RETRY`
/// (`lock_timeout`) with nothing stored; PostgreSQL's lock-timeout case is in push_idempotency.rs.
#[test]
fn sqlite_busy_file_answers_retry_and_stores_nothing() {
    use possync_server::push::push_result;
    use possync_server::store::sqlite::{SqliteOptions, SqliteStore};
    use possync_server::store::PushStore;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shop.db");
    let opts = SqliteOptions { busy_timeout: Duration::from_millis(100), ..SqliteOptions::default() };
    let store = SqliteStore::open(&path, true, &opts).expect("open");
    store.migrate().expect("migrate");
    let blocker = rusqlite::Connection::open(&path).expect("side connection");
    blocker.execute_batch("BEGIN IMMEDIATE").expect("hold the write lock");
    let s = Prepared::new(&new_id(), sale("store-1", 1, 2));
    let result = push_result(
        &s.id,
        &store.store_sale(
            &PushContext { device: &till1(), correlation_id: "c", outbox_id: None },
            &s.checked(),
        ),
    );
    assert_eq!(
        (result.status, result.code.as_deref()),
        (PushStatus::Retry, Some("lock_timeout")),
        "{result:?}"
    );
    blocker.execute_batch("ROLLBACK").expect("release");
    let count: i64 =
        blocker.query_row("SELECT count(*) FROM pos_transaction_audit", [], |r| r.get(0)).expect("count");
    assert_eq!(count, 0, "a RETRY stores nothing, not even an audit row");
    let again = push_result(
        &s.id,
        &store.store_sale(
            &PushContext { device: &till1(), correlation_id: "c", outbox_id: None },
            &s.checked(),
        ),
    );
    assert_eq!(again.status, PushStatus::Ok, "{again:?}");
}

/// Ids are unique per store: two stores keep their own sale under one id (receipt numbers like
/// `R-0001`), a conflict names only the caller's own store's data, and `server_tx_id`s differ.
fn the_same_id_in_two_stores_is_two_sales(h: &dyn Harness) {
    let till_b = Device { store_id: "store-2".into(), device_id: "till-9".into() };
    let a = Prepared::new("R-0001", sale("store-1", 1, 2));
    let b = Prepared::new("R-0001", sale("store-2", 5, 3));
    let ok_a = push(h, &till1(), "a", &a);
    let ok_b = push(h, &till_b, "b", &b);
    assert_eq!(
        (ok_a.status, ok_b.status),
        (PushStatus::Ok, PushStatus::Ok),
        "{}: {ok_a:?} {ok_b:?}",
        h.name()
    );
    assert_ne!(ok_a.server_tx_id, ok_b.server_tx_id, "{}", h.name());
    assert_eq!(push(h, &till_b, "b2", &b).status, PushStatus::Duplicate, "{}", h.name());
    let a2 = Prepared::new("R-0001", sale("store-1", 2, 1));
    let conflict = push(h, &till1(), "a2", &a2);
    assert_eq!(conflict.status, PushStatus::Conflict, "{}: {conflict:?}", h.name());
    let message = conflict.message.unwrap_or_default();
    assert!(message.contains(&a.sha) && !message.contains(&b.sha), "{}: {message}", h.name());
    assert_eq!(h.store().stored_sale("store-1", "R-0001").expect("read").expect("a").payload_sha256, a.sha);
    assert_eq!(h.store().stored_sale("store-2", "R-0001").expect("read").expect("b").payload_sha256, b.sha);
    let only_b = h.store().sale_hashes(Some("store-2"), &["R-0001".into()]).expect("hashes");
    assert_eq!(only_b.get("R-0001"), Some(&b.sha), "{}", h.name());
    assert_eq!(h.store().audit_trail("store-2", "R-0001").expect("trail").len(), 2, "{}", h.name());
}
