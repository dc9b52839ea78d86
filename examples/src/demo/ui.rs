//! The demo's progress UI: a bar per till with its status line, headlines and details above the
//! bars; or, with `--json`, the same as JSON-lines log records.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use parking_lot::Mutex;
use possync_core::drain::DrainReport;

use super::till::Till;
use crate::inspect::{self, banner, status_line};

/// Bars, or JSON-lines logs.
pub(super) struct Ui {
    /// JSON-lines logs instead of bars.
    pub(super) json: bool,
    multi: MultiProgress,
    bars: Vec<ProgressBar>,
    last: Mutex<Vec<String>>,
}

impl Ui {
    /// A bar for each of `names` (hidden with `json`).
    pub(super) fn new(json: bool, names: &[String]) -> Ui {
        let multi = MultiProgress::with_draw_target(if json {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr_with_hz(10)
        });
        let style =
            ProgressStyle::with_template("{prefix:>7} [{bar:24.green/white}] {pos:>4}/{len:<4} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        let bars = names
            .iter()
            .map(|n| {
                let bar = multi.add(ProgressBar::new(0));
                bar.set_style(style.clone());
                bar.set_prefix(n.clone());
                bar
            })
            .collect();
        Ui { json, multi, bars, last: Mutex::new(vec![String::new(); names.len()]) }
    }

    /// A headline of the story (stdout, above the bars; or a log record).
    pub(super) fn say(&self, phase: &str, text: &str) {
        if self.json {
            log::info!(target: "possync_till", phase = phase; "{text}");
        } else {
            self.multi.suspend(|| println!("== {text}"));
        }
    }

    /// A line of detail (stdout; or a log record).
    pub(super) fn detail(&self, phase: &str, till: &str, text: &str) {
        if self.json {
            log::info!(target: "possync_till", phase = phase, till = till; "{text}");
        } else {
            self.multi.suspend(|| println!("   {till}: {text}"));
        }
    }

    /// Shows till `i`'s progress and status (a log record only when its status or backlog changed).
    pub(super) fn update(&self, i: usize, till: &Till) {
        let Ok(s) = till.engine.status() else { return };
        let handled = s.counts.sent + s.counts.conflict + s.counts.invalid;
        let line = status_line(&s);
        if self.json {
            let key = format!("{} {}", banner(&s.status), s.counts.unsent());
            let mut last = self.last.lock();
            if last[i] != key {
                last[i] = key;
                log::info!(target: "possync_till", till = till.name.as_str(), status = banner(&s.status).as_str(),
                    unsent = s.counts.unsent(), unsent_amounts = inspect::amounts(&s.unsent_by_currency).as_str(),
                    oldest_unsent_ms = s.oldest_unsent_age_ms.unwrap_or(0); "status");
            }
        } else if let Some(bar) = self.bars.get(i) {
            bar.set_length(till.rung_up.load(Ordering::SeqCst));
            bar.set_position(handled);
            bar.set_message(line);
        }
    }

    /// Shows every till's progress every 100 ms until `stop` is set, then once more.
    pub(super) fn refresh_until(&self, tills: &[Till], stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            for (i, t) in tills.iter().enumerate() {
                self.update(i, t);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for (i, t) in tills.iter().enumerate() {
            self.update(i, t);
        }
    }

    /// Leaves the bars as they are, finished.
    pub(super) fn finish(&self) {
        for bar in &self.bars {
            bar.finish();
        }
    }
}

/// One drain run in words.
pub(super) fn report_line(r: &DrainReport) -> String {
    format!(
        "drain ({}): sent {}, duplicate {}, conflict {}, retry {}, remaining {} in {} ms",
        r.reasons, r.sent, r.duplicate, r.conflict, r.retry, r.remaining_pending, r.duration_ms
    )
}
