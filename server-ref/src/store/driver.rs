//! The seam between the store's flows and a database: a [`Driver`] lends a connection or a
//! transaction as a [`Conn`], which runs a statement with [`Param`]s and hands each result row over as
//! a [`Row`] read through typed getters; [`Statements`] is one dialect's set of statement texts, by
//! one set of names. The flows over this seam are written once (`flows.rs`); each store implements
//! only the seam (`sqlite.rs`, `postgres.rs`) beside what truly differs (the push path, the pool,
//! migrations, error classification, revocation watching).

use super::StoreError;

/// One parameter of a statement. Every time is Unix milliseconds (the dialect's SQL converts), every
/// integer 64 bits; lists are bound as arrays (PostgreSQL) or as JSON text (SQLite's `json_each`).
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    /// Text, or NULL.
    Text(Option<&'a str>),
    /// An integer, or NULL.
    Int(Option<i64>),
    /// A boolean.
    Bool(bool),
    /// A list of texts.
    Texts(&'a [String]),
    /// A list of integers.
    Ints(&'a [i64]),
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Param::Text(Some(v))
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(v: &'a String) -> Self {
        Param::Text(Some(v))
    }
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Param::Text(v)
    }
}

impl<'a> From<&'a Option<String>> for Param<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Param::Text(v.as_deref())
    }
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Param::Int(Some(v))
    }
}

impl From<Option<i64>> for Param<'_> {
    fn from(v: Option<i64>) -> Self {
        Param::Int(v)
    }
}

impl From<bool> for Param<'_> {
    fn from(v: bool) -> Self {
        Param::Bool(v)
    }
}

impl<'a> From<&'a [String]> for Param<'a> {
    fn from(v: &'a [String]) -> Self {
        Param::Texts(v)
    }
}

impl<'a> From<&'a [i64]> for Param<'a> {
    fn from(v: &'a [i64]) -> Self {
        Param::Ints(v)
    }
}

/// The parameters of a statement, each converted to a [`Param`].
macro_rules! args {
    ($($v:expr),* $(,)?) => {
        &[$($crate::store::driver::Param::from($v)),*]
    };
}
pub(crate) use args;

/// One result row, read by column index through typed getters (a column of the wrong type or a NULL
/// where a value is required is a [`StoreError`]).
pub trait Row {
    /// A text column.
    fn text(&self, i: usize) -> Result<String, StoreError>;
    /// A nullable text column.
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError>;
    /// An integer column (any width).
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    /// A nullable integer column (any width).
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError>;
    /// A boolean column (SQLite: an integer, non-zero is true).
    fn flag(&self, i: usize) -> Result<bool, StoreError>;
}

/// A connection, or a transaction on one: runs statements of the store's dialect.
pub trait Conn {
    /// Runs a statement; returns how many rows it changed.
    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError>;

    /// Runs a query and hands each row to `each`, in order; stops at the first error.
    fn query(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        each: &mut dyn FnMut(&dyn Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
}

impl dyn Conn + '_ {
    /// Every row of a query, each mapped by `map`.
    pub fn rows<T>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        map: impl Fn(&dyn Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.query(sql, params, &mut |row| {
            out.push(map(row)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row of a query, if any, mapped by `map`.
    pub fn row<T>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        map: impl Fn(&dyn Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut out = None;
        self.query(sql, params, &mut |row| {
            if out.is_none() {
                out = Some(map(row)?);
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// A database the flows run on: its dialect's statements, a connection, a transaction.
pub trait Driver: Send + Sync + 'static {
    /// The dialect's statement texts.
    fn statements(&self) -> &'static Statements;

    /// Runs `f` on a pooled connection, each statement committed on its own.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when no connection can be had, or `f`'s error.
    fn with_conn<T>(&self, f: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError>) -> Result<T, StoreError>;

    /// Runs `f` in one write transaction, committed when `f` succeeds and rolled back otherwise.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when no connection can be had, or the first error.
    fn in_transaction<T>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>;
}

/// One dialect's statements of the flows written once, by one set of names; each dialect documents
/// its parameters (`postgres_sql.rs`, `sqlite_sql.rs`), which are the same in number and order.
#[derive(Debug)]
pub struct Statements {
    /// Registers a token hash (hash, store, device, label).
    pub insert_token: &'static str,
    /// Revokes every live token of a device (store, device).
    pub revoke_tokens: &'static str,
    /// Announces a revocation to every instance (`store/device`), where the dialect can.
    pub notify_revoked: Option<&'static str>,
    /// Lists tokens of a store (NULL: all).
    pub list_tokens: &'static str,
    /// Attention items of a store since a time (NULL: all).
    pub select_attention: &'static str,
    /// Every audit row of one sale of a store.
    pub select_audit_trail: &'static str,
    /// The stored header identity of a sale of a store.
    pub select_stored_sale: &'static str,
    /// Deletes a batch of audit rows older than some days (days, batch size).
    pub prune_audit_batch: &'static str,
    /// Stored hashes of a list of sales, of a store (NULL: any).
    pub select_hashes: &'static str,
    /// Every sale a device pushed (store, device).
    pub select_device_sales: &'static str,
    /// Every device with its status and sales since a time.
    pub select_tills: &'static str,
    /// Runs lost for good, of a store (NULL: all).
    pub select_lost_runs: &'static str,
    /// Devices with sequence bookkeeping, of a store (NULL: all).
    pub select_seq_states: &'static str,
    /// Settled sequence numbers of a device's outbox in a range.
    pub select_settled_seqs: &'static str,
    /// Advances a device's contiguous settled run.
    pub advance_contiguous: &'static str,
    /// Forgets the checked settled runs of a store (NULL: all).
    pub reset_contiguous: &'static str,
    /// Attention items with what the console shows beside them.
    pub select_attention_entries: &'static str,
    /// Marks an attention item reviewed (sale, audit id, admin, note).
    pub mark_reviewed: &'static str,
    /// Stored sales by store, id and occurrence.
    pub find_sales: &'static str,
    /// Adds a console admin unless the name exists.
    pub insert_admin: &'static str,
    /// Removes a console admin's sessions.
    pub delete_admin_sessions: &'static str,
    /// Removes a console admin.
    pub delete_admin: &'static str,
    /// The PHC string of an admin's secret.
    pub select_admin_secret: &'static str,
    /// Whether any admin exists.
    pub has_admin: &'static str,
    /// Deletes sessions expired before a time (the app's clock).
    pub delete_expired_sessions: &'static str,
    /// Stores a session.
    pub insert_session: &'static str,
    /// A live session at a time.
    pub select_session: &'static str,
    /// Ends a session.
    pub delete_session: &'static str,
    /// A device's outbox bookkeeping, for a report received at a time.
    pub select_outbox_state: &'static str,
    /// Keeps a run lost for good, with its cause.
    pub insert_lost_run: &'static str,
    /// A device's outbox was replaced: its bookkeeping starts from scratch.
    pub replace_outbox: &'static str,
    /// Forgets the retired sequence numbers of a device's replaced outbox.
    pub delete_retired_seqs: &'static str,
    /// Records retired sequence numbers (store, device, list), where [`Statements::record_activity`]
    /// does not do it itself.
    pub insert_retired_seqs: Option<&'static str>,
    /// Records news of a device (store, device, retired numbers, seen, pushed, reported, the report).
    pub record_activity: &'static str,
    /// Where a device's acknowledged-sales check starts.
    pub select_recovery_state: &'static str,
    /// Moves a device's contiguous settled run up, creating its status row.
    pub upsert_contiguous: &'static str,
}
