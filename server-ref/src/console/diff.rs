//! The stored and the attempted payload of an attention item side by side: both flattened to
//! `path = value` lines (`header.total_minor`, `items[0].name`), one row per path, differing rows
//! marked.

use serde_json::Value;

/// One row of the side-by-side view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffRow {
    /// Where in the payload (`header.total_minor`).
    pub path: String,
    /// The stored sale's value, if it has this path.
    pub stored: Option<String>,
    /// The attempted sale's value, if it has this path.
    pub attempted: Option<String>,
    /// The two differ (one absent counts as different).
    pub differs: bool,
}

/// Most rows shown (a payload of 500 items has about 4500 paths).
pub const MAX_ROWS: usize = 5000;

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&path, v, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
            if items.is_empty() {
                out.push((prefix.to_owned(), "[]".into()));
            }
        }
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

/// The paths of a payload text; text that is not JSON is one row `(payload)` with the text.
fn paths(text: Option<&str>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match text.map(serde_json::from_str::<Value>) {
        None => {}
        Some(Ok(value)) => flatten("", &value, &mut out),
        Some(Err(_)) => out.push(("(payload)".into(), text.unwrap_or_default().to_owned())),
    }
    out
}

/// Rows for `stored` and `attempted` (either may be absent), in the stored payload's order, then
/// the paths only the attempt has.
pub fn side_by_side(stored: Option<&str>, attempted: Option<&str>) -> Vec<DiffRow> {
    let stored = paths(stored);
    let attempted = paths(attempted);
    let attempted_map: std::collections::HashMap<&str, &str> =
        attempted.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let stored_keys: std::collections::HashSet<&str> = stored.iter().map(|(k, _)| k.as_str()).collect();
    let mut rows: Vec<DiffRow> = stored
        .iter()
        .map(|(path, value)| {
            let other = attempted_map.get(path.as_str()).map(|v| (*v).to_owned());
            DiffRow {
                path: path.clone(),
                differs: other.as_deref() != Some(value.as_str()),
                stored: Some(value.clone()),
                attempted: other,
            }
        })
        .collect();
    rows.extend(attempted.iter().filter(|(k, _)| !stored_keys.contains(k.as_str())).map(|(path, value)| {
        DiffRow { path: path.clone(), stored: None, attempted: Some(value.clone()), differs: true }
    }));
    rows.truncate(MAX_ROWS);
    rows
}

#[cfg(test)]
mod tests {
    use super::side_by_side;

    #[test]
    fn differing_and_missing_paths_are_marked() {
        let rows = side_by_side(
            Some(r#"{"header":{"total_minor":500},"items":[{"name":"Espresso"}]}"#),
            Some(r#"{"header":{"total_minor":600},"items":[{"name":"Espresso"},{"name":"Tea"}]}"#),
        );
        let marked: Vec<_> = rows.iter().filter(|r| r.differs).map(|r| r.path.as_str()).collect();
        assert_eq!(marked, vec!["header.total_minor", "items[1].name"]);
        assert_eq!(rows.len(), 3);
        assert!(side_by_side(None, Some("not json")).iter().all(|r| r.differs));
    }
}
