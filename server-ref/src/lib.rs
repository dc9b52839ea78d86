//! possync-server: the reference server of possync for small shops.
//!
//! `POST /sync/push` stores (or refuses) each sale of a batch in its own database transaction (PostgreSQL, or an
//! embedded SQLite file for the demo and a one-till shop), idempotent by `client_tx_id` and payload
//! hash (see `docs/protocol.md`). The crate is a library so tests and the
//! till simulator can run a server in-process; the `possync-server` binary is its CLI.
//!
//! - [`http`]: the HTTP front (hyper through axum): bounds on every input, admission control, routes,
//!   correlation ids, graceful shutdown. [`blocking`]: the database threads behind it.
//! - [`push`]: the per-request and per-sale logic of `/sync/push`, run on the database threads it is
//!   given. [`report`]: the tills' backlog report. [`activity`]: device activity written off the push
//!   path.
//! - [`store`]: the [`store::Store`] boundary and its two implementations, PostgreSQL and an
//!   embedded SQLite file, migrations included. [`token_cache`]: accepted device tokens.
//! - [`verify`]: compare a till's outbox file with the server after an incident.
//! - [`auth`]: device tokens. [`metrics`]: Prometheus. [`logging`]: JSON-lines logs.
//! - [`attention`]: review of CONFLICT and INVALID attempts. [`retention`]: audit pruning.
//! - [`console`]: the shop console at `/console` (tills, attention, sales), server-rendered HTML.
//! - [`config`]: the TOML config file and the layering of settings. [`settings`]: `serve`'s settings.
//! - [`clock`]: the wall clock in Unix milliseconds.

#![warn(missing_docs)]

pub mod activity;
pub mod attention;
pub mod auth;
pub mod blocking;
pub mod clock;
pub mod config;
pub mod console;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod push;
pub mod reply;
pub mod report;
pub mod retention;
pub mod settings;
pub mod store;
pub mod token_cache;
pub mod verify;
