//! The demo's final check: exactly once, counted on the tills and, for an in-process server, on
//! the server's rows too.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use possync_core::outbox::SaleState;

use super::backend::Backend;
use super::till::Till;
use super::ui::Ui;
use crate::inspect;
use crate::TillError;

/// The exactly-once check: every sale rung up is sent or a kept conflict, nothing unsent or invalid,
/// `expected_conflicts` conflicts; with an in-process server also every sent sale on the server
/// once, with its hash, and nothing else.
///
/// # Errors
/// [`TillError::CheckFailed`] naming every problem found; a storage or server error.
pub(super) fn final_check(
    backend: &Backend,
    tills: &[Till],
    ui: &Ui,
    expected_conflicts: u64,
) -> Result<(), TillError> {
    let mut problems = Vec::new();
    let (mut rung, mut sent, mut conflicts, mut on_server) = (0u64, 0u64, 0u64, 0u64);
    for t in tills {
        let c = t.outbox().counts()?;
        let n = t.rung_up.load(Ordering::SeqCst);
        rung += n;
        sent += c.sent;
        conflicts += c.conflict;
        if c.unsent() != 0 || c.invalid != 0 || c.sent + c.conflict != n {
            problems.push(format!(
                "{}: rang up {n}, sent {}, conflict {}, invalid {}, unsent {}",
                t.name,
                c.sent,
                c.conflict,
                c.invalid,
                c.unsent()
            ));
        }
        if let Backend::InProcess { store, .. } = backend {
            let report = possync_server::verify::verify(&**store, t.outbox(), None, Some(&t.device))
                .map_err(|e| TillError::Demo(e.to_string()))?;
            let server_ids: HashSet<String> = store.device_sales(&t.device)?.into_iter().collect();
            let sent_ids: HashSet<String> = t
                .outbox()
                .summaries()?
                .into_iter()
                .filter(|e| e.state == SaleState::Sent)
                .map(|e| e.client_tx_id)
                .collect();
            on_server += server_ids.len() as u64;
            if !report.is_clean() || !report.extra.is_empty() || server_ids != sent_ids {
                problems.push(format!(
                    "{}: {} missing, {} mismatched, {} extra on the server; {} on the server vs {} sent",
                    t.name,
                    report.missing.len(),
                    report.mismatched.len(),
                    report.extra.len(),
                    server_ids.len(),
                    sent_ids.len()
                ));
            }
        }
    }
    if conflicts != expected_conflicts {
        problems.push(format!("{conflicts} conflict(s), expected {expected_conflicts}"));
    }
    let summary = match backend {
        Backend::InProcess { .. } => {
            if on_server != sent {
                problems.push(format!("{on_server} sale(s) on the server, {sent} sent by the tills"));
            }
            format!(
                "rang up {rung} sale(s) on {} till(s): {sent} sent, {on_server} on the server (each once), \
                 {conflicts} conflict(s) kept on the till for a person, 0 unsent",
                tills.len()
            )
        }
        Backend::Remote { url } => {
            inspect::check_ready(url)?;
            format!(
                "rang up {rung} sale(s) on {} till(s): {sent} sent (OK or DUPLICATE), {conflicts} conflict(s), \
                 0 unsent; {url}/readyz is 200. Not checked from here: the server's rows (keep the \
                 outboxes with --keep DIR and run `possync-server verify --outbox DIR/till-1.db` where \
                 the database is)",
                tills.len()
            )
        }
    };
    ui.say("check", &summary);
    if problems.is_empty() {
        if ui.json {
            log::info!(target: "possync_till", phase = "check", result = "ok"; "exactly once: OK");
        }
        println!("exactly once: OK");
        Ok(())
    } else {
        Err(TillError::CheckFailed(problems.join("; ")))
    }
}
