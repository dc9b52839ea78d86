//! `--sqlite` on the CLI: `migrate` creates the file, `token`, `attention` and `serve` use it, a missing
//! file is refused with a hint, and `--sqlite` with `--database-url` is refused.

use possync_test_support::{cli, run};

#[test]
fn sqlite_file_through_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("shop.db");
    let db = db.to_str().expect("utf-8");

    let (ok, _, err) = run(cli().args(["token", "list", "--sqlite", db]));
    assert!(!ok && err.contains("does not exist") && err.contains("migrate --sqlite"), "{err}");

    let (ok, out, err) = run(cli().args(["migrate", "--sqlite", db]));
    assert!(ok && out.contains("applied V1__init"), "{out} {err}");
    let (ok, out, _) = run(cli().args(["migrate", "--sqlite", db]));
    assert!(ok && out.contains("up to date"), "{out}");

    let (ok, token, err) =
        run(cli().args(["token", "create", "--sqlite", db, "--store", "store-1", "--device", "till-1"]));
    assert!(ok && token.trim().starts_with("pst_"), "{err}");
    let (ok, out, _) = run(cli().args(["token", "list", "--sqlite", db]));
    assert!(ok && out.contains("till-1"), "{out}");
    let (ok, out, _) = run(cli().args(["attention", "list", "--sqlite", db, "--store", "store-1"]));
    assert!(ok && out.contains("no CONFLICT or INVALID"), "{out}");

    let (ok, _, err) =
        run(cli().args(["serve", "--sqlite", db, "--database-url", "postgres://x@127.0.0.1/x"]));
    assert!(!ok && err.contains("cannot be used with"), "{err}");

    let server = possync_test_support::ServeProcess::spawn(cli().args([
        "serve",
        "--sqlite",
        db,
        "--listen",
        "127.0.0.1:0",
    ]));
    let (clean, stderr) = server.terminate();
    assert!(clean, "{stderr}");
}
