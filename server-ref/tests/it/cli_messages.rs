//! What the commands print for a newcomer's mistakes: no secret from the environment in any
//! `--help`, and errors that name their cause once, in one line.

use possync_test_support::{cli, run};

/// A password that must never be printed (the help texts use the word "secret" for other things).
const PASSWORD: &str = "pw-not-for-help";

/// The subcommands listed under "Commands:" in a help text (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn no_help_text_prints_a_secret_from_the_environment() {
    let mut pending = vec![Vec::<String>::new()];
    let mut seen = 0;
    while let Some(path) = pending.pop() {
        let (ok, help, err) =
            run(cli().args(&path).arg("--help").env("DATABASE_URL", format!("postgres://u:{PASSWORD}@h/db")));
        assert!(ok, "{path:?} --help: {err}");
        assert!(!help.contains(PASSWORD), "`{} --help` prints the password:\n{help}", path.join(" "));
        seen += 1;
        for sub in subcommands(&help) {
            let mut deeper = path.clone();
            deeper.push(sub);
            pending.push(deeper);
        }
    }
    // The top level, 8 commands and their 10 subcommands (token 3, attention 3, audit 1, admin 2, ...).
    assert!(seen >= 14, "walked only {seen} help texts");
}

/// The test cluster's address as a key-value connection string for `user` and `dbname`.
fn conninfo(user: &str, dbname: &str) -> String {
    let admin: postgres::Config = possync_test_support::admin_url().parse().expect("admin URL");
    let host = match admin.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        other => panic!("the test cluster is reached over TCP, not {other:?}"),
    };
    let port = admin.get_ports().first().copied().unwrap_or(5432);
    format!("host={host} port={port} user={user} dbname={dbname}")
}

/// Runs a command against `url` and returns its stderr, asserting it failed at once.
fn fails_at_once(url: &str, args: &[&str]) -> String {
    let started = std::time::Instant::now();
    let (ok, _, err) = run(cli().args(args).env("DATABASE_URL", url));
    let took = started.elapsed();
    assert!(!ok, "{args:?} against {url} must fail");
    assert!(took < std::time::Duration::from_millis(1500), "{args:?} waited {took:?} for a refusal:\n{err}");
    err
}

#[test]
fn connection_refusals_name_postgresqls_reason_in_one_line_at_once() {
    let no_db = conninfo("postgres", "possync_no_such_db");
    for args in [
        &["migrate"][..],
        &["token", "list"],
        &["attention", "list", "--store", "s1"],
        &["serve", "--listen", "127.0.0.1:0"],
    ] {
        let err = fails_at_once(&no_db, args);
        assert_eq!(
            err,
            "possync-server: cannot connect to the database: database \"possync_no_such_db\" does not \
             exist (FATAL 3D000)\n",
            "{args:?}"
        );
    }
    let no_role = conninfo("possync_no_such_role", "postgres");
    let err = fails_at_once(&no_role, &["token", "create", "--store", "s1", "--device", "d1"]);
    assert_eq!(
        err,
        "possync-server: cannot connect to the database: role \"possync_no_such_role\" does not exist \
         (FATAL 28000)\n"
    );
}

#[test]
fn an_unreachable_server_is_named_with_the_os_reason() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let url = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=1");
    let (ok, _, err) = run(cli().args(["token", "list"]).env("DATABASE_URL", &url));
    assert!(!ok);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("possync-server: cannot connect to the database: ")
            && last.contains("error connecting to server: Connection refused"),
        "{err}"
    );
    assert!(!err.contains("\"db error\""), "{err}");
}

#[test]
fn a_missing_config_file_names_its_cause_once() {
    let (ok, _, err) = run(cli().args(["token", "list", "--config", "/nonexistent/possync.toml"]));
    assert!(!ok);
    assert_eq!(
        err,
        "possync-server: cannot read config file /nonexistent/possync.toml: No such file or directory (os \
         error 2)\n"
    );
}

#[test]
fn fewer_connections_than_database_threads_is_warned_about() {
    let serve = |pool: &str| {
        run(cli().args([
            "serve",
            "--print-config",
            "--database-url",
            "postgres://u@h/db",
            "--workers",
            "8",
            "--pool-size",
            pool,
        ]))
    };
    let (ok, _, err) = serve("2");
    assert!(ok, "{err}");
    let warning: serde_json::Value =
        serde_json::from_str(err.lines().next().expect("a warning")).expect("a JSON log line");
    assert_eq!(warning["level"], "WARN", "{err}");
    let message = warning["message"].as_str().expect("message");
    assert!(
        message.starts_with("pool_size (2) is below the 8 database worker threads (workers)")
            && message.contains("raise pool_size to at least 8"),
        "{message}"
    );
    let (ok, _, err) = serve("8");
    assert!(ok && err.is_empty(), "no warning when the pool fits: {err}");
}
