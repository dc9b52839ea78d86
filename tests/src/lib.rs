//! possync-tests: shared pieces of the end-to-end tests.
//!
//! - [`server`]: the reference server's test harness (fresh PostgreSQL database per test, in-process
//!   server, tokens, sample sales): the `possync-test-support` crate, shared with `server-ref/tests`.
//! - [`proxy`]: a loopback TCP proxy that injects faults between a till and the server.
//! - [`till`]: helpers to build outboxes, configs and sales for tills.

pub use possync_test_support as server;

pub mod proxy;
pub mod till;
