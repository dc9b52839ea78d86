"""Fixtures of the console's browser tests: a real possync-server on a PostgreSQL database of its own
(created here, dropped at the end), an admin, device tokens, a helper that pushes sales as a till does,
and headless Chromium driven through chromedriver (WebDriver).

Environment (set by scripts/console-browser-test): POSSYNC_SERVER_BIN, DATABASE_URL, CHROMIUM_BIN,
CHROMEDRIVER_BIN, SCREENSHOT_DIR.
"""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ALERT_AFTER_SECS = 8


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def canonical(payload):
    """Hash v1 canonical JSON of a payload (no floats): sorted keys, no whitespace, UTF-8."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sale(store, receipt, name="Espresso", price=250, qty=2):
    total = price * qty
    return {
        "header": {"store_id": store, "receipt_number": receipt, "kind": "sale",
                   "occurred_at_ms": int(time.time() * 1000), "currency": "EUR",
                   "subtotal_minor": total, "tax_minor": 0, "total_minor": total, "change_minor": 0},
        "items": [{"line_no": 1, "sku": "sku-1", "name": name, "quantity_milli": qty * 1000,
                   "unit_price_minor": price, "discount_minor": 0, "line_total_minor": total,
                   "refund": False}],
        "payments": [{"method": "card", "amount_minor": total}],
    }


def envelope(client_tx_id, payload, seq=None):
    env = {"client_tx_id": client_tx_id, "payload_hash_version": 1,
           "payload_sha256": hashlib.sha256(canonical(payload)).hexdigest(), "attempt": 1,
           "payload": payload}
    if seq is not None:
        env["outbox_seq"] = seq
    return env


class Server:
    def __init__(self, base, tokens, secret, bin_path, db_url):
        self.base = base
        self.tokens = tokens
        self.secret = secret
        self.bin = bin_path
        self.db_url = db_url

    def push(self, device, envelopes, report=None):
        status, answer = self.push_with(self.tokens[device], device, envelopes, report)
        assert status == 200, answer
        return [r["status"] for r in answer["results"]]

    def push_with(self, token, device, envelopes, report=None):
        """A push with ``token``: the HTTP status and the JSON answer (also for an error)."""
        body = {"device_id": device, "transactions": envelopes}
        if report is not None:
            body["report"] = report
        req = urllib.request.Request(
            self.base + "/sync/push", data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def metrics(self):
        with urllib.request.urlopen(self.base + "/metrics", timeout=30) as resp:
            return resp.read().decode()


def _run(*args, env=None):
    out = subprocess.run(args, check=True, capture_output=True, text=True, env=env)
    return out.stdout.strip()


@pytest.fixture(scope="session")
def server():
    bin_path = os.environ["POSSYNC_SERVER_BIN"]
    admin_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    db = "possync_console_browser_%d_%d" % (os.getpid(), int(time.time()))
    _run("psql", admin_url, "-Atqc", "CREATE DATABASE " + db)
    db_url = admin_url.rsplit("/", 1)[0] + "/" + db
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSSYNC_") and k != "DATABASE_URL"}
    env["DATABASE_URL"] = db_url
    env["POSSYNC_LOG"] = "warn"
    proc = None
    log = tempfile.NamedTemporaryFile(prefix="possync-console-", suffix=".log", delete=False)
    try:
        _run(bin_path, "migrate", env=env)
        secret = _run(bin_path, "admin", "create", "--name", "manager", env=env)
        tokens = {}
        for device, label in [("till-1", "front till"), ("till-2", "back till"), ("till-3", "terrace")]:
            tokens[device] = _run(bin_path, "token", "create", "--store", "store-1", "--device", device,
                                  "--label", label, env=env)
        port = _free_port()
        proc = subprocess.Popen(
            [bin_path, "serve", "--listen", "127.0.0.1:%d" % port, "--console-insecure-cookie",
             "--console-alert-after-secs", str(ALERT_AFTER_SECS)],
            env=env, stdout=log, stderr=log)
        base = "http://127.0.0.1:%d" % port
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/readyz", timeout=1)
                break
            except Exception:
                if proc.poll() is not None:
                    raise RuntimeError("possync-server exited; see " + log.name)
                time.sleep(0.1)
        yield Server(base, tokens, secret, bin_path, db_url)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        subprocess.run(["psql", admin_url, "-Atqc", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % db],
                       capture_output=True)


@pytest.fixture(scope="session")
def downloads():
    d = tempfile.mkdtemp(prefix="possync-console-downloads-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def driver(downloads):
    profile = tempfile.mkdtemp(prefix="possync-console-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--user-data-dir=" + profile, "--window-size=1400,1000"]:
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": downloads,
                                              "download.prompt_for_download": False})
    service = Service(executable_path=os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver"))
    drv = webdriver.Chrome(options=options, service=service)
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def shots():
    d = os.environ.get("SCREENSHOT_DIR", "target/console-screenshots")
    os.makedirs(d, exist_ok=True)
    return d
