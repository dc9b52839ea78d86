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
            // `[env: NAME=value]`, or `[env: NAME]` for a value hidden from the help (a secret).
            let env = between("[env: ", "]").map(|e| e.split('=').next().unwrap_or_default().to_owned());
            options.insert(name, Opt { env, default: between("[default: ", "]") });
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

/// The settings of `server.toml.example`: each `# key = value` line (all commented out), with the
/// comment block above it.
fn example_settings() -> Vec<(String, toml::Value, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/server.toml.example");
    let text = std::fs::read_to_string(path).expect("server.toml.example");
    let live: toml::Table = text.parse().expect("the example is TOML");
    assert!(live.is_empty(), "the example sets nothing, it shows the defaults commented out: {live:?}");
    let mut settings = Vec::new();
    let mut block = String::new();
    for line in text.lines() {
        let Some(comment) = line.strip_prefix('#') else {
            block.clear();
            continue;
        };
        let comment = comment.trim();
        let is_setting = comment
            .split_once(" = ")
            .is_some_and(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        if !is_setting {
            block.push_str(comment);
            block.push(' ');
            continue;
        }
        let table: toml::Table =
            comment.parse().unwrap_or_else(|e| panic!("`{comment}` is a TOML setting: {e}"));
        let (key, value) = table.into_iter().next().expect("one key");
        possync_server::config::FileConfig::parse(comment, std::path::Path::new("example.toml"))
            .unwrap_or_else(|e| panic!("`{comment}`: {e}"));
        settings.push((key, value, block.clone()));
    }
    settings
}

#[test]
fn server_toml_example_shows_every_setting_with_the_binarys_default() {
    let url = "postgres://possync@127.0.0.1:5432/possync";
    let (ok, out, err) = possync_test_support::run(
        possync_test_support::cli()
            .args(["serve", "--print-config", "--database-url", url])
            .env_remove("POSSYNC_LOG"),
    );
    assert!(ok, "{err}");
    let mut defaults: toml::Table = out.parse().expect("--print-config prints TOML");
    defaults.remove("database_url");
    let example = example_settings();
    for (key, value, block) in &example {
        match defaults.get(key) {
            Some(default) => assert_eq!(value, default, "`# {key} = {value}` is not the binary's default"),
            None => assert!(
                block.to_lowercase().contains("no default"),
                "`{key}` has no default in the binary; its comment must say so: {block}"
            ),
        }
    }
    let shown: Vec<&String> = example.iter().map(|(k, _, _)| k).collect();
    for key in defaults.keys() {
        assert!(shown.contains(&key), "the example does not show `{key}`");
    }
}

#[test]
fn the_systemd_unit_lets_the_sqlite_store_write_where_deploy_md_puts_it() {
    let read = |p: &str| std::fs::read_to_string(format!("{}/{p}", env!("CARGO_MANIFEST_DIR"))).expect(p);
    let lines = |text: &str| -> Vec<String> { text.lines().map(|l| l.trim().to_owned()).collect() };
    let unit = lines(&read("deploy/possync-server.service"));
    let has = |lines: &[String], line: &str| lines.iter().any(|l| l == line);
    assert!(has(&unit, "ProtectSystem=strict"), "the unit's file system is read-only");
    assert!(has(&unit, "StateDirectory=possync"), "so /var/lib/possync must be its state directory");
    assert!(has(&unit, "EnvironmentFile=-/etc/possync/server.env"), "no server.env on SQLite");
    let drop_in = lines(&read("deploy/possync-server-sqlite.conf"));
    for line in ["[Service]", "DynamicUser=no", "User=possync", "Group=possync"] {
        assert!(has(&drop_in, line), "the SQLite drop-in has `{line}`");
    }
    let deploy = read("../docs/deploy.md");
    let section = deploy.split("## 15. A one-till shop on SQLite").nth(1).expect("section 15");
    assert!(
        section.contains(r#"echo 'sqlite = "/var/lib/possync/shop.db"'"#),
        "the file in the state directory"
    );
    assert!(section.contains("possync-server-sqlite.conf"), "section 15 installs the drop-in");
}
