//! possync-tests: shared pieces of the end-to-end tests.
//!
//! - [`server`]: the reference server's test harness (fresh PostgreSQL database per test, in-process
//!   server, tokens, sample sales): the `possync-test-support` crate, shared with `server-ref/tests`.
//! - [`proxy`]: a loopback TCP proxy that injects faults between a till and the server.
//! - [`till`]: helpers to build outboxes, configs and sales for tills.
//! - [`counting`]: a transport wrapper that counts what the tills were answered.
//! - [`cluster`]: a throwaway PostgreSQL cluster a test may crash and restart.
//! - [`failover`]: a throwaway pg_auto_failover formation (monitor, primary, standby) whose primary a
//!   test may kill to watch the standby take over, with synchronous or asynchronous replication.
//! - [`leases`]: the leases of an outbox file, read from outside its till.
//! - [`lossy`]: the lossy-link scenario (an unattended till on a bad link beside one on a clean link).

pub use possync_test_support as server;

pub mod cluster;
pub mod counting;
pub mod failover;
pub mod leases;
pub mod lossy;
pub mod proxy;
pub mod till;
