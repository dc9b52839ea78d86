"""Fixtures for the Python binding tests.

- ``possync``: the generated module ``possync_ffi``, loaded from a temp folder next to the cdylib from
  ``POSSYNC_FFI_LIB_DIR`` (uniffi's Python loads the library from the module's own folder).
- ``server``: a real ``possync-server`` (``POSSYNC_SERVER_BIN``) on a fresh PostgreSQL database
  (``DATABASE_URL``, default ``postgres://postgres@127.0.0.1:5432/postgres``), migrated, with a device
  token, serving on a free loopback port; stopped and the database dropped afterwards.
- ``logs``: every log record of the Rust side, through the log sink (installed once per session).
- ``running_tls_front(server, folder)``: ``possync-test-tls-front`` (``POSSYNC_TLS_FRONT_BIN``) in front of
  a server: TLS with certificates made when it starts (a CA, an unrelated CA, the right and a wrong
  SPKI pin, written into ``folder``), each connection forwarded in plain TCP to the server.
- ``query(server, sql)``: a psql query against a server's database, its rows as text.

Anything missing (library, server binary, PostgreSQL) fails the tests loudly; nothing is skipped.
"""

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

BINDINGS = Path(__file__).resolve().parent.parent
STORE = "store-1"
DEVICE = "till-1"


def _required_env(name, hint):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: {hint} (scripts/bindings-test sets it)", pytrace=False)
    return value


@pytest.fixture(scope="session")
def possync(tmp_path_factory):
    lib_dir = Path(_required_env("POSSYNC_FFI_LIB_DIR", "the folder holding the possync-ffi cdylib"))
    lib_name = "libpossync_ffi.dylib" if sys.platform == "darwin" else "libpossync_ffi.so"
    lib = lib_dir / lib_name
    if not lib.is_file():
        pytest.fail(f"{lib} not found: build it with cargo build -p possync-ffi --lib", pytrace=False)
    folder = tmp_path_factory.mktemp("possync_py")
    shutil.copy(BINDINGS / "possync_ffi.py", folder / "possync_ffi.py")
    shutil.copy(lib, folder / lib_name)
    spec = importlib.util.spec_from_file_location("possync_ffi", folder / "possync_ffi.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["possync_ffi"] = module
    spec.loader.exec_module(module)
    return module


class CapturedLogs:
    """A LogSink that keeps every record."""

    def __init__(self, possync):
        class Sink(possync.LogSink):
            def __init__(self, records, lock):
                self.records, self.lock = records, lock

            def log(self, record):
                with self.lock:
                    self.records.append(record)

        self.lock = threading.Lock()
        self.warn = possync.LogLevel.WARN
        self.records = []
        self.sink = Sink(self.records, self.lock)

    def warns(self, correlation_id):
        """The WARN records of one run."""
        with self.lock:
            return [
                r
                for r in self.records
                if r.level == self.warn and r.fields.get("correlation_id") == correlation_id
            ]

    def sends(self, correlation_id):
        with self.lock:
            return [
                r
                for r in self.records
                if r.target == "possync::send" and r.fields.get("correlation_id") == correlation_id
            ]


@pytest.fixture(scope="session")
def logs(possync):
    captured = CapturedLogs(possync)
    possync.install_log_sink(captured.sink, possync.LogLevel.DEBUG)
    yield captured
    possync.remove_log_sink()


def _psql(admin_url, sql):
    result = subprocess.run(
        ["psql", admin_url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.fail(f"psql failed ({sql}): {result.stderr} -- is PostgreSQL reachable at {admin_url}?", pytrace=False)
    return result.stdout


def query(server, sql):
    """Runs ``sql`` against the server's database; its rows, one a line, columns split by ``|``."""
    return _psql(server.db_url, sql).strip()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, base_url, token, db_url):
        self.base_url, self.token, self.db_url = base_url, token, db_url


@contextlib.contextmanager
def running_server(*serve_args):
    """A fresh server as in the ``server`` fixture, with extra ``serve`` options (e.g. ``--max-items 2``)."""
    binary = _required_env("POSSYNC_SERVER_BIN", "the possync-server binary")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"possync-server not found at {binary}: cargo build -p possync-server", pytrace=False)
    admin_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    db = "possync_py_" + uuid.uuid4().hex[:16]
    _psql(admin_url, f"CREATE DATABASE {db}")
    env = dict(os.environ, DATABASE_URL=admin_url.rsplit("/", 1)[0] + "/" + db)
    process = None
    try:
        subprocess.run([binary, "migrate"], env=env, check=True, capture_output=True)
        token = subprocess.run(
            [binary, "token", "create", "--store", STORE, "--device", DEVICE],
            env=env, check=True, capture_output=True, text=True,
        ).stdout.strip()
        assert token.startswith("pst_"), token
        port = _free_port()
        log = tempfile.TemporaryFile()
        process = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{port}", "--log-level", "warn", *serve_args],
            env=env, stdout=log, stderr=log,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, f"possync-server exited with {process.returncode}"
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=0.5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"possync-server did not become healthy at {base}"
            time.sleep(0.05)
        yield Server(base, token, env["DATABASE_URL"])
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        _psql(admin_url, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


@pytest.fixture
def server():
    with running_server() as s:
        yield s


class TlsFront:
    """A running ``possync-test-tls-front``: its ``https://`` URL and what it wrote."""

    def __init__(self, url, folder):
        self.url = url
        self.ca_pem = (folder / "ca.pem").read_text()
        self.other_ca_pem = (folder / "other-ca.pem").read_text()
        self.pin = (folder / "pin.txt").read_text().strip()
        self.wrong_pin = (folder / "wrong-pin.txt").read_text().strip()


@contextlib.contextmanager
def running_tls_front(server, folder):
    """A TLS front for ``server`` (see the module docs); stopped afterwards (its stdin is closed)."""
    binary = _required_env(
        "POSSYNC_TLS_FRONT_BIN",
        "the possync-test-tls-front binary (cargo build -p possync-tests --bin possync-test-tls-front)",
    )
    if not os.access(binary, os.X_OK):
        pytest.fail(f"possync-test-tls-front not found at {binary}", pytrace=False)
    upstream = server.base_url.removeprefix("http://")
    folder.mkdir(parents=True, exist_ok=True)
    log = tempfile.TemporaryFile()
    process = subprocess.Popen([binary, str(folder), upstream], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=log)
    try:
        url = process.stdout.readline().decode().strip()
        if not url.startswith("https://127.0.0.1:"):
            log.seek(0)
            pytest.fail(f"possync-test-tls-front did not start: {url!r} {log.read().decode()}", pytrace=False)
        yield TlsFront(url, folder)
    finally:
        process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
