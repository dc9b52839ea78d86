//! The errors apps see: one flat enum per concern, each variant something an app can act on, each with
//! a `reason` to show a person (the core error's message, which hints at the fix).
//!
//! The core's errors are split by the same concerns ([`possync_core::StorageError`],
//! [`possync_core::SaleError`], [`possync_core::SyncError`], [`possync_core::ConfigError`]) and each is
//! converted here **once**, by a `From` impl that matches its variants by name (no wildcard) and decides
//! the log level. A new core variant is one edit: the storage failures, which every concern can meet,
//! go through [`StorageError`] first, and the app-facing enums of the other concerns take it from
//! there. Engine methods only write `.map_err(Into::into)`.

use possync_core as pc;

/// Opening the outbox or starting the engine failed. Nothing was changed on disk.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum OpenError {
    /// A config value (or the token) is out of range (a bug in the app's setup); `reason` names it.
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

/// Recording or resolving a sale failed. **Nothing was stored or changed**: when recording, the app
/// must keep the sale or tell the cashier.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum SaleError {
    /// The sale (or a replacement) breaks a protocol rule (a bug in the app's sale building); `code` is
    /// the protocol's code (`totals_mismatch`, `no_items`, ...), see docs/protocol.md.
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
    /// `resolve`: the sale does not exist, is not a conflict or invalid sale, or was resolved already.
    #[error("{reason}")]
    NotResolvable {
        /// The id given.
        client_tx_id: String,
        /// Why not, for a person.
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

/// Reading or maintaining the outbox (status, counts, sales, pruning) failed.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum StorageError {
    /// Another process held the outbox locked too long; try again.
    #[error("{reason}")]
    Busy {
        /// What is wrong, for a person.
        reason: String,
    },
    /// The storage (or the configured size cap) is full; stored sales are safe. Free space.
    #[error("{reason}")]
    Full {
        /// What is wrong, for a person.
        reason: String,
    },
    /// The outbox file is damaged. It is left untouched: keep it for support.
    #[error("{reason}")]
    Corrupt {
        /// The outbox file.
        path: String,
        /// What is wrong, for a person.
        reason: String,
    },
    /// The outbox file is of another schema version than this build.
    #[error("{reason}")]
    IncompatibleVersion {
        /// The outbox file.
        path: String,
        /// The file's schema version.
        found: i64,
        /// The version this build knows.
        supported: i64,
        /// What is wrong, for a person.
        reason: String,
    },
    /// The outbox file (or its folder) is missing, read-only or cannot be opened.
    #[error("{reason}")]
    Unavailable {
        /// The outbox file.
        path: String,
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

fn int(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The one conversion of the core's storage failures; busy is logged at warn level, the rest at error.
impl From<pc::StorageError> for StorageError {
    fn from(err: pc::StorageError) -> Self {
        use pc::StorageError as E;
        let reason = err.to_string();
        if matches!(err, E::Busy { .. }) {
            log::warn!(target: TARGET, error:% = reason; "outbox busy");
        } else {
            log::error!(target: TARGET, error:% = reason; "outbox storage failure");
        }
        match err {
            E::Busy { .. } => StorageError::Busy { reason },
            E::DiskFull { .. } => StorageError::Full { reason },
            E::Corrupt { path, .. } => StorageError::Corrupt { path: path.display().to_string(), reason },
            E::IncompatibleVersion { path, found, supported }
            | E::OlderVersion { path, found, supported } => StorageError::IncompatibleVersion {
                path: path.display().to_string(),
                found: int(found),
                supported: int(supported),
                reason,
            },
            E::NotFound { path } | E::ReadOnly { path } | E::CannotOpen { path, .. } => {
                StorageError::Unavailable { path: path.display().to_string(), reason }
            }
            E::Io { path, .. } => StorageError::Unavailable { path: path.display().to_string(), reason },
            E::Sqlite { .. } => StorageError::Storage { reason },
        }
    }
}

impl From<StorageError> for OpenError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Busy { reason } => OpenError::Busy { reason },
            StorageError::Full { reason } => OpenError::Unavailable { path: String::new(), reason },
            StorageError::Corrupt { path, reason } => OpenError::Corrupt { path, reason },
            StorageError::IncompatibleVersion { path, found, supported, reason } => {
                OpenError::IncompatibleVersion { path, found, supported, reason }
            }
            StorageError::Unavailable { path, reason } => OpenError::Unavailable { path, reason },
            StorageError::Storage { reason } => OpenError::Internal { reason },
        }
    }
}

impl From<StorageError> for SaleError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Busy { reason } => SaleError::Busy { reason },
            StorageError::Full { reason } => SaleError::StorageFull { reason },
            StorageError::Corrupt { reason, .. }
            | StorageError::IncompatibleVersion { reason, .. }
            | StorageError::Unavailable { reason, .. }
            | StorageError::Storage { reason } => SaleError::Storage { reason },
        }
    }
}

/// A refused sale or resolution (an app bug or a person's mistake) is logged at warn level.
impl From<pc::SaleError> for SaleError {
    fn from(err: pc::SaleError) -> Self {
        use pc::SaleError as E;
        let reason = err.to_string();
        match err {
            E::Invalid(invalid) => {
                log::warn!(target: TARGET, code = invalid.code(), error:% = reason; "sale refused");
                SaleError::Invalid { code: invalid.code().to_owned(), reason }
            }
            E::IdConflict { client_tx_id } => {
                log::warn!(target: TARGET, client_tx_id:% = client_tx_id, error:% = reason; "sale refused");
                SaleError::IdConflict { client_tx_id, reason }
            }
            E::NotResolvable { client_tx_id, .. } => {
                log::warn!(target: TARGET, client_tx_id:% = client_tx_id, error:% = reason; "sale not resolved");
                SaleError::NotResolvable { client_tx_id, reason }
            }
            E::Canonical(_) => {
                log::error!(target: TARGET, error:% = reason; "sale not stored");
                SaleError::Storage { reason }
            }
            E::Storage(storage) => StorageError::from(storage).into(),
        }
    }
}

/// A timeout or shutdown is logged at info level (nothing is wrong with the sales), the rest at error.
impl From<pc::SyncError> for SyncError {
    fn from(err: pc::SyncError) -> Self {
        use pc::SyncError as E;
        let reason = err.to_string();
        match err {
            E::Timeout { waited_ms } => {
                log::info!(target: TARGET, waited_ms; "sync now timed out; the run goes on");
                SyncError::Timeout { waited_ms: i64::try_from(waited_ms).unwrap_or(i64::MAX), reason }
            }
            E::ShutDown => {
                log::info!(target: TARGET, "sync now after shutdown");
                SyncError::ShutDown { reason }
            }
            E::DrainFailed { .. } | E::Thread(_) => {
                log::error!(target: TARGET, error:% = reason; "sync now failed");
                SyncError::DrainFailed { reason }
            }
        }
    }
}

/// A refused setting is logged at warn level (an app bug or a mistyped token; the message never
/// contains the token).
impl From<pc::ConfigError> for ConfigError {
    fn from(err: pc::ConfigError) -> Self {
        let reason = err.to_string();
        log::warn!(target: TARGET, error:% = reason; "setting refused");
        ConfigError::Invalid { reason }
    }
}

/// Opening spans concerns: each goes through its own conversion; a failed open is logged at error level.
impl From<pc::Error> for OpenError {
    fn from(err: pc::Error) -> Self {
        let open = match err {
            pc::Error::Storage(e) => StorageError::from(e).into(),
            pc::Error::Config(e) => OpenError::InvalidConfig { reason: ConfigError::from(e).to_string() },
            pc::Error::Sync(e) => OpenError::Internal { reason: e.to_string() },
            pc::Error::Sale(e) => OpenError::Internal { reason: e.to_string() },
        };
        log::error!(target: TARGET, error:% = open; "cannot open the outbox or start the engine");
        open
    }
}

impl From<pc::StorageError> for OpenError {
    fn from(err: pc::StorageError) -> Self {
        pc::Error::from(err).into()
    }
}

impl From<pc::ConfigError> for OpenError {
    fn from(err: pc::ConfigError) -> Self {
        pc::Error::from(err).into()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use possync_core::protocol::InvalidSale;

    use super::*;

    #[test]
    fn invalid_sale_keeps_its_protocol_code_and_a_reason_to_show() {
        match SaleError::from(pc::SaleError::Invalid(InvalidSale::NoItems)) {
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
        let full = pc::SaleError::Storage(pc::StorageError::DiskFull { path: path.clone() });
        assert!(matches!(SaleError::from(full), SaleError::StorageFull { .. }));
        assert!(matches!(
            SaleError::from(pc::SaleError::IdConflict { client_tx_id: "a".into() }),
            SaleError::IdConflict { client_tx_id, .. } if client_tx_id == "a"
        ));
        assert!(matches!(
            OpenError::from(pc::ConfigError("bad".into())),
            OpenError::InvalidConfig { reason } if reason.contains("bad")
        ));
        assert!(matches!(
            OpenError::from(pc::StorageError::IncompatibleVersion {
                path: path.clone(),
                found: 9,
                supported: 2
            }),
            OpenError::IncompatibleVersion { found: 9, supported: 2, .. }
        ));
        assert!(matches!(
            OpenError::from(pc::StorageError::NotFound { path: path.clone() }),
            OpenError::Unavailable { path: p, .. } if p == "/tmp/outbox.db"
        ));
        assert!(matches!(StorageError::from(pc::StorageError::Busy { path }), StorageError::Busy { .. }));
        assert!(matches!(
            SyncError::from(pc::SyncError::Timeout { waited_ms: 5 }),
            SyncError::Timeout { waited_ms: 5, .. }
        ));
        assert!(matches!(SyncError::from(pc::SyncError::ShutDown), SyncError::ShutDown { .. }));
        assert!(matches!(
            SaleError::from(pc::SaleError::NotResolvable { client_tx_id: "x".into(), reason: "r".into() }),
            SaleError::NotResolvable { .. }
        ));
    }
}
