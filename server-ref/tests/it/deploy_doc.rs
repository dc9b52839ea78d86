//! docs/deploy.md's configuration reference matches the binary: every option of `serve` (and the
//! common ones) with its environment variable, config file key and default, and no stale rows.

use std::collections::BTreeMap;

/// One option as `possync-server serve --help` describes it.
#[derive(Debug, PartialEq, Eq)]
struct Opt {
    env: Option<String>,
    default: Option<String>,
}

fn help_options() -> BTreeMap<String, Opt> {
    let (ok, help, err) = possync_test_support::run(
        possync_test_support::cli().args(["serve", "--help"]).env("COLUMNS", "1000"),
    );
    assert!(ok, "{err}");
    let mut options = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    let mut flush = |current: &mut Option<(String, String)>| {
        if let Some((name, text)) = current.take() {
            let between = |start: &str, end: &str| {
                text.split_once(start).and_then(|(_, rest)| rest.split_once(end)).map(|(v, _)| v.to_owned())
            };
            options.insert(name, Opt { env: between("[env: ", "="), default: between("[default: ", "]") });
        }
    };
    for line in help.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("--").or_else(|| trimmed.split_once(", --").map(|(_, r)| r))
        {
            flush(&mut current);
            let name = rest.split([' ', '\t']).next().unwrap_or_default().to_owned();
            current = Some((name, rest.to_owned()));
        } else if let Some((_, text)) = current.as_mut() {
            text.push(' ');
            text.push_str(trimmed);
        }
    }
    flush(&mut current);
    options.remove("help");
    options
}

/// Rows `| `--name` | env | key | default | meaning |` of the reference tables.
fn doc_rows() -> BTreeMap<String, [String; 3]> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/deploy.md");
    let doc = std::fs::read_to_string(path).expect("docs/deploy.md");
    let mut rows = BTreeMap::new();
    for line in doc.lines().filter(|l| l.starts_with("| `--")) {
        let cells: Vec<String> = line
            .split('|')
            .map(|c| c.trim().trim_matches('`').to_owned())
            .filter(|c| !c.is_empty())
            .collect();
        assert!(cells.len() >= 5, "a reference row has 5 cells: {line}");
        let name = cells[0].trim_start_matches("--").to_owned();
        assert!(
            rows.insert(name, [cells[1].clone(), cells[2].clone(), cells[3].clone()]).is_none(),
            "{line}"
        );
    }
    rows
}

#[test]
fn deploy_doc_config_reference_matches_the_binary() {
    let help = help_options();
    let doc = doc_rows();
    assert_eq!(
        help.keys().collect::<Vec<_>>(),
        doc.keys().collect::<Vec<_>>(),
        "options in `serve --help` vs rows in docs/deploy.md"
    );
    for (name, opt) in &help {
        let [env, key, default] = &doc[name];
        let doc_env = (env != "–").then(|| env.clone());
        assert_eq!(&doc_env, &opt.env, "--{name}: environment variable");
        match &opt.default {
            Some(d) => assert_eq!(default, d, "--{name}: default"),
            None => assert!(
                default.starts_with("none") || default.starts_with("off"),
                "--{name} has no default in the binary; the doc says {default:?}"
            ),
        }
        if key != "–" {
            assert_eq!(
                key,
                &name.replace('-', "_"),
                "--{name}: file key is the option name with underscores"
            );
            let sample = format!("{key} = {}", if key == "workers" { "1" } else { "\"x\"" });
            let parsed = possync_server::config::FileConfig::parse(&sample, std::path::Path::new("doc.toml"));
            if let Err(e) = parsed {
                assert!(
                    !e.to_string().contains("unknown field"),
                    "--{name}: key {key} unknown to the config file: {e}"
                );
            }
        }
    }
}
