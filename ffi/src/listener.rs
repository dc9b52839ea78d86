//! The status listener, implemented by the app in Kotlin, Swift or Python.
//!
//! Callbacks arrive on the engine's `possync-status` thread, never on the caller's thread and never on
//! the UI thread: post to the main thread before touching views. They are never made while a SQLite
//! transaction is open or on the drain thread, so a slow listener cannot stall sending (statuses are
//! coalesced: a slow listener sees the latest one). An exception thrown by a callback is logged and
//! ignored.

use std::sync::Arc;

use possync_core::drain as core_drain;
use possync_core::status as core_status;

use crate::types::{DrainReport, SyncStatus};

/// Receives the engine's status changes and run reports (on the `possync-status` thread).
#[uniffi::export(with_foreign)]
pub trait StatusListener: Send + Sync {
    /// The status changed (show it in the cashier's banner).
    fn on_status(&self, status: SyncStatus);
    /// A drain run ended.
    fn on_report(&self, report: DrainReport);
}

/// Adapts a foreign [`StatusListener`] to the core's listener trait.
pub(crate) struct ListenerBridge(pub(crate) Arc<dyn StatusListener>);

impl core_status::StatusListener for ListenerBridge {
    fn on_status(&self, status: core_status::SyncStatus) {
        self.0.on_status(status.into());
    }

    fn on_report(&self, report: core_drain::DrainReport) {
        self.0.on_report(report.into());
    }
}
