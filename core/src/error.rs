//! Errors of the client core, one enum per concern, so that a caller handles only what its call can
//! fail with and the FFI converts each concern once:
//!
//! - [`StorageError`]: opening, reading and writing the outbox file;
//! - [`SaleError`]: recording or resolving a sale (a rule broken, an id clash, or a storage failure);
//! - [`SyncError`]: "Sync now" and the engine's threads;
//! - [`ConfigError`]: a setting out of range.
//!
//! [`Error`] is any of them, for calls that span concerns (starting an engine) and for applications.
//! Every variant says what happened and hints at the fix; none of them ever means a stored sale was
//! dropped.

use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

use crate::protocol::{CanonicalError, InvalidSale};

/// Any failure of the core, by concern.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The outbox file.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Recording or resolving a sale.
    #[error(transparent)]
    Sale(#[from] SaleError),
    /// "Sync now" and the engine.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// A setting.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Opening, reading or writing the outbox file failed. The file is never modified or deleted by it.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The file is not a SQLite database or is damaged. It was left untouched.
    #[error("outbox file {path} is corrupt or not an outbox ({reason}); it was left untouched for recovery")]
    Corrupt {
        /// The outbox file.
        path: PathBuf,
        /// SQLite's message.
        reason: String,
    },
    /// The file was written by a newer version of possync.
    #[error("outbox file {path} has schema version {found}, newer than this build supports ({supported}); update the app")]
    IncompatibleVersion {
        /// The outbox file.
        path: PathBuf,
        /// The file's schema version.
        found: usize,
        /// The newest version this build knows.
        supported: usize,
    },
    /// The file has an older schema than this build and a read-only open does not migrate it.
    #[error(
        "outbox file {path} has schema version {found}, older than this build ({supported}); \
             open it once with the app (or a copy of it read-write) to upgrade it"
    )]
    OlderVersion {
        /// The outbox file.
        path: PathBuf,
        /// The file's schema version.
        found: usize,
        /// The version this build reads.
        supported: usize,
    },
    /// The file does not exist (a read-only open never creates one).
    #[error("outbox file {path} does not exist; check the path (nothing was created)")]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The file or its directory cannot be written.
    #[error("outbox file {path} is read-only; check file permissions and free the storage location")]
    ReadOnly {
        /// The outbox file.
        path: PathBuf,
    },
    /// The disk (or the configured size cap) is full; the sale was not stored, earlier ones are safe.
    #[error("outbox file {path} cannot grow: disk or size limit full; free space, earlier sales are safe")]
    DiskFull {
        /// The outbox file.
        path: PathBuf,
    },
    /// Another process holds the outbox locked longer than the busy timeout.
    #[error("outbox file {path} is locked by another process; try again")]
    Busy {
        /// The outbox file.
        path: PathBuf,
    },
    /// The file cannot be opened (missing directory, permissions).
    #[error("cannot open outbox file {path}: {reason}")]
    CannotOpen {
        /// The outbox file.
        path: PathBuf,
        /// SQLite's message.
        reason: String,
    },
    /// A file beside the outbox (e.g. of a diagnostics export) cannot be written.
    #[error("cannot write {path}: {reason}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The system's message.
        reason: String,
    },
    /// Any other SQLite failure.
    #[error("outbox storage error on {path}: {source}")]
    Sqlite {
        /// The outbox file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
}

/// Recording or resolving a sale failed; nothing was stored or changed.
#[derive(Debug, thiserror::Error)]
pub enum SaleError {
    /// The sale breaks a protocol rule; nothing was stored.
    #[error("invalid sale ({code}): {0}", code = .0.code())]
    Invalid(#[from] InvalidSale),
    /// A caller-supplied `client_tx_id` already holds a different sale; nothing was stored.
    #[error("client_tx_id {client_tx_id} already holds a different sale; use a new id for a new sale")]
    IdConflict {
        /// The id given.
        client_tx_id: String,
    },
    /// A sale cannot be resolved (missing, not a conflict or invalid sale, or resolved already).
    #[error("sale {client_tx_id} cannot be resolved: {reason}")]
    NotResolvable {
        /// The id given.
        client_tx_id: String,
        /// Why not.
        reason: String,
    },
    /// The sale could not be canonicalized (should not happen for a typed sale).
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    /// The outbox could not store it.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// "Sync now" or the engine failed. Sales are never lost by it: they stay in the outbox.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// `sync_now` did not see its run finish in time; the run goes on.
    #[error("sync did not finish within {waited_ms} ms; it goes on in the background")]
    Timeout {
        /// How long the caller waited.
        waited_ms: u64,
    },
    /// The engine was shut down.
    #[error("the sync engine is shut down")]
    ShutDown,
    /// A drain run failed on the outbox (its storage error, as text).
    #[error("the drain run failed: {reason}")]
    DrainFailed {
        /// What failed.
        reason: String,
    },
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(String),
}

/// A configuration value is out of range; the message names it (and never contains a token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl StorageError {
    /// Classifies a SQLite error by its result code, never by message text.
    pub(crate) fn from_sqlite(path: &Path, err: rusqlite::Error) -> StorageError {
        let path = path.to_path_buf();
        match err.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
                StorageError::Corrupt { path, reason: err.to_string() }
            }
            Some(ErrorCode::ReadOnly) => StorageError::ReadOnly { path },
            Some(ErrorCode::DiskFull) => StorageError::DiskFull { path },
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => StorageError::Busy { path },
            Some(ErrorCode::CannotOpen) | Some(ErrorCode::PermissionDenied) => {
                StorageError::CannotOpen { path, reason: err.to_string() }
            }
            _ => StorageError::Sqlite { path, source: err },
        }
    }
}
