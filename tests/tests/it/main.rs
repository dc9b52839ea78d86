//! End-to-end tests of possync-tests, one binary: the client core against the real reference server
//! on real PostgreSQL.
//!
//! - `client_push`: drains through timeouts, crashes, concurrent claimers, conflicts, bad tokens;
//!   single flight and the send records over real HTTP.
//! - `convergence`: every sale exactly once under chaos, and a throwaway cluster's crashes.
//! - `failover`: a real pg_auto_failover failover under selling tills, synchronous and asynchronous:
//!   every sale exactly once, acknowledged sales lost by an asynchronous standby sent again.
//! - `failover_harness`: the pg_auto_failover formation harness: a killed primary replaced by its
//!   standby, acknowledged commits lost with asynchronous replication, none with synchronous.
//! - `lossy_link`: an unattended till on a lossy link for a minute.
//! - `restore`: the server's database restored from a backup (PostgreSQL and SQLite); the tills bring
//!   back every acknowledged sale it lost.
//! - `till_report`: the backlog report and the outbox sequence numbers a till sends.
//!
//! The soaks (`convergence`, `lossy_link`) and the test that installs the log capture hold
//! [`exclusive`]; every other test holds [`shared`]. So a soak runs alone, as it did in a binary of
//! its own, and its bounds (the oldest unsent sale within a minute, the chaos floors) are not measured
//! beside other tests' load; the rest run in parallel as usual.

mod client_push;
mod convergence;
mod failover;
mod failover_harness;
mod lossy_link;
mod restore;
mod till_report;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static SOAK: RwLock<()> = RwLock::new(());

/// Held by a test that must run alone in this binary.
fn exclusive() -> RwLockWriteGuard<'static, ()> {
    SOAK.write()
}

/// Held by a test that may run beside others, but not beside an [`exclusive`] one.
fn shared() -> RwLockReadGuard<'static, ()> {
    SOAK.read()
}
