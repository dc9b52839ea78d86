//! docs/protocol.md's "Try it with curl" section, run as written with bash, curl and jq against a
//! real server: each `# {"results":...}` line after a `curl` names the statuses and codes it answers.

use possync_test_support::TestServer;

const PROTOCOL_MD: &str = include_str!("../../../docs/protocol.md");

/// The `sh` blocks of the section, in order.
fn curl_section_scripts() -> Vec<String> {
    let section = PROTOCOL_MD.split("\n## Try it with curl\n").nth(1).expect("the curl section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section.split("```sh\n").skip(1).filter_map(|b| b.split("\n```").next()).map(str::to_owned).collect()
}

/// `(status, code)` of each result in `text`'s JSON-looking lines, in order.
fn answers<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    let field = |line: &str, name: &str| {
        line.split(&format!("\"{name}\":\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_owned()
    };
    lines.filter(|l| l.contains("\"results\"")).map(|l| (field(l, "status"), field(l, "code"))).collect()
}

#[test]
fn the_curl_recipes_answer_as_protocol_md_shows() {
    for tool in ["curl", "jq", "sha256sum"] {
        let found = std::process::Command::new("sh").args(["-c", &format!("command -v {tool}")]).output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "{tool} is needed to run docs/protocol.md's recipes"
        );
    }
    let s = TestServer::start();
    let scripts = curl_section_scripts();
    assert!(scripts.len() >= 2, "the first push and the CONFLICT recipe");
    let script = scripts.join("\n");
    let documented = answers(script.lines().filter_map(|l| l.trim_start().strip_prefix("# ")));
    let dir = tempfile_dir();
    let runnable = format!("set -eu\n{script}")
        .replace("TOKEN=pst_...", &format!("TOKEN={}", s.token))
        .replace("http://127.0.0.1:8080", &s.base)
        .replace("/tmp/", &format!("{}/", dir.display()));
    let out = std::process::Command::new("bash").args(["-c", &runnable]).output().expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout).replace("}{", "}\n{");
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        answers(stdout.lines()),
        documented,
        "what the recipes answered vs what protocol.md shows:\n{stdout}"
    );
    assert_eq!(documented.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(), ["OK", "INVALID", "CONFLICT"]);
}

/// A new empty folder for the recipe's files (it writes them to /tmp).
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("possync-curl-{}", possync_test_support::new_id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
