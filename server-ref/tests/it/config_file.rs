//! `serve --config FILE` / `POSSYNC_CONFIG`: a TOML file whose keys are the long option names.
//! Precedence: command line > environment > file > default; unknown keys are refused by name.

use possync_test_support::{cli, db_url, run, ServeProcess, TestDb};

fn write_config(text: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("possync-config-{}", possync_test_support::new_id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("server.toml");
    std::fs::write(&file, text).expect("write config");
    (dir, file)
}

fn effective(stdout: &str) -> toml::Table {
    stdout.parse().unwrap_or_else(|e| panic!("--print-config prints TOML: {e}\n{stdout}"))
}

#[test]
fn config_precedence_is_command_line_then_environment_then_file_then_default() {
    let (dir, file) = write_config(
        "database_url = \"postgres://possync:s3cret@db.example:5432/possync\"\n\
         log_level = \"warn\"\n\
         listen = \"0.0.0.0:9000\"\n\
         workers = 3\n\
         pool_size = 4\n\
         lock_timeout_ms = 1500\n\
         audit_retention_days = 90\n",
    );
    let path = file.to_str().expect("utf-8 path");
    let (ok, out, err) = run(cli()
        .args(["serve", "--print-config", "--pool-size", "6", "--config", path])
        .env("POSSYNC_WORKERS", "5")
        .env("POSSYNC_POOL_SIZE", "5")
        .env_remove("POSSYNC_LOG"));
    assert!(ok, "{err}");
    let c = effective(&out);
    assert_eq!(c["pool_size"].as_integer(), Some(6), "command line beats environment and file");
    assert_eq!(c["workers"].as_integer(), Some(5), "environment beats file");
    assert_eq!(c["listen"].as_str(), Some("0.0.0.0:9000"), "file beats default");
    assert_eq!(c["lock_timeout_ms"].as_integer(), Some(1500));
    assert_eq!(c["audit_retention_days"].as_integer(), Some(90));
    assert_eq!(c["log_level"].as_str(), Some("warn"));
    assert_eq!(c["max_items"].as_integer(), Some(500), "default when nobody sets it");
    assert_eq!(c["statement_timeout_ms"].as_integer(), Some(5000));
    assert_eq!(c["database_url"].as_str(), Some("postgres://possync:***@db.example:5432/possync"));
    assert!(!out.contains("s3cret"), "the password is never printed");

    // POSSYNC_CONFIG names the file; DATABASE_URL and POSSYNC_LOG beat it; the default listen
    // address stays overridden by the file even when the command line repeats the default.
    let (ok, out, err) = run(cli()
        .args(["serve", "--print-config", "--listen", "127.0.0.1:8080"])
        .env("POSSYNC_CONFIG", path)
        .env("DATABASE_URL", "postgres://other@127.0.0.1/x")
        .env("POSSYNC_LOG", "debug"));
    assert!(ok, "{err}");
    let c = effective(&out);
    assert_eq!(c["database_url"].as_str(), Some("postgres://other@127.0.0.1/x"));
    assert_eq!(c["log_level"].as_str(), Some("debug"));
    assert_eq!(
        c["listen"].as_str(),
        Some("127.0.0.1:8080"),
        "given on the command line, even if equal to the default"
    );
    assert_eq!(c["workers"].as_integer(), Some(3));
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn unknown_config_key_is_an_error_naming_it() {
    let (dir, file) = write_config("workers = 2\npool_sise = 4\n");
    let (ok, _, err) = run(cli().args(["serve", "--print-config", "--config"]).arg(&file));
    assert!(!ok, "a typo must not fall back to a default");
    assert!(err.contains("unknown field `pool_sise`") && err.contains("line 2"), "{err}");

    std::fs::write(&file, "workers = \"many\"\n").expect("write");
    let (ok, _, err) = run(cli().args(["serve", "--print-config", "--config"]).arg(&file));
    assert!(!ok && err.contains("invalid config file") && err.contains("line 1"), "{err}");

    let (ok, _, err) = run(cli().args(["serve", "--config", "/nonexistent/possync.toml"]));
    assert!(!ok && err.contains("cannot read config file /nonexistent/possync.toml"), "{err}");

    std::fs::write(&file, "audit_retention_days = 0\n").expect("write");
    let (ok, _, err) = run(cli()
        .args(["serve", "--print-config", "--database-url", "postgres://x@h/d", "--config"])
        .arg(&file));
    assert!(!ok && err.contains("audit_retention_days must be at least 1"), "{err}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn serve_and_admin_commands_run_from_a_config_file_alone() {
    let db = TestDb::create();
    let (dir, file) =
        write_config(&format!("database_url = \"{}\"\nlisten = \"127.0.0.1:0\"\nworkers = 2\n", db_url(&db)));
    let (ok, out, err) = run(cli().arg("migrate").arg("--config").arg(&file));
    assert!(ok && out.contains("applied V1__init"), "{out}{err}");
    let (ok, token, err) =
        run(cli().args(["token", "create", "--store", "s1", "--device", "d1"]).env("POSSYNC_CONFIG", &file));
    assert!(ok && token.trim().starts_with("pst_"), "{err}");

    let serve = ServeProcess::spawn(cli().arg("serve").env("POSSYNC_CONFIG", &file));
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let metrics = agent.get(format!("{}/metrics", serve.base)).call().expect("GET /metrics");
    assert_eq!(metrics.status(), 200, "listening on the file's address");
    let (ok, stderr) = serve.terminate();
    assert!(ok, "{stderr}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}
