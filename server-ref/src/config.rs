//! The server's config file (TOML): one key per long command-line option, with underscores.
//!
//! ```toml
//! database_url = "postgres://possync@127.0.0.1:5432/possync"
//! listen = "127.0.0.1:8080"
//! workers = 8
//! audit_retention_days = 90
//! ```
//!
//! Every key is optional. Precedence, highest first: command line, environment variable, file,
//! built-in default (the CLI in `main.rs` merges them). An unknown key is an error that names it, so
//! a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The keys of a config file; `None` for a key the file does not set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `--database-url` / `DATABASE_URL`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// `--sqlite` / `POSSYNC_SQLITE`: the embedded store's file instead of PostgreSQL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<PathBuf>,
    /// `--log-level` / `POSSYNC_LOG`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// `--listen` / `POSSYNC_LISTEN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `--workers` / `POSSYNC_WORKERS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// `--pool-size` / `POSSYNC_POOL_SIZE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<u32>,
    /// `--pool-timeout-ms` / `POSSYNC_POOL_TIMEOUT_MS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool_timeout_ms: Option<u64>,
    /// `--lock-timeout-ms` / `POSSYNC_LOCK_TIMEOUT_MS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_timeout_ms: Option<u64>,
    /// `--statement-timeout-ms` / `POSSYNC_STATEMENT_TIMEOUT_MS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement_timeout_ms: Option<u64>,
    /// `--max-body-bytes` / `POSSYNC_MAX_BODY_BYTES`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    /// `--max-transactions` / `POSSYNC_MAX_TRANSACTIONS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_transactions: Option<usize>,
    /// `--max-items` / `POSSYNC_MAX_ITEMS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_items: Option<usize>,
    /// `--retry-after-secs` / `POSSYNC_RETRY_AFTER_SECS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u32>,
    /// `--token-cache-secs` / `POSSYNC_TOKEN_CACHE_SECS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_cache_secs: Option<u64>,
    /// `--audit-retention-days` / `POSSYNC_AUDIT_RETENTION_DAYS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_retention_days: Option<u32>,
}

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key or a value of the wrong type.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the key and line.
        message: String,
    },
}

impl FileConfig {
    /// Parses config text; `path` is only used in error messages.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] for bad TOML, an unknown key or a value of the wrong type.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e: toml::de::Error| {
            // The message alone may not name the key (a type error names only the types), so the
            // offending line is quoted as well.
            let message = match e.span() {
                Some(span) => {
                    let start = span.start.min(text.len());
                    let line_no = text[..start].matches('\n').count() + 1;
                    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
                    format!("line {line_no} (`{line}`): {}", e.message())
                }
                None => e.message().to_owned(),
            };
            ConfigError::Parse { path: path.to_owned(), message }
        })
    }

    /// Reads and parses a config file.
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::Parse`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }
}

/// `url` with its password replaced by `***` (URL form `scheme://user:pw@host` and key-value form
/// `password=pw`), for printing.
pub fn redact_database_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                return format!("{scheme}://{}:***{}", &rest[..colon], &rest[at..]);
            }
        }
        return url.to_owned();
    }
    url.split_whitespace()
        .map(|kv| if kv.starts_with("password=") { "password=***" } else { kv })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = FileConfig::parse("listen = \"127.0.0.1:9000\"\npool_sise = 4\n", Path::new("s.toml"))
            .expect_err("typo");
        assert!(err.to_string().contains("pool_sise"), "{err}");
    }

    #[test]
    fn keys_parse_with_their_types() {
        let c = FileConfig::parse("workers = 3\naudit_retention_days = 30\n", Path::new("s.toml"))
            .expect("valid");
        assert_eq!((c.workers, c.audit_retention_days, c.listen), (Some(3), Some(30), None));
        let err = FileConfig::parse("workers = \"many\"\n", Path::new("s.toml")).expect_err("type");
        assert!(err.to_string().contains("workers"), "{err}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_database_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_database_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_database_url("host=h password=secret user=u"), "host=h password=*** user=u");
    }
}
