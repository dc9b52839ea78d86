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
//! built-in default ([`layer`] merges them, for each command of the binary). An unknown key is an error that names it, so
//! a typo never silently falls back to a default.

use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::ArgMatches;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::settings::ServeSettings;

/// A parsed config file: its keys, each known to [`ServeSettings`] and of the right type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileConfig {
    table: toml::Table,
}

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (the OS's reason is the error's source, printed after it).
    #[error("cannot read config file {}", path.display())]
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
        let table: toml::Table = toml::from_str(text).map_err(|e| parse_error(text, path, &e))?;
        // Every key must be a `serve` setting of the right type: checked on the defaults with the
        // file laid over them, so a typo never silently falls back to a default.
        let clap_error =
            |e: clap::Error| ConfigError::Parse { path: path.to_owned(), message: e.to_string() };
        let matches = <ServeCli as clap::CommandFactory>::command()
            .try_get_matches_from(["serve"])
            .map_err(clap_error)?;
        let defaults =
            <ServeSettings as clap::FromArgMatches>::from_arg_matches(&matches).map_err(clap_error)?;
        for (key, value) in &table {
            let one = toml::Table::from_iter([(key.clone(), value.clone())]);
            overlay::<ServeSettings>(&defaults, &one, |_| false).map_err(|e| {
                let found = text.lines().enumerate().find(|(_, l)| l.trim_start().starts_with(key.as_str()));
                let (line_no, line) = found.map(|(i, l)| (i + 1, l.trim())).unwrap_or((0, ""));
                let message = format!("line {line_no} (`{line}`): key `{key}`: {}", e.message().trim());
                ConfigError::Parse { path: path.to_owned(), message }
            })?;
        }
        Ok(FileConfig { table })
    }

    /// The value of `key`, if the file sets it.
    pub fn get(&self, key: &str) -> Option<&toml::Value> {
        self.table.get(key)
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

/// `serve`'s settings as a command of their own, to read their defaults.
#[derive(clap::Parser)]
struct ServeCli {
    #[command(flatten)]
    settings: ServeSettings,
}

/// `value` with every key of `file` laid over it, except the keys `keep` says the user set (on the
/// command line or in the environment); keys `T` does not know are ignored unless `T` refuses them.
fn overlay<T: Serialize + DeserializeOwned>(
    value: &T,
    file: &toml::Table,
    keep: impl Fn(&str) -> bool,
) -> Result<T, toml::de::Error> {
    let mut table = toml::Table::try_from(value).map_err(<toml::de::Error as serde::de::Error>::custom)?;
    for (key, v) in file {
        if !keep(key) {
            table.insert(key.clone(), v.clone());
        }
    }
    toml::Table::try_into(table)
}

/// Settings of a command with the config file laid under them: command line, then environment, then
/// file, then default. `matches` are the command's own matches (whose ids are the field names).
///
/// # Errors
/// [`ConfigError::Parse`] when a file value does not fit its setting.
pub fn layer<T: Serialize + DeserializeOwned>(
    value: &T,
    matches: &ArgMatches,
    file: &FileConfig,
    path: &Path,
) -> Result<T, ConfigError> {
    let from_user = |key: &str| {
        matches!(
            matches.try_get_raw(key).ok().flatten().and(matches.value_source(key)),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    overlay(value, &file.table, from_user)
        .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.message().to_owned() })
}

fn parse_error(text: &str, path: &Path, e: &toml::de::Error) -> ConfigError {
    // The message alone may not name the key (a type error names only the types), so the offending
    // line is quoted as well.
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
        let int = |k: &str| c.get(k).and_then(toml::Value::as_integer);
        assert_eq!((int("workers"), int("audit_retention_days"), c.get("listen")), (Some(3), Some(30), None));
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
