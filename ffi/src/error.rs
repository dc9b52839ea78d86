//! The errors apps see: one flat enum per concern, each variant something an app can act on, each with
//! a `reason` to show a person (the core error's message, which hints at the fix).
//!
//! All mapping from the core's rich [`possync_core::Error`] happens in the four functions below, one
//! per concern; each also decides the log level of the failure. They match every core variant by name
//! (no wildcard), so a new core error forces a decision here.

use possync_core::Error;

/// Opening the outbox or starting the engine failed. Nothing was changed on disk.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum OpenError {
    /// A config value is out of range (a bug in the app's setup); `reason` names the value.
    #[error("{reason}")]
    InvalidConfig {
        /// What is wrong, for a person.
        reason: String,
    },
    /// The outbox file is damaged or not an outbox. It was left untouched: keep it for support.
    #[error("{reason}")]
    Corrupt {
        /// The outbox file.
        path: String,
        /// What is wrong, for a person.
        reason: String,
    },
    /// The outbox file was written by a newer version of the app: update the app.
    #[error("{reason}")]
    IncompatibleVersion {
        /// The outbox file.
        path: String,
        /// The file's schema version.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
        /// What is wrong, for a person.
        reason: String,
    },
    /// The outbox file or its folder cannot be opened or written (permissions, missing folder,
    /// read-only or full storage).
    #[error("{reason}")]
    Unavailable {
        /// The outbox file.
        path: String,
        /// What is wrong, for a person.
        reason: String,
    },
    /// Another process holds the outbox locked; try again.
    #[error("{reason}")]
    Busy {
        /// What is wrong, for a person.
        reason: String,
    },
    /// Any other failure (SQLite, threads); `reason` says which.
    #[error("{reason}")]
    Internal {
        /// What is wrong, for a person.
        reason: String,
    },
}

/// Recording a sale failed. **Nothing was stored**: the app must keep the sale or tell the cashier.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum SaleError {
    /// The sale breaks a protocol rule (a bug in the app's sale building); `code` is the protocol's
    /// code (`totals_mismatch`, `no_items`, ...), see docs/protocol.md.
    #[error("{reason}")]
    Invalid {
        /// The protocol's code.
        code: String,
        /// Which rule, for a person.
        reason: String,
    },
    /// The app's own `client_tx_id` already holds a different sale: use a new id for a new sale.
    #[error("{reason}")]
    IdConflict {
        /// The id given.
        client_tx_id: String,
        /// What is wrong, for a person.
        reason: String,
    },
    /// The storage (or the configured size cap) is full; earlier sales are safe. Free space.
    #[error("{reason}")]
    StorageFull {
        /// What is wrong, for a person.
        reason: String,
    },
    /// Another process held the outbox locked too long; try again.
    #[error("{reason}")]
    Busy {
        /// What is wrong, for a person.
        reason: String,
    },
    /// The outbox cannot be written (read-only, damaged, other SQLite failure).
    #[error("{reason}")]
    Storage {
        /// What is wrong, for a person.
        reason: String,
    },
}

/// Reading the outbox (status, counts, attention list) failed.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum StorageError {
    /// Another process held the outbox locked too long; try again.
    #[error("{reason}")]
    Busy {
        /// What is wrong, for a person.
        reason: String,
    },
    /// The outbox file is damaged. It is left untouched: keep it for support.
    #[error("{reason}")]
    Corrupt {
        /// What is wrong, for a person.
        reason: String,
    },
    /// Any other storage failure.
    #[error("{reason}")]
    Storage {
        /// What is wrong, for a person.
        reason: String,
    },
}

/// A setting given after the engine opened (e.g. a new device token) was refused; the old one stays.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum ConfigError {
    /// The value is out of range or malformed; `reason` says which (never echoing a token).
    #[error("{reason}")]
    Invalid {
        /// What is wrong, for a person.
        reason: String,
    },
}

/// Resolving a sale that needs attention failed; nothing was changed.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum ResolveError {
    /// The sale does not exist, is not a conflict or invalid sale, or was resolved already.
    #[error("{reason}")]
    NotResolvable {
        /// The id given.
        client_tx_id: String,
        /// Why not, for a person.
        reason: String,
    },
    /// The corrected sale of a `Replace` breaks a protocol rule; `code` is the protocol's code.
    #[error("{reason}")]
    InvalidSale {
        /// The protocol's code.
        code: String,
        /// Which rule, for a person.
        reason: String,
    },
    /// Another process held the outbox locked too long; try again.
    #[error("{reason}")]
    Busy {
        /// What is wrong, for a person.
        reason: String,
    },
    /// The outbox cannot be written (full, read-only, damaged, other SQLite failure).
    #[error("{reason}")]
    Storage {
        /// What is wrong, for a person.
        reason: String,
    },
}

/// "Sync now" did not produce a report. Sales are never lost by it: they stay in the outbox.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum SyncError {
    /// The run did not finish in time; it goes on in the background (watch the status).
    #[error("{reason}")]
    Timeout {
        /// How long the call waited, in ms.
        waited_ms: i64,
        /// What happened, for a person.
        reason: String,
    },
    /// The engine was shut down.
    #[error("{reason}")]
    ShutDown {
        /// What happened, for a person.
        reason: String,
    },
    /// The run failed on the outbox storage.
    #[error("{reason}")]
    DrainFailed {
        /// What happened, for a person.
        reason: String,
    },
}

/// Installing the log sink failed.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum LogSinkError {
    /// Another logger of the `log` crate is already installed in this process (only one can be).
    #[error("{reason}")]
    OtherLoggerInstalled {
        /// What happened, for a person.
        reason: String,
    },
}

const TARGET: &str = "possync::ffi";

/// Maps a failure of opening the outbox or starting the engine; logged at error level.
pub fn open_error(err: Error) -> OpenError {
    let reason = err.to_string();
    log::error!(target: TARGET, error:% = reason; "cannot open the outbox or start the engine");
    match err {
        Error::Config(_) => OpenError::InvalidConfig { reason },
        Error::Corrupt { path, .. } => OpenError::Corrupt { path: path.display().to_string(), reason },
        Error::IncompatibleVersion { path, found, supported } => OpenError::IncompatibleVersion {
            path: path.display().to_string(),
            found: i64::try_from(found).unwrap_or(i64::MAX),
            supported: i64::try_from(supported).unwrap_or(i64::MAX),
            reason,
        },
        Error::ReadOnly { path }
        | Error::DiskFull { path }
        | Error::CannotOpen { path, .. }
        | Error::NotFound { path }
        | Error::OlderVersion { path, .. } => {
            OpenError::Unavailable { path: path.display().to_string(), reason }
        }
        Error::Busy { .. } => OpenError::Busy { reason },
        Error::Storage { .. }
        | Error::Thread(_)
        | Error::InvalidSale(_)
        | Error::IdConflict { .. }
        | Error::NotResolvable { .. }
        | Error::Canonical(_)
        | Error::Timeout { .. }
        | Error::ShutDown
        | Error::DrainFailed { .. } => OpenError::Internal { reason },
    }
}

/// Maps a failure of recording a sale; an invalid sale or id conflict (an app bug) is logged at warn
/// level, a storage failure at error level.
pub fn sale_error(err: Error) -> SaleError {
    let reason = err.to_string();
    match err {
        Error::InvalidSale(invalid) => {
            log::warn!(target: TARGET, code = invalid.code(), error:% = reason; "sale refused");
            SaleError::Invalid { code: invalid.code().to_owned(), reason }
        }
        Error::IdConflict { client_tx_id } => {
            log::warn!(target: TARGET, client_tx_id:% = client_tx_id, error:% = reason; "sale refused");
            SaleError::IdConflict { client_tx_id, reason }
        }
        other => {
            log::error!(target: TARGET, error:% = reason; "sale not stored");
            match other {
                Error::DiskFull { .. } => SaleError::StorageFull { reason },
                Error::Busy { .. } => SaleError::Busy { reason },
                Error::InvalidSale(_)
                | Error::IdConflict { .. }
                | Error::NotResolvable { .. }
                | Error::Canonical(_)
                | Error::Corrupt { .. }
                | Error::IncompatibleVersion { .. }
                | Error::ReadOnly { .. }
                | Error::CannotOpen { .. }
                | Error::NotFound { .. }
                | Error::OlderVersion { .. }
                | Error::Storage { .. }
                | Error::Timeout { .. }
                | Error::ShutDown
                | Error::DrainFailed { .. }
                | Error::Thread(_)
                | Error::Config(_) => SaleError::Storage { reason },
            }
        }
    }
}

/// Maps a refused setting; logged at warn level (an app bug or a mistyped token).
pub fn config_error(err: Error) -> ConfigError {
    let reason = err.to_string();
    log::warn!(target: TARGET, error:% = reason; "setting refused");
    ConfigError::Invalid { reason }
}

/// Maps a failure of resolving a sale: a sale that cannot be resolved or an invalid replacement is
/// logged at warn level, a storage failure at error level.
pub fn resolve_error(err: Error) -> ResolveError {
    let reason = err.to_string();
    match err {
        Error::NotResolvable { client_tx_id, .. } => {
            log::warn!(target: TARGET, client_tx_id:% = client_tx_id, error:% = reason; "sale not resolved");
            ResolveError::NotResolvable { client_tx_id, reason }
        }
        Error::InvalidSale(invalid) => {
            log::warn!(target: TARGET, code = invalid.code(), error:% = reason; "replacement refused");
            ResolveError::InvalidSale { code: invalid.code().to_owned(), reason }
        }
        Error::Busy { .. } => {
            log::warn!(target: TARGET, error:% = reason; "outbox busy");
            ResolveError::Busy { reason }
        }
        Error::IdConflict { .. }
        | Error::Canonical(_)
        | Error::Corrupt { .. }
        | Error::IncompatibleVersion { .. }
        | Error::NotFound { .. }
        | Error::OlderVersion { .. }
        | Error::ReadOnly { .. }
        | Error::DiskFull { .. }
        | Error::CannotOpen { .. }
        | Error::Storage { .. }
        | Error::Timeout { .. }
        | Error::ShutDown
        | Error::DrainFailed { .. }
        | Error::Thread(_)
        | Error::Config(_) => {
            log::error!(target: TARGET, error:% = reason; "sale not resolved");
            ResolveError::Storage { reason }
        }
    }
}

/// Maps a failure of reading the outbox; logged at warn level when busy, error level otherwise.
pub fn storage_error(err: Error) -> StorageError {
    let reason = err.to_string();
    match err {
        Error::Busy { .. } => {
            log::warn!(target: TARGET, error:% = reason; "outbox busy");
            StorageError::Busy { reason }
        }
        Error::Corrupt { .. } => {
            log::error!(target: TARGET, error:% = reason; "outbox corrupt");
            StorageError::Corrupt { reason }
        }
        Error::InvalidSale(_)
        | Error::IdConflict { .. }
        | Error::NotResolvable { .. }
        | Error::Canonical(_)
        | Error::IncompatibleVersion { .. }
        | Error::ReadOnly { .. }
        | Error::DiskFull { .. }
        | Error::CannotOpen { .. }
        | Error::NotFound { .. }
        | Error::OlderVersion { .. }
        | Error::Storage { .. }
        | Error::Timeout { .. }
        | Error::ShutDown
        | Error::DrainFailed { .. }
        | Error::Thread(_)
        | Error::Config(_) => {
            log::error!(target: TARGET, error:% = reason; "cannot read the outbox");
            StorageError::Storage { reason }
        }
    }
}

/// Maps a failure of "Sync now": a timeout or shutdown is logged at info level (nothing is wrong with
/// the sales), a failed run at error level.
pub fn sync_error(err: Error) -> SyncError {
    let reason = err.to_string();
    match err {
        Error::Timeout { waited_ms } => {
            log::info!(target: TARGET, waited_ms; "sync now timed out; the run goes on");
            SyncError::Timeout { waited_ms: i64::try_from(waited_ms).unwrap_or(i64::MAX), reason }
        }
        Error::ShutDown => {
            log::info!(target: TARGET, "sync now after shutdown");
            SyncError::ShutDown { reason }
        }
        Error::InvalidSale(_)
        | Error::IdConflict { .. }
        | Error::NotResolvable { .. }
        | Error::Canonical(_)
        | Error::Corrupt { .. }
        | Error::IncompatibleVersion { .. }
        | Error::ReadOnly { .. }
        | Error::DiskFull { .. }
        | Error::Busy { .. }
        | Error::CannotOpen { .. }
        | Error::NotFound { .. }
        | Error::OlderVersion { .. }
        | Error::Storage { .. }
        | Error::DrainFailed { .. }
        | Error::Thread(_)
        | Error::Config(_) => {
            log::error!(target: TARGET, error:% = reason; "sync now failed");
            SyncError::DrainFailed { reason }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use possync_core::protocol::InvalidSale;

    use super::*;

    #[test]
    fn invalid_sale_keeps_its_protocol_code_and_a_reason_to_show() {
        match sale_error(Error::InvalidSale(InvalidSale::NoItems)) {
            SaleError::Invalid { code, reason } => {
                assert_eq!(code, "no_items");
                assert!(reason.contains("no_items"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_concern_maps_the_failures_an_app_acts_on() {
        let path = PathBuf::from("/tmp/outbox.db");
        assert!(matches!(sale_error(Error::DiskFull { path: path.clone() }), SaleError::StorageFull { .. }));
        assert!(matches!(
            sale_error(Error::IdConflict { client_tx_id: "a".into() }),
            SaleError::IdConflict { client_tx_id, .. } if client_tx_id == "a"
        ));
        assert!(matches!(open_error(Error::Config("bad".into())), OpenError::InvalidConfig { .. }));
        assert!(matches!(
            open_error(Error::IncompatibleVersion { path: path.clone(), found: 9, supported: 2 }),
            OpenError::IncompatibleVersion { found: 9, supported: 2, .. }
        ));
        assert!(matches!(storage_error(Error::Busy { path }), StorageError::Busy { .. }));
        assert!(matches!(
            sync_error(Error::Timeout { waited_ms: 5 }),
            SyncError::Timeout { waited_ms: 5, .. }
        ));
        assert!(matches!(sync_error(Error::ShutDown), SyncError::ShutDown { .. }));
    }
}
