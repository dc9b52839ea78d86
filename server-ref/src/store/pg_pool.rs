//! The PostgreSQL connection pool: r2d2 over the `postgres` crate, with each connection keeping the
//! push path's statements prepared.
//!
//! A sale's statements are parsed and planned once per connection, then only bound and executed
//! (an unnamed statement is parsed and planned by the server on every sale). A connection is not
//! tested with a round trip on every checkout: a broken one fails its statement (the sale answers
//! `RETRY`) and is closed, and r2d2 drops it on return.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};

use ::postgres::types::{ToSql, Type};
use ::postgres::{Client, Config, Error, NoTls, Statement, Transaction};
use r2d2_postgres::PostgresConnectionManager;

/// A pooled connection and its prepared statements (by SQL text).
pub struct PgConn {
    client: Client,
    prepared: HashMap<&'static str, Statement>,
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
    type Error = Error;

    fn connect(&self) -> Result<PgConn, Error> {
        Ok(PgConn { client: self.0.connect()?, prepared: HashMap::new() })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), Error> {
        self.0.is_valid(&mut conn.client)
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}
