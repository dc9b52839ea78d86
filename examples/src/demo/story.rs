//! The demo's story, step by step: ring up online, go offline and come back, "Sync now", a
//! deliberate CONFLICT; and the helpers that ring up sales and wait for the tills to drain.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use possync_core::reason::DrainReason;
use possync_core::status::SyncStatus;
use rand::{RngExt, SeedableRng};

use super::backend::Backend;
use super::check::final_check;
use super::till::Till;
use super::ui::{report_line, Ui};
use super::DemoArgs;
use crate::inspect::status_line;
use crate::TillError;

/// Now, Unix ms.
pub(super) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Each till rings up `n` sales at about `pace_ms` apart, all tills at once.
pub(super) fn ring_up(tills: &[Till], n: u32, pace_ms: u64, seed: u64) -> Result<(), TillError> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = tills
            .iter()
            .enumerate()
            .map(|(i, till)| {
                scope.spawn(move || -> Result<(), TillError> {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (i as u64 + 1) << 32);
                    for _ in 0..n {
                        let sale = till.register.lock().ring_up(now_ms());
                        till.outbox().enqueue(&sale)?;
                        till.rung_up.fetch_add(1, Ordering::SeqCst);
                        if pace_ms > 0 {
                            std::thread::sleep(Duration::from_millis(rng.random_range(0..=2 * pace_ms)));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join().unwrap_or_else(|_| Err(TillError::Demo("a till thread panicked".into())))
        })
    })
}

/// Waits until no till has unsent sales.
pub(super) fn wait_drained(tills: &[Till], within: Duration) -> Result<(), TillError> {
    let deadline = Instant::now() + within;
    loop {
        let mut unsent = 0;
        for t in tills {
            unsent += t.outbox().counts()?.unsent();
        }
        if unsent == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(TillError::Demo(format!(
                "{unsent} sale(s) still unsent after {} s",
                within.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The story: sales online, an offline period (the in-process server stops and comes back), "Sync
/// now", a deliberate conflict between two tills, then the final check.
pub(super) fn story(
    args: &DemoArgs,
    backend: &mut Backend,
    tills: &[Till],
    ui: &Ui,
    store_id: &str,
) -> Result<(), TillError> {
    let drain_wait = Duration::from_secs(120);
    let first = args.sales / 3;
    let second = args.sales / 3;
    let third = args.sales - first - second;

    ui.say("online", &format!("ringing up {first} sales per till; the tills drain every 500 ms"));
    ring_up(tills, first, args.pace_ms, args.seed)?;
    wait_drained(tills, drain_wait)?;

    let remote = matches!(backend, Backend::Remote { .. });
    if remote {
        ui.say("offline", "a real server cannot be stopped from here: no offline period; ringing up on");
        ring_up(tills, second, args.pace_ms, args.seed.wrapping_add(1))?;
    } else {
        ui.say("offline", "OFFLINE: the server stops (new connections are refused, a kept-alive one times out); sales pile up");
        backend.stop();
        let until = Instant::now() + Duration::from_millis(args.offline_ms);
        ring_up(tills, second, args.pace_ms, args.seed.wrapping_add(1))?;
        for t in tills {
            t.engine.trigger(DrainReason::Focus);
        }
        // Until each till has tried and seen the server gone, and the offline period is over.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut all_offline = true;
            for t in tills {
                all_offline &= matches!(t.engine.status()?.status, SyncStatus::Offline { .. });
            }
            if (all_offline && Instant::now() >= until) || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for t in tills {
            ui.detail("offline", &t.name, &status_line(&t.engine.status()?));
        }
        ui.say(
            "online",
            "BACK ONLINE: the server is up again on the same port; each till gets an Online trigger",
        );
        backend.restart()?;
    }
    let seen: Vec<usize> = tills.iter().map(|t| t.reports.0.lock().len()).collect();
    for t in tills {
        t.engine.trigger(DrainReason::Online);
    }
    wait_drained(tills, drain_wait)?;
    for (t, seen) in tills.iter().zip(seen) {
        let reports = t.reports.0.lock();
        let online = reports[seen.min(reports.len())..]
            .iter()
            .find(|r| r.reasons.contains(DrainReason::Online) && r.settled() > 0)
            .or_else(|| {
                reports[seen.min(reports.len())..].iter().find(|r| r.reasons.contains(DrainReason::Online))
            });
        let text = online.map_or_else(|| "the backlog went with an interval drain".to_owned(), report_line);
        ui.detail("online", &t.name, &text);
    }

    ui.say("sync_now", &format!("ringing up {third} more sales per till, then \"Sync now\" on each till"));
    ring_up(tills, third, 0, args.seed.wrapping_add(2))?;
    for t in tills {
        let report = t.engine.sync_now(Duration::from_secs(60))?;
        ui.detail("sync_now", &t.name, &report_line(&report));
    }

    let mut expected_conflicts = 0;
    if tills.len() >= 2 {
        ui.say(
            "conflict",
            "a deliberate CONFLICT: till-1 and till-2 record different sales under the same client_tx_id",
        );
        let id = uuid::Uuid::now_v7().to_string();
        for t in &tills[..2] {
            let sale = t.register.lock().ring_up(now_ms());
            t.outbox().enqueue_with_id(&id, &sale)?;
            t.rung_up.fetch_add(1, Ordering::SeqCst);
            // The till sends it by itself (a recorded sale starts a run); "Sync now" waits until it
            // has been answered, whichever run sent it.
            t.engine.sync_now(Duration::from_secs(60))?;
            let state = t.outbox().get(&id)?.map_or("missing", |e| e.state.as_str());
            ui.detail(
                "conflict",
                &t.name,
                &format!("sale {id}: {state} · {}", status_line(&t.engine.status()?)),
            );
        }
        expected_conflicts = 1;
        if let Backend::InProcess { store, .. } = backend {
            let items = store.attention_items(store_id, None)?;
            ui.detail(
                "conflict",
                "server",
                &format!("{} attempt(s) need a person (possync-server attention list)", items.len()),
            );
        }
    } else {
        ui.say("conflict", "one till only: no deliberate conflict (it needs two tills)");
    }

    wait_drained(tills, drain_wait)?;
    final_check(backend, tills, ui, expected_conflicts)
}
