//! The shop console at `/console`: one place for a manager to see whether every till's money is on
//! the server and what needs them. Server-rendered HTML (askama), no JavaScript; every page works
//! with a plain form.
//!
//! - Off unless an admin exists (`possync-server admin create`): until then every console page
//!   answers 404 `console_off`.
//! - Login with the admin's name and secret (argon2id); a session cookie (`HttpOnly`,
//!   `SameSite=Strict`, `Secure` unless told otherwise) of 32 random bytes, only its SHA-256 stored.
//! - Every POST carries the session's CSRF token (the login form: a token in a cookie of its own);
//!   without it 403 `csrf_invalid` (a login from a browser on plain HTTP whose `Secure` form cookie
//!   never came back: 403 `console_needs_tls`). Without a session: 401 `login_required`.
//! - Errors answer HTML to a browser (with the code on the page) and the JSON error body otherwise.
//! - Every input is bounded: the query string, each field, the form body; database work runs on the
//!   blocking pool.
//!
//! Its pages are declared in [`router`], one route and method each; the session and the CSRF token
//! are checked by the handlers' extractors ([`pages`]), so a page cannot be reached without them.
//!
//! [`session`]: credentials and cookies. [`pages`]: the router, extractors and handlers. [`views`]:
//! what pages show and the templates. [`diff`]: the stored and attempted payloads side by side.
//! [`forms`]: bounded input.

pub mod diff;
pub mod forms;
pub mod pages;
pub mod session;
pub mod views;

use std::sync::Arc;
use std::time::Duration;

use crate::blocking::BlockingPool;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::token_cache::TokenCache;

pub use pages::router;

/// Settings of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// A till is flagged when its oldest unsent sale, or its silence, is older than this.
    pub alert_after: Duration,
    /// How long a login lasts.
    pub session_ttl: Duration,
    /// Mark cookies `Secure` (sent over HTTPS only). Off only for a server reached over plain HTTP on
    /// loopback (tests).
    pub secure_cookie: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            alert_after: Duration::from_secs(3600),
            session_ttl: Duration::from_secs(12 * 3600),
            secure_cookie: true,
        }
    }
}

/// Logins verified at once (argon2 costs about 20 ms of CPU and 19 MiB each); more answer 503.
pub const MAX_CONCURRENT_LOGINS: usize = 2;

/// What the console needs of the server besides its [`ConsoleConfig`].
#[derive(Debug, Clone, Copy)]
pub struct ConsoleLimits {
    /// The console's settings.
    pub config: ConsoleConfig,
    /// `Retry-After` seconds of its 503 answers.
    pub retry_after_secs: u32,
    /// Time for a client to send a form's whole body.
    pub body_read_timeout: Duration,
}

/// The console's state: the store and the database threads it reads through, the token cache it
/// empties on a revocation, and its settings.
pub struct Console {
    store: Arc<dyn Store>,
    pool: Arc<BlockingPool>,
    metrics: Arc<Metrics>,
    tokens: Arc<TokenCache>,
    limits: ConsoleLimits,
    /// Logins verified at once (see [`MAX_CONCURRENT_LOGINS`]).
    logins: Arc<tokio::sync::Semaphore>,
}

impl Console {
    /// The console over `store`, doing its database work on `pool`.
    pub fn new(
        store: Arc<dyn Store>,
        pool: Arc<BlockingPool>,
        metrics: Arc<Metrics>,
        tokens: Arc<TokenCache>,
        limits: ConsoleLimits,
    ) -> Console {
        let logins = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_LOGINS));
        Console { store, pool, metrics, tokens, limits, logins }
    }
}
