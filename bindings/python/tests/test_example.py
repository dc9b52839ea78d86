"""The guide's example (bindings/python/example.py) runs as README.md says: beside the generated
module and the library, against a real server, and prints what the guide shows."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import BINDINGS, DEVICE, STORE


def test_the_guides_example_runs_against_a_real_server(possync, server, tmp_path):
    lib_name = "libpossync_ffi.dylib" if sys.platform == "darwin" else "libpossync_ffi.so"
    lib = Path(os.environ["POSSYNC_FFI_LIB_DIR"]) / lib_name
    for source in (BINDINGS / "possync_ffi.py", BINDINGS / "example.py", lib):
        shutil.copy(source, tmp_path / source.name)
    run = subprocess.run(
        [sys.executable, "example.py", "--server", server.base_url, "--store", STORE, "--device", DEVICE],
        cwd=tmp_path, env=dict(os.environ, POSSYNC_TOKEN=server.token), capture_output=True, text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("recorded 3 sales; the first is "), run.stdout
    assert lines[1:] == [
        "the first again under its id: created=False",
        "refused before storing: negative_money (invalid sale (negative_money): "
        "items[0].unit_price_minor must not be negative here)",
        "sync now: sent 3, duplicate 0, remaining 0",
        "banner: All sent",
        "outbox: 3 sent, 0 unsent, 0 need a person",
    ], run.stdout
    assert server.token not in run.stdout + run.stderr, "the token is never printed"

    # Without a token it says what to do, in one line.
    run = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "POSSYNC_TOKEN"})
    assert run.returncode == 1 and "set POSSYNC_TOKEN" in run.stderr, run.stderr
