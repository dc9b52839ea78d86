//! Opening an outbox file: the read-write opener (connection pragmas: WAL, durability, WAL size and
//! checkpoint limits, size cap; then migration to the latest schema) and the read-only one (checks
//! the file is an outbox of exactly this schema, writes nothing). A file is never modified or
//! deleted when opening fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::{schema, Outbox};
use crate::clock::{Clock, SystemClock};
use crate::config::{Durability, OutboxConfig};
use crate::error::StorageError;

impl Outbox {
    /// Opens (or creates) the outbox file at `path` and brings its schema up to date.
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] for a file that is not a SQLite database, [`StorageError::IncompatibleVersion`] for a
    /// file of a newer build, [`StorageError::ReadOnly`], [`StorageError::CannotOpen`]; the file is never modified
    /// or deleted on error.
    pub fn open(path: impl AsRef<Path>, config: OutboxConfig) -> Result<Outbox, StorageError> {
        Self::open_with_clock(path, config, Arc::new(SystemClock))
    }

    /// Opens an existing outbox file for reading only: nothing is created, migrated or written (a
    /// write through it fails with [`StorageError::ReadOnly`]). For tools that inspect a file, such as
    /// `possync-server verify` and `possync-till status`.
    ///
    /// # Errors
    /// [`StorageError::NotFound`] for a missing path (nothing is created), [`StorageError::OlderVersion`] for a file
    /// of an older schema (open it once read-write to upgrade), [`StorageError::IncompatibleVersion`] for a
    /// newer one, [`StorageError::Corrupt`] for a file that is not an outbox, [`StorageError::CannotOpen`].
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Outbox, StorageError> {
        let path = path.as_ref().to_path_buf();
        let config = OutboxConfig::default();
        let conn = open_read_only_connection(&path, &config)?;
        Ok(Outbox::with(conn, path, config, Arc::new(SystemClock)))
    }

    /// [`Outbox::open`] with a custom clock (tests).
    ///
    /// # Errors
    /// As [`Outbox::open`].
    pub fn open_with_clock(
        path: impl AsRef<Path>,
        config: OutboxConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Outbox, StorageError> {
        let path = path.as_ref().to_path_buf();
        let conn = open_connection(&path, &config)?;
        Ok(Outbox::with(conn, path, config, clock))
    }

    /// An outbox over an opened connection.
    fn with(conn: Connection, path: PathBuf, config: OutboxConfig, clock: Arc<dyn Clock>) -> Outbox {
        Outbox {
            conn: Mutex::new(conn),
            path,
            config,
            clock,
            recorded: Mutex::new(None),
            retired_again: Mutex::new(Vec::new()),
        }
    }
}

fn open_connection(path: &Path, config: &OutboxConfig) -> Result<Connection, StorageError> {
    let flags =
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let err = |e| StorageError::from_sqlite(path, e);
    let mut conn = Connection::open_with_flags(path, flags).map_err(err)?;
    conn.busy_timeout(Duration::from_millis(config.busy_timeout_ms)).map_err(err)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StorageError::ReadOnly { path: path.to_path_buf() });
    }
    let sync = match config.durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync).map_err(err)?;
    let limit = i64::try_from(config.wal_size_limit_bytes).unwrap_or(i64::MAX);
    conn.query_row(&format!("PRAGMA journal_size_limit = {limit}"), [], |_| Ok(())).map_err(err)?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(err)?;
    // Checkpoint when the WAL reaches the limit (at least 100 pages), so that it stays near it while
    // the till works too, not only after a checkpoint (SQLite's own default is 1000 pages).
    let checkpoint_pages = (limit / page_size.max(512)).clamp(100, 1_000_000);
    conn.query_row(&format!("PRAGMA wal_autocheckpoint = {checkpoint_pages}"), [], |_| Ok(()))
        .map_err(err)?;
    if let Some(max_bytes) = config.max_size_bytes {
        let pages = (max_bytes as i64 / page_size.max(512)).max(1);
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(())).map_err(err)?;
    }
    conn.set_transaction_behavior(TransactionBehavior::Immediate);
    migrate(path, &mut conn)?;
    Ok(conn)
}

fn open_read_only_connection(path: &Path, config: &OutboxConfig) -> Result<Connection, StorageError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => {
            return Err(StorageError::CannotOpen {
                path: path.to_path_buf(),
                reason: "not a regular file".into(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StorageError::NotFound { path: path.to_path_buf() })
        }
        Err(e) => return Err(StorageError::CannotOpen { path: path.to_path_buf(), reason: e.to_string() }),
    }
    // No SQLITE_OPEN_CREATE: SQLite itself refuses to create the file if it vanished meanwhile.
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let err = |e| StorageError::from_sqlite(path, e);
    let conn = Connection::open_with_flags(path, flags).map_err(err)?;
    conn.busy_timeout(Duration::from_millis(config.busy_timeout_ms)).map_err(err)?;
    conn.pragma_update(None, "query_only", true).map_err(err)?;
    let found = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map(|v| v.max(0) as usize)
        .map_err(err)?;
    let has_outbox: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'outbox'",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    if found == 0 || !has_outbox {
        return Err(StorageError::Corrupt {
            path: path.to_path_buf(),
            reason: "a SQLite file without an outbox table".into(),
        });
    }
    if found > schema::LATEST_VERSION {
        return Err(StorageError::IncompatibleVersion {
            path: path.to_path_buf(),
            found,
            supported: schema::LATEST_VERSION,
        });
    }
    if found < schema::LATEST_VERSION {
        return Err(StorageError::OlderVersion {
            path: path.to_path_buf(),
            found,
            supported: schema::LATEST_VERSION,
        });
    }
    Ok(conn)
}

fn migrate(path: &Path, conn: &mut Connection) -> Result<(), StorageError> {
    let version = |conn: &Connection| -> Result<usize, StorageError> {
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map(|v| v.max(0) as usize)
            .map_err(|e| StorageError::from_sqlite(path, e))
    };
    let found = version(conn)?;
    if found > schema::LATEST_VERSION {
        return Err(StorageError::IncompatibleVersion {
            path: path.to_path_buf(),
            found,
            supported: schema::LATEST_VERSION,
        });
    }
    if found == schema::LATEST_VERSION {
        return Ok(());
    }
    match schema::migrations().to_latest(conn) {
        Ok(()) => Ok(()),
        // Another process may have migrated the same file at the same moment.
        Err(_) if version(conn)? == schema::LATEST_VERSION => Ok(()),
        Err(rusqlite_migration::Error::RusqliteError { err, .. }) => {
            Err(StorageError::from_sqlite(path, err))
        }
        Err(e) => Err(StorageError::CannotOpen {
            path: path.to_path_buf(),
            reason: format!("migration failed: {e}"),
        }),
    }
}
