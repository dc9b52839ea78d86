//! Bounded console input: the query string and form bodies, each field with a length limit.

use axum::body::Body;
use http_body_util::{BodyExt, Limited};

/// Largest form body, in bytes.
pub const MAX_FORM_BYTES: usize = 16 * 1024;
/// Largest query string, in bytes.
pub const MAX_QUERY_BYTES: usize = 2048;

/// Why console input was refused (answered 400 / 413 / 408 with the code).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The query string is too long.
    #[error("the query string exceeds {MAX_QUERY_BYTES} bytes")]
    QueryTooLong,
    /// The form body is too large.
    #[error("the form exceeds {MAX_FORM_BYTES} bytes")]
    FormTooLarge,
    /// The form body did not arrive in time or could not be read.
    #[error("the form could not be read: {0}")]
    Unreadable(String),
    /// A field is missing, too long or malformed.
    #[error("field {field}: {why}")]
    BadField {
        /// The field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
}

impl InputError {
    /// HTTP status and machine-readable code.
    pub fn status_and_code(&self) -> (u16, &'static str) {
        match self {
            InputError::QueryTooLong => (400, "query_too_long"),
            InputError::FormTooLarge => (413, "body_too_large"),
            InputError::Unreadable(_) => (400, "unreadable_body"),
            InputError::BadField { .. } => (400, "bad_field"),
        }
    }
}

/// Decoded `name=value` pairs.
#[derive(Debug, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// The pairs of a query string (absent: none).
    ///
    /// # Errors
    /// [`InputError::QueryTooLong`].
    pub fn from_query(query: Option<&str>) -> Result<Fields, InputError> {
        let query = query.unwrap_or_default();
        if query.len() > MAX_QUERY_BYTES {
            return Err(InputError::QueryTooLong);
        }
        Ok(Fields(form_urlencoded::parse(query.as_bytes()).into_owned().collect()))
    }

    /// The pairs of a form body, read within [`MAX_FORM_BYTES`] and `timeout`.
    ///
    /// # Errors
    /// [`InputError::FormTooLarge`] or [`InputError::Unreadable`].
    pub async fn from_body(body: Body, timeout: std::time::Duration) -> Result<Fields, InputError> {
        let collected = tokio::time::timeout(timeout, Limited::new(body, MAX_FORM_BYTES).collect())
            .await
            .map_err(|_| InputError::Unreadable("timed out".into()))?
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    InputError::FormTooLarge
                } else {
                    InputError::Unreadable(e.to_string())
                }
            })?;
        Ok(Fields(form_urlencoded::parse(&collected.to_bytes()).into_owned().collect()))
    }

    /// Field `name` (trimmed; empty when absent), at most `max` characters without control characters.
    ///
    /// # Errors
    /// [`InputError::BadField`].
    pub fn text(&self, name: &'static str, max: usize) -> Result<String, InputError> {
        let value = self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).unwrap_or_default();
        if value.chars().count() > max {
            return Err(InputError::BadField { field: name, why: format!("longer than {max} characters") });
        }
        if value.chars().any(char::is_control) {
            return Err(InputError::BadField { field: name, why: "has control characters".into() });
        }
        Ok(value.to_owned())
    }

    /// Field `name`, required: 1..=`max` characters.
    ///
    /// # Errors
    /// [`InputError::BadField`].
    pub fn required(&self, name: &'static str, max: usize) -> Result<String, InputError> {
        let value = self.text(name, max)?;
        if value.is_empty() {
            return Err(InputError::BadField { field: name, why: "is required".into() });
        }
        Ok(value)
    }

    /// Field `name` as an id (store, device, sale): 1..=64 of `A-Z a-z 0-9 . _ : -`, or empty.
    ///
    /// # Errors
    /// [`InputError::BadField`].
    pub fn id(&self, name: &'static str) -> Result<String, InputError> {
        let value = self.text(name, 64)?;
        if !value.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b)) {
            return Err(InputError::BadField {
                field: name,
                why: "has characters outside A-Z a-z 0-9 . _ : -".into(),
            });
        }
        Ok(value)
    }

    /// Whether field `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

/// `YYYY-MM-DD` as the Unix-ms bounds `[start, end)` of that UTC day.
///
/// # Errors
/// [`InputError::BadField`] when it is not a date.
pub fn utc_day(text: &str) -> Result<(i64, i64), InputError> {
    let bad = || InputError::BadField { field: "day", why: "is not a date YYYY-MM-DD".into() };
    let mut parts = text.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let y: i32 = y.parse().map_err(|_| bad())?;
    let m: u8 = m.parse().map_err(|_| bad())?;
    let d: u8 = d.parse().map_err(|_| bad())?;
    let month = time::Month::try_from(m).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(y, month, d).map_err(|_| bad())?;
    let start = date.midnight().assume_utc().unix_timestamp() * 1000;
    Ok((start, start + 86_400_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_bounded() {
        let f = Fields::from_query(Some("store=store-1&note=a%0Ab&id=bad%20id")).expect("query");
        assert_eq!(f.id("store").expect("id"), "store-1");
        assert!(f.text("note", 100).is_err(), "control characters refused");
        assert!(f.id("id").is_err());
        assert!(f.required("absent", 10).is_err());
        assert!(Fields::from_query(Some(&"a".repeat(MAX_QUERY_BYTES + 1))).is_err());
        assert_eq!(utc_day("2026-11-29").expect("day").1 - utc_day("2026-11-29").expect("day").0, 86_400_000);
        assert!(utc_day("2026-13-01").is_err() && utc_day("yesterday").is_err());
    }
}
