//! The PostgreSQL connection pool: r2d2 over the `postgres` crate, with each connection keeping the
//! push path's statements prepared.
//!
//! A sale's statements are parsed and planned once per connection, then only bound and executed
//! (an unnamed statement is parsed and planned by the server on every sale). A connection is tested
//! with an empty query at checkout only when its last test is over [`TRUSTED_FOR`] old: one that sat
//! idle (a database restart, an administrator's kill) is replaced before use, and a busy server does
//! not pay a round trip per sale. A connection that dies within that second fails its statement
//! (a sale answers `RETRY`), is closed, and r2d2 drops it on return.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use ::postgres::error::SqlState;
use ::postgres::types::{ToSql, Type};
use ::postgres::{Client, Config, Error, NoTls, Statement, Transaction};
use r2d2_postgres::PostgresConnectionManager;

/// How long a connection that passed its checkout test is trusted without another.
pub const TRUSTED_FOR: Duration = Duration::from_secs(1);

/// A pooled connection and its prepared statements (by SQL text).
pub struct PgConn {
    client: Client,
    prepared: HashMap<&'static str, Statement>,
    tested: Instant,
}

impl PgConn {
    /// Opens a push transaction, with the cache of prepared statements beside it.
    pub fn push_transaction(&mut self) -> Result<(Transaction<'_>, Prepared<'_>), Error> {
        let tx = self.client.transaction()?;
        Ok((tx, Prepared(&mut self.prepared)))
    }
}

impl Deref for PgConn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// The prepared statements of one connection, used inside its transaction.
pub struct Prepared<'c>(&'c mut HashMap<&'static str, Statement>);

/// The statement's parameters with their types (the types are given to the server when it is
/// prepared, as `query_typed` would).
pub type Params<'p> = [(&'p (dyn ToSql + Sync), Type)];

impl Prepared<'_> {
    fn statement(
        &mut self,
        tx: &mut Transaction<'_>,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Statement, Error> {
        if let Some(statement) = self.0.get(sql) {
            return Ok(statement.clone());
        }
        let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
        let statement = tx.prepare_typed(sql, &types)?;
        self.0.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Runs `sql` (prepared on first use) and returns its rows.
    pub fn query(
        &mut self,
        tx: &mut Transaction<'_>,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Vec<::postgres::Row>, Error> {
        let statement = self.statement(tx, sql, params)?;
        tx.query(&statement, &values(params))
    }

    /// Runs `sql` (prepared on first use) and returns its one row, if any.
    pub fn query_opt(
        &mut self,
        tx: &mut Transaction<'_>,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Option<::postgres::Row>, Error> {
        let statement = self.statement(tx, sql, params)?;
        tx.query_opt(&statement, &values(params))
    }

    /// Runs `sql` (prepared on first use) and returns its one row.
    pub fn query_one(
        &mut self,
        tx: &mut Transaction<'_>,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<::postgres::Row, Error> {
        let statement = self.statement(tx, sql, params)?;
        tx.query_one(&statement, &values(params))
    }
}

fn values<'p>(params: &Params<'p>) -> Vec<&'p (dyn ToSql + Sync)> {
    params.iter().map(|(v, _)| *v).collect()
}

/// A connection error whose text is the whole reason in one line: PostgreSQL's own message and
/// SQLSTATE (`database "x" does not exist (FATAL 3D000)`), or the I/O error below the driver's
/// (`error connecting to server: Connection refused (os error 111)`). r2d2 keeps only an error's
/// text, and the driver's own text is just `db error`.
#[derive(Debug)]
pub struct ConnectError(pub Error);

impl ConnectError {
    /// Whether the server refused for a reason that does not go away by waiting: a database or role
    /// that does not exist, a wrong password, no right to connect (classified by SQLSTATE). A server
    /// that is down, starting up or out of connection slots is worth waiting for.
    pub fn is_permanent(&self) -> bool {
        let Some(code) = self.0.code() else { return false };
        code.code().starts_with("28")
            || *code == SqlState::INVALID_CATALOG_NAME
            || *code == SqlState::INSUFFICIENT_PRIVILEGE
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(db) = self.0.as_db_error() {
            write!(f, "{}", db.message())?;
            if let Some(detail) = db.detail() {
                write!(f, ": {detail}")?;
            }
            if let Some(hint) = db.hint() {
                write!(f, "; hint: {hint}")?;
            }
            return write!(f, " ({} {})", db.severity(), db.code().code());
        }
        write!(f, "{}", self.0)?;
        let mut source = std::error::Error::source(&self.0);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl std::error::Error for ConnectError {}

impl From<Error> for ConnectError {
    fn from(e: Error) -> Self {
        ConnectError(e)
    }
}

/// Makes [`PgConn`]s for r2d2.
pub struct PgManager(PostgresConnectionManager<NoTls>);

impl PgManager {
    /// Connections to the database of `config`.
    pub fn new(config: Config) -> Self {
        PgManager(PostgresConnectionManager::new(config, NoTls))
    }
}

impl r2d2::ManageConnection for PgManager {
    type Connection = PgConn;
    type Error = ConnectError;

    fn connect(&self) -> Result<PgConn, ConnectError> {
        Ok(PgConn { client: self.0.connect()?, prepared: HashMap::new(), tested: Instant::now() })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), ConnectError> {
        if conn.tested.elapsed() < TRUSTED_FOR {
            return Ok(());
        }
        self.0.is_valid(&mut conn.client)?;
        conn.tested = Instant::now();
        Ok(())
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}
