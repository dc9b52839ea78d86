//! The store's flows off the push path, written once over the [`Driver`] seam for both stores: the
//! admin work ([`AdminStore`]: tokens, the audit trail, attention review, retention, gaps and
//! recheck, sale search, console admins and sessions), recording a device's news (with an outbox's
//! replacement) and the acknowledged-sales check ([`check_acknowledged`]; its plan is
//! [`tills::plan_recovery`]). One row-mapping function per row type reads the
//! columns of the dialects' statements, which return them in the same order.
//!
//! Times are the app's: expired console sessions are deleted by the `now_ms` the caller passes, and
//! deleting an admin deletes their sessions explicitly (no reliance on a foreign-key cascade).

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use super::driver::{args, Conn, Driver, Param, Row, Statements};
use super::tills::{self, device_gaps, Acknowledged, GapKind};
use super::{
    AckCheck, AdminStore, AttentionEntry, AuditRecord, ConsoleSession, Device, DeviceActivity, RecoveryPlan,
    SaleQuery, SaleRecord, SeqGap, StoreError, StoredSale, TillReport, TillStatus, TokenInfo,
};

/// Audit rows deleted per statement by [`AdminStore::prune_audit`], so each write stays short.
const PRUNE_BATCH_ROWS: i64 = 10_000;

/// Sale ids looked up per statement by [`AdminStore::sale_hashes`].
const HASH_LOOKUP_CHUNK: usize = 10_000;

/// Unix milliseconds of a time (negative before 1970).
fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// An `INTEGER` column read as `i32`, capped at its range.
fn int32(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX })
}

fn token_info(r: &dyn Row) -> Result<TokenInfo, StoreError> {
    Ok(TokenInfo {
        token_sha256_prefix: r.text(0)?,
        store_id: r.text(1)?,
        device_id: r.text(2)?,
        label: r.opt_text(3)?,
        created_at: r.text(4)?,
        revoked_at: r.opt_text(5)?,
    })
}

/// The audit columns, first in every statement that reads audit rows.
fn audit_record(r: &dyn Row) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        audit_id: r.int(0)?,
        at: r.text(1)?,
        store_id: r.text(2)?,
        device_id: r.text(3)?,
        client_tx_id: r.text(4)?,
        correlation_id: r.opt_text(5)?,
        attempt: r.opt_int(6)?.map(int32),
        outcome: r.text(7)?,
        code: r.opt_text(8)?,
        message: r.opt_text(9)?,
        payload_hash_version: r.opt_int(10)?.map(int32),
        payload_sha256: r.opt_text(11)?,
        stored_sha256: r.opt_text(12)?,
    })
}

fn attention_entry(r: &dyn Row) -> Result<AttentionEntry, StoreError> {
    Ok(AttentionEntry {
        record: audit_record(r)?,
        outbox_seq: r.opt_int(13)?,
        attempted_payload: r.opt_text(14)?,
        stored_payload: r.opt_text(15)?,
        settled_at_ms: r.opt_int(16)?,
        settled_by: r.opt_text(17)?,
        settled_note: r.opt_text(18)?,
    })
}

fn stored_sale(r: &dyn Row) -> Result<StoredSale, StoreError> {
    Ok(StoredSale {
        server_tx_id: r.int(0)?,
        payload_sha256: r.text(1)?,
        payload_hash_version: int32(r.int(2)?),
        device_id: r.text(3)?,
        received_at: r.text(4)?,
    })
}

fn till_status(r: &dyn Row) -> Result<TillStatus, StoreError> {
    Ok(TillStatus {
        store_id: r.text(0)?,
        device_id: r.text(1)?,
        label: r.opt_text(2)?,
        token_active: r.flag(3)?,
        last_seen_ms: r.opt_int(4)?,
        last_push_ms: r.opt_int(5)?,
        reported_at_ms: r.opt_int(6)?,
        report: TillReport {
            library_version: r.opt_text(7)?,
            unsent_count: r.opt_int(8)?,
            oldest_unsent_age_ms: r.opt_int(9)?,
            unsent_minor: r.opt_text(10)?,
            last_seq: r.opt_int(11)?,
            seq_start: r.opt_int(12)?,
            outbox_id: r.opt_text(14)?,
            acked_seq: r.opt_int(15)?,
            kept_seq: r.opt_int(16)?,
            kept_since_ms: r.opt_int(17)?,
        },
        sales_today: r.int(13)?,
    })
}

/// A run lost for good, as a gap.
fn lost_run(r: &dyn Row) -> Result<SeqGap, StoreError> {
    let replaced = r.text(5)? == "replaced";
    Ok(SeqGap {
        store_id: r.text(0)?,
        device_id: r.text(1)?,
        previous_outbox: if replaced { Some(r.text(2)?) } else { None },
        from: r.int(3)?,
        to: r.int(4)?,
        after_last_received: false,
        kind: GapKind::Lost,
    })
}

/// A device's sequence bookkeeping, as `seq_gaps` reads it.
struct SeqState {
    device: Device,
    contiguous: i64,
    last_seq: Option<i64>,
    outbox_id: Option<String>,
    replaced: bool,
    acked: Acknowledged,
}

fn seq_state(r: &dyn Row) -> Result<SeqState, StoreError> {
    Ok(SeqState {
        device: Device { store_id: r.text(0)?, device_id: r.text(1)? },
        contiguous: r.int(2)?,
        last_seq: r.opt_int(3)?,
        outbox_id: r.opt_text(4)?,
        replaced: r.flag(5)?,
        acked: Acknowledged { acked_seq: r.opt_int(6)?, kept_seq: r.opt_int(7)? },
    })
}

fn sale_record(r: &dyn Row) -> Result<SaleRecord, StoreError> {
    Ok(SaleRecord {
        server_tx_id: r.int(0)?,
        store_id: r.text(1)?,
        client_tx_id: r.text(2)?,
        device_id: r.text(3)?,
        outbox_seq: r.opt_int(4)?,
        occurred_ms: r.int(5)?,
        received_ms: r.int(6)?,
        payload_canonical: r.text(7)?,
    })
}

fn console_session(r: &dyn Row) -> Result<ConsoleSession, StoreError> {
    Ok(ConsoleSession { admin_name: r.text(0)?, csrf_token: r.text(1)? })
}

/// A device's outbox bookkeeping, as an outbox's replacement reads it.
struct OutboxState {
    outbox_id: Option<String>,
    contiguous: i64,
    last_seq: Option<i64>,
    replaced: bool,
    /// The incoming report is at least as new as the stored one.
    newer: bool,
}

fn outbox_state(r: &dyn Row) -> Result<OutboxState, StoreError> {
    Ok(OutboxState {
        outbox_id: r.opt_text(0)?,
        contiguous: r.int(1)?,
        last_seq: r.opt_int(2)?,
        replaced: r.flag(3)?,
        newer: r.flag(4)?,
    })
}

/// Settled sequence numbers of a device's outbox in (`after`, `upto`], at most `limit`
/// (`select_settled_seqs`).
#[allow(clippy::too_many_arguments)]
fn settled_seqs(
    conn: &mut dyn Conn,
    sql: &Statements,
    device: &Device,
    after: i64,
    outbox_id: Option<&str>,
    replaced: bool,
    upto: i64,
    limit: i64,
) -> Result<Vec<i64>, StoreError> {
    conn.rows(
        sql.select_settled_seqs,
        args![&device.store_id, &device.device_id, after, outbox_id, replaced, upto, limit],
        |r| r.int(0),
    )
}

/// When a report newer than the stored one names another outbox than the device's (its outbox was
/// wiped or replaced): keeps what the old outbox never delivered (its gaps and the run up to its last
/// report) as lost runs, and starts the device's sequence bookkeeping from scratch under `new_id`.
/// A device seen without an identity before (an older library) adopts it without a reset.
fn replace_outbox_if_new(
    conn: &mut dyn Conn,
    sql: &Statements,
    device: &Device,
    new_id: &str,
    reported_ms: i64,
) -> Result<(), StoreError> {
    let (store, dev) = (&device.store_id, &device.device_id);
    let Some(state) = conn.row(sql.select_outbox_state, args![store, dev, reported_ms], outbox_state)? else {
        return Ok(());
    };
    let Some(old_id) = state.outbox_id.filter(|old| old != new_id && state.newer) else {
        return Ok(());
    };
    let seqs =
        settled_seqs(conn, sql, device, state.contiguous, Some(&old_id), state.replaced, i64::MAX, i64::MAX)?;
    let (lost, _) = device_gaps(store, dev, &seqs, state.contiguous, state.last_seq, Acknowledged::default());
    for run in &lost {
        conn.execute(sql.insert_lost_run, args![store, dev, &old_id, run.from, run.to, "replaced"])?;
    }
    conn.execute(sql.replace_outbox, args![store, dev, new_id])?;
    conn.execute(sql.delete_retired_seqs, args![store, dev])?;
    log::warn!(store_id = store.as_str(), device_id = dev.as_str(), old_outbox = old_id.as_str(),
        new_outbox = new_id, lost_runs = lost.len(); "till's outbox replaced");
    Ok(())
}

/// [`super::PushStore::record_activity`]: an outbox's replacement first, then the device's news, in
/// one transaction.
pub(crate) fn record_activity<D: Driver>(
    db: &D,
    device: &Device,
    activity: &DeviceActivity<'_>,
) -> Result<(), StoreError> {
    let sql = db.statements();
    let empty = TillReport::default();
    let report = activity.report.unwrap_or(&empty);
    db.in_transaction(|conn| {
        if let (Some(new_id), Some(at)) = (report.outbox_id.as_deref(), activity.reported_ms) {
            replace_outbox_if_new(conn, sql, device, new_id, at)?;
        }
        let params: &[Param<'_>] = args![
            &device.store_id,
            &device.device_id,
            activity.retired_seqs,
            activity.seen_ms,
            activity.pushed_ms,
            activity.report.and(activity.reported_ms),
            &report.library_version,
            report.unsent_count,
            report.oldest_unsent_age_ms,
            &report.unsent_minor,
            report.last_seq,
            report.seq_start,
            &report.outbox_id,
            report.acked_seq,
            report.kept_seq,
            report.kept_since_ms,
        ];
        if let Some(insert_retired) = sql.insert_retired_seqs {
            if !activity.retired_seqs.is_empty() {
                conn.execute(insert_retired, &params[..3])?;
            }
        }
        conn.execute(sql.record_activity, params)?;
        Ok(())
    })
}

/// [`super::PushStore::check_acknowledged`] in one transaction: from the device's checked settled
/// run (none yet: from 0; another outbox stored: an empty plan), reads at most
/// [`tills::MAX_CHECK_SEQS`] settled numbers up to the till's `acked_seq`, plans with
/// [`tills::plan_recovery`], records the runs lost for good (cause `pruned`) and moves the run up (a
/// status row it makes is first seen at `now_ms`).
pub(crate) fn check_acknowledged<D: Driver>(
    db: &D,
    device: &Device,
    check: &AckCheck,
    now_ms: i64,
) -> Result<RecoveryPlan, StoreError> {
    let sql = db.statements();
    let (store, dev, outbox) = (&device.store_id, &device.device_id, check.outbox_id.as_str());
    db.in_transaction(|conn| {
        let state = conn.row(sql.select_recovery_state, args![store, dev], |r| {
            Ok((r.opt_text(0)?, r.int(1)?, r.flag(2)?))
        })?;
        let (contiguous, replaced) = match &state {
            None => (0, false),
            Some((stored, _, _)) if stored.as_deref().is_some_and(|id| id != outbox) => {
                return Ok(RecoveryPlan::default());
            }
            Some((_, contiguous, replaced)) => (*contiguous, *replaced),
        };
        if check.acked_seq <= contiguous {
            return Ok(RecoveryPlan { contiguous, ..RecoveryPlan::default() });
        }
        let limit = tills::MAX_CHECK_SEQS;
        let seqs =
            settled_seqs(conn, sql, device, contiguous, Some(outbox), replaced, check.acked_seq, limit)?;
        let scanned_to = match seqs.last() {
            Some(last) if seqs.len() as i64 >= limit => *last,
            _ => check.acked_seq,
        };
        let plan = tills::plan_recovery(&seqs, contiguous, scanned_to, check.kept_seq);
        for (from, to) in &plan.lost {
            conn.execute(sql.insert_lost_run, args![store, dev, outbox, *from, *to, "pruned"])?;
        }
        if plan.contiguous > contiguous || state.is_none() {
            conn.execute(sql.upsert_contiguous, args![store, dev, plan.contiguous, outbox, now_ms])?;
        }
        Ok(plan)
    })
}

impl<D: Driver> AdminStore for D {
    fn create_token(
        &self,
        device: &Device,
        token_sha256: &str,
        label: Option<&str>,
    ) -> Result<(), StoreError> {
        let sql = self.statements();
        self.with_conn(|c| {
            c.execute(sql.insert_token, args![token_sha256, &device.store_id, &device.device_id, label])
        })?;
        Ok(())
    }

    fn revoke_tokens(&self, device: &Device) -> Result<u64, StoreError> {
        let sql = self.statements();
        self.in_transaction(|c| {
            let revoked = c.execute(sql.revoke_tokens, args![&device.store_id, &device.device_id])?;
            if let Some(notify) = sql.notify_revoked.filter(|_| revoked > 0) {
                let what = format!("{}/{}", device.store_id, device.device_id);
                c.execute(notify, args![&what])?;
            }
            Ok(revoked)
        })
    }

    fn list_tokens(&self, store_id: Option<&str>) -> Result<Vec<TokenInfo>, StoreError> {
        let sql = self.statements();
        self.with_conn(|c| c.rows(sql.list_tokens, args![store_id], token_info))
    }

    fn attention_items(
        &self,
        store_id: &str,
        since: Option<SystemTime>,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let sql = self.statements();
        self.with_conn(|c| c.rows(sql.select_attention, args![store_id, since.map(unix_ms)], audit_record))
    }

    fn audit_trail(&self, store_id: &str, client_tx_id: &str) -> Result<Vec<AuditRecord>, StoreError> {
        let sql = self.statements();
        self.with_conn(|c| c.rows(sql.select_audit_trail, args![store_id, client_tx_id], audit_record))
    }

    fn stored_sale(&self, store_id: &str, client_tx_id: &str) -> Result<Option<StoredSale>, StoreError> {
        let sql = self.statements();
        self.with_conn(|c| c.row(sql.select_stored_sale, args![store_id, client_tx_id], stored_sale))
    }

    fn prune_audit(&self, older_than_days: u32) -> Result<u64, StoreError> {
        let sql = self.statements();
        let days = i64::from(older_than_days.min(i32::MAX as u32));
        self.with_conn(|c| {
            let mut deleted = 0;
            loop {
                let n = c.execute(sql.prune_audit_batch, args![days, PRUNE_BATCH_ROWS])?;
                deleted += n;
                if n < PRUNE_BATCH_ROWS as u64 {
                    return Ok(deleted);
                }
            }
        })
    }

    fn sale_hashes(
        &self,
        store_id: Option<&str>,
        client_tx_ids: &[String],
    ) -> Result<HashMap<String, String>, StoreError> {
        let sql = self.statements();
        self.with_conn(|c| {
            let mut found = HashMap::with_capacity(client_tx_ids.len());
            for chunk in client_tx_ids.chunks(HASH_LOOKUP_CHUNK) {
                c.query(sql.select_hashes, args![chunk, store_id], &mut |r| {
                    found.insert(r.text(0)?, r.text(1)?);
                    Ok(())
                })?;
            }
            Ok(found)
        })
    }

    fn device_sales(&self, device: &Device) -> Result<Vec<String>, StoreError> {
        let sql = self.statements();
        self.with_conn(|c| {
            c.rows(sql.select_device_sales, args![&device.store_id, &device.device_id], |r| r.text(0))
        })
    }

    fn tills(&self, day_start_ms: i64) -> Result<Vec<TillStatus>, StoreError> {
        let sql = self.statements();
        self.with_conn(|c| c.rows(sql.select_tills, args![day_start_ms], till_status))
    }

    fn seq_gaps(&self, store_id: Option<&str>) -> Result<Vec<SeqGap>, StoreError> {
        let sql = self.statements();
        self.with_conn(|c| {
            let mut gaps = c.rows(sql.select_lost_runs, args![store_id], lost_run)?;
            for s in c.rows(sql.select_seq_states, args![store_id], seq_state)? {
                let seqs = settled_seqs(
                    c,
                    sql,
                    &s.device,
                    s.contiguous,
                    s.outbox_id.as_deref(),
                    s.replaced,
                    i64::MAX,
                    i64::MAX,
                )?;
                let (store, device) = (&s.device.store_id, &s.device.device_id);
                let (found, new_contiguous) =
                    device_gaps(store, device, &seqs, s.contiguous, s.last_seq, s.acked);
                if new_contiguous > s.contiguous {
                    c.execute(sql.advance_contiguous, args![store, device, new_contiguous, &s.outbox_id])?;
                }
                gaps.extend(found);
            }
            gaps.sort_by(|a, b| (&a.store_id, &a.device_id).cmp(&(&b.store_id, &b.device_id)));
            Ok(gaps)
        })
    }

    fn recheck_seqs(&self, store_id: Option<&str>) -> Result<u64, StoreError> {
        let sql = self.statements();
        self.with_conn(|c| c.execute(sql.reset_contiguous, args![store_id]))
    }

    fn attention_entries(
        &self,
        store_id: Option<&str>,
        include_settled: bool,
        limit: u32,
    ) -> Result<Vec<AttentionEntry>, StoreError> {
        let sql = self.statements();
        self.with_conn(|c| {
            c.rows(
                sql.select_attention_entries,
                args![store_id, include_settled, i64::from(limit)],
                attention_entry,
            )
        })
    }

    fn mark_reviewed(
        &self,
        client_tx_id: &str,
        audit_id: i64,
        admin: &str,
        note: &str,
    ) -> Result<bool, StoreError> {
        let sql = self.statements();
        let n =
            self.with_conn(|c| c.execute(sql.mark_reviewed, args![client_tx_id, audit_id, admin, note]))?;
        Ok(n > 0)
    }

    fn find_sales(&self, query: &SaleQuery) -> Result<Vec<SaleRecord>, StoreError> {
        let sql = self.statements();
        let (from, to) = match query.occurred_ms {
            Some((from, to)) => (Some(from), Some(to)),
            None => (None, None),
        };
        let params = args![&query.store_id, &query.client_tx_id, from, to, i64::from(query.limit)];
        self.with_conn(|c| c.rows(sql.find_sales, params, sale_record))
    }

    fn create_admin(&self, name: &str, secret_phc: &str) -> Result<bool, StoreError> {
        let sql = self.statements();
        Ok(self.with_conn(|c| c.execute(sql.insert_admin, args![name, secret_phc]))? > 0)
    }

    fn delete_admin(&self, name: &str) -> Result<bool, StoreError> {
        let sql = self.statements();
        self.in_transaction(|c| {
            c.execute(sql.delete_admin_sessions, args![name])?;
            Ok(c.execute(sql.delete_admin, args![name])? > 0)
        })
    }

    fn admin_secret(&self, name: &str) -> Result<Option<String>, StoreError> {
        let sql = self.statements();
        self.with_conn(|c| c.row(sql.select_admin_secret, args![name], |r| r.text(0)))
    }

    fn has_admin(&self) -> Result<bool, StoreError> {
        let sql = self.statements();
        Ok(self.with_conn(|c| c.row(sql.has_admin, &[], |r| r.flag(0)))?.unwrap_or(false))
    }

    fn create_session(
        &self,
        session_sha256: &str,
        admin: &str,
        csrf_token: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = self.statements();
        self.with_conn(|c| {
            c.execute(sql.delete_expired_sessions, args![now_ms])?;
            c.execute(sql.insert_session, args![session_sha256, admin, csrf_token, expires_ms])
        })?;
        Ok(())
    }

    fn session(&self, session_sha256: &str, now_ms: i64) -> Result<Option<ConsoleSession>, StoreError> {
        let sql = self.statements();
        self.with_conn(|c| c.row(sql.select_session, args![session_sha256, now_ms], console_session))
    }

    fn delete_session(&self, session_sha256: &str) -> Result<(), StoreError> {
        let sql = self.statements();
        self.with_conn(|c| c.execute(sql.delete_session, args![session_sha256]))?;
        Ok(())
    }
}
