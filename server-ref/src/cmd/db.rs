//! Which database a command works on, and opening it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use possync_server::store::postgres::{PgOptions, PgStore};
use possync_server::store::sqlite::{SqliteOptions, SqliteStore};
use possync_server::store::{Store, StoreError};

use super::{CommandContext, DbArgs};

/// Which database a command works on.
#[derive(Debug, Clone)]
pub enum Backend {
    /// PostgreSQL at this URL.
    Postgres(String),
    /// The embedded SQLite store in this file.
    Sqlite(PathBuf),
}

/// The database: `--database-url` / `DATABASE_URL` or `--sqlite` / `POSSYNC_SQLITE` (clap refuses
/// both), else `database_url` or `sqlite` of the config file (not both).
pub fn backend(
    database_url: Option<&str>,
    sqlite: Option<&PathBuf>,
    ctx: &CommandContext,
) -> Result<Backend> {
    if let Some(path) = sqlite {
        return Ok(Backend::Sqlite(path.clone()));
    }
    if let Some(url) = database_url {
        return Ok(Backend::Postgres(url.to_owned()));
    }
    let file_url = ctx.file.get("database_url").and_then(|v| v.as_str());
    let file_sqlite = ctx.file.get("sqlite").and_then(|v| v.as_str());
    match (file_url, file_sqlite) {
        (Some(_), Some(_)) => bail!("the config file sets both database_url and sqlite: keep one"),
        (Some(url), None) => Ok(Backend::Postgres(url.to_owned())),
        (None, Some(path)) => Ok(Backend::Sqlite(PathBuf::from(path))),
        (None, None) => bail!(
            "no database: pass --database-url (or set DATABASE_URL) for PostgreSQL, or --sqlite FILE \
             for the embedded store, or put database_url or sqlite in the config file"
        ),
    }
}

/// A store opened on either database.
pub enum Opened {
    /// PostgreSQL.
    Postgres(Box<PgStore>),
    /// The embedded SQLite file.
    Sqlite(SqliteStore),
}

impl Opened {
    /// The store behind the trait.
    pub fn store(self) -> Arc<dyn Store> {
        match self {
            Opened::Postgres(s) => Arc::new(*s),
            Opened::Sqlite(s) => Arc::new(s),
        }
    }

    fn migrate(&self) -> Result<Vec<String>> {
        Ok(match self {
            Opened::Postgres(s) => s.migrate()?,
            Opened::Sqlite(s) => s.migrate()?,
        })
    }
}

/// Opens the database; `create` lets a SQLite file be created (only `migrate` does).
pub fn open_store(backend: &Backend, opts: &PgOptions, create: bool) -> Result<Opened> {
    match backend {
        Backend::Postgres(url) => {
            let config: postgres::Config =
                url.parse().map_err(|e| anyhow!("invalid --database-url / DATABASE_URL: {e}"))?;
            let store = PgStore::connect(config, opts).map_err(|e| match e {
                StoreError::Unavailable(reason) => anyhow!("cannot connect to the database: {reason}"),
                other => anyhow::Error::new(other).context("cannot connect to the database"),
            })?;
            Ok(Opened::Postgres(Box::new(store)))
        }
        Backend::Sqlite(path) => {
            if !create && !path.exists() {
                bail!(
                    "SQLite file {} does not exist: create it with `possync-server migrate --sqlite {}`",
                    path.display(),
                    path.display()
                );
            }
            let sqlite = SqliteOptions {
                pool_size: opts.pool_size,
                pool_timeout: opts.pool_timeout,
                busy_timeout: Duration::from_millis(opts.lock_timeout_ms),
            };
            Ok(Opened::Sqlite(SqliteStore::open(path, create, &sqlite)?))
        }
    }
}

/// A one-connection store whose schema is checked to be this binary's, for admin commands.
pub fn open_ready_store(db: &DbArgs, ctx: &CommandContext) -> Result<Arc<dyn Store>> {
    let opts = PgOptions { pool_size: 1, ..PgOptions::default() };
    let backend = backend(db.database_url.as_deref(), db.sqlite.as_ref(), ctx)?;
    let store = open_store(&backend, &opts, false)?.store();
    store.check_ready()?;
    Ok(store)
}

/// `migrate`: applies pending migrations and says which.
pub fn migrate(db: &DbArgs, ctx: &CommandContext) -> Result<()> {
    let backend = backend(db.database_url.as_deref(), db.sqlite.as_ref(), ctx)?;
    let store = open_store(&backend, &PgOptions { pool_size: 1, ..PgOptions::default() }, true)?;
    let applied = store.migrate()?;
    if applied.is_empty() {
        println!("schema is up to date");
    }
    for name in applied {
        println!("applied {name}");
    }
    Ok(())
}
