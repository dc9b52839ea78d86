//! possync-core: the till side of possync.
//!
//! - [`protocol`]: wire protocol v1 shared with the server (payload, validation, canonical JSON, hash,
//!   push request and response).
//! - [`outbox`]: the durable SQLite outbox with leases, atomic claim, heartbeat and CAS finalize.
//! - [`transport`]: the `Transport` trait, reading the server's answer, and the built-in HTTP client
//!   (ureq, feature `http`).
//! - [`platform_http`]: the same requests carried by the app's own HTTP stack ([`platform_http::HttpClient`]).
//! - [`drain`]: one drain run: claim, send in batches, finalize, until nothing is due.
//! - [`link`]: the link policy of a run as data ([`link::judge_batch`]): go on, shrink, or stop.
//! - [`schedule`]: when the engine runs next, as data ([`schedule::plan_after_run`]).
//! - [`engine`]: the single-flight drain scheduler ([`engine::SyncEngine`]) and [`status`] for the cashier.
//! - [`backoff`], [`config`], [`clock`], [`reason`], [`error`]: policy and plumbing.
//!
//! Synchronous: plain threads and `parking_lot`, no async runtime.

#![warn(missing_docs)]

pub mod backlog;
pub mod backoff;
pub mod clock;
pub mod config;
pub mod drain;
pub mod engine;
pub mod error;
pub mod link;
pub mod outbox;
pub mod platform_http;
pub mod protocol;
pub mod reason;
pub mod schedule;
pub mod status;
#[cfg(feature = "tls")]
mod tls;
pub mod transport;

pub use error::{ConfigError, Error, SaleError, StorageError, SyncError};
