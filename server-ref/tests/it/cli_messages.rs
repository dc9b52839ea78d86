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
