"""Python binding tests against the cdylib and a real possync-server: the same scenarios as the Kotlin
tests (bindings/kotlin/tests/BindingsTest.kt)."""

import os
import tempfile
import threading
import time

import pytest

from conftest import DEVICE, STORE

SEND_FIELDS = {
    "correlation_id", "client_tx_id", "attempt", "lease_token",
    "drain_reason", "latency_ms", "result", "code",
}


def wait_for(what, cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def make_sale(p, seed, n=2, store=STORE):
    items = [
        p.SaleItem(line_no=i, sku=f"sku-{i}", name=f"Article {i}", quantity_milli=1000,
                   unit_price_minor=250, discount_minor=0, line_total_minor=250, refund=False)
        for i in range(1, n + 1)
    ]
    total = 250 * n
    header = p.SaleHeader(store_id=store, receipt_number=f"R-{seed}", kind=p.SaleKind.SALE,
                          occurred_at_ms=1_764_000_000_000 + seed, currency="EUR", subtotal_minor=total,
                          tax_minor=0, total_minor=total, change_minor=0)
    payments = [p.SalePayment(method="card", amount_minor=total, reference=f"auth-{seed}")]
    return p.SalePayload(header=header, items=items, payments=payments)


def make_config(p, server_url, token):
    folder = tempfile.mkdtemp(prefix="possync-py")
    return p.PossyncConfig(outbox_path=os.path.join(folder, "outbox.db"), server_url=server_url,
                           token=token, device_id=DEVICE, interval_ms=3_600_000, connect_timeout_ms=2_000,
                           request_timeout_ms=5_000, lease_ms=15_000, heartbeat_ms=2_000)


def make_listener(p):
    class Recording(p.StatusListener):
        def __init__(self):
            self.statuses, self.reports, self.threads = [], [], []

        def on_status(self, status):
            self.threads.append(threading.get_ident())
            self.statuses.append(status)

        def on_report(self, report):
            self.threads.append(threading.get_ident())
            self.reports.append(report)

    return Recording()


def test_enqueue_then_sync_now_sends_every_sale_and_reports_it(possync, server, logs):
    p = possync
    listener = make_listener(p)
    engine = p.PossyncEngine(make_config(p, server.base_url, server.token), listener)
    try:
        # The startup run (nothing to send) reports first; wait for it so the counts below are exact.
        wait_for("the startup run's report", lambda: any(p.DrainReason.STARTUP in r.reasons for r in listener.reports))
        ids = [engine.enqueue(make_sale(p, seed)) for seed in (1, 2, 3)]
        assert len(set(ids)) == 3
        assert engine.counts().pending == 3

        report = engine.sync_now(20_000)
        assert (report.sent, report.duplicate, report.conflict, report.invalid, report.retry) == (3, 0, 0, 0, 0), report
        assert report.remaining_pending == 0 and report.stop is None, report
        assert p.DrainReason.MANUAL in report.reasons

        counts = engine.counts()
        assert (counts.sent, counts.unsent, counts.pending) == (3, 0, 0), counts
        assert engine.attention_items() == []

        # The listener sees the same run's report and ends Idle, on the engine's thread, not ours.
        wait_for("the manual run's report on the listener",
                 lambda: any(r.correlation_id == report.correlation_id for r in listener.reports))
        wait_for("Idle after the run", lambda: listener.statuses and listener.statuses[-1].is_idle())
        assert threading.get_ident() not in listener.threads

        snapshot = engine.status()
        assert snapshot.status.is_idle()
        assert snapshot.last_report.correlation_id == report.correlation_id
        assert snapshot.counts.sent == 3

        sends = logs.sends(report.correlation_id)
        assert len(sends) == 3
        for record in sends:
            assert SEND_FIELDS <= set(record.fields), record.fields
            assert record.level == p.LogLevel.INFO
            assert record.fields["result"] == "OK" and record.fields["attempt"] == "1"
            assert "manual" in record.fields["drain_reason"]
            assert record.fields["lease_token"]
        assert {r.fields["client_tx_id"] for r in sends} == set(ids)
    finally:
        engine.shutdown()


def test_sync_now_against_a_dead_server_reports_offline_and_keeps_the_sales(possync, logs):
    p = possync
    import socket

    with socket.socket() as s:  # a port nothing listens on any more
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    listener = make_listener(p)
    engine = p.PossyncEngine(make_config(p, f"http://127.0.0.1:{port}", "pst_unused"), listener)
    try:
        engine.enqueue(make_sale(p, 1))
        report = engine.sync_now(20_000)
        assert isinstance(report.stop, p.DrainStop.OFFLINE), report.stop
        assert report.sent == 0 and report.remaining_pending == 1
        # The engine keeps retrying on its own (Draining, then Offline again): wait for an Offline delivery.
        wait_for("an Offline status", lambda: any(s.is_offline() for s in listener.statuses))
        assert engine.status().status.is_offline(), engine.status().status
        assert engine.counts().pending == 1
        sends = logs.sends(report.correlation_id)
        assert sends and all(r.fields["result"] == "TRANSPORT" and r.level == p.LogLevel.WARN for r in sends)
    finally:
        engine.shutdown()


def test_invalid_sale_raises_a_typed_error_and_stores_nothing(possync):
    p = possync
    engine = p.PossyncEngine(make_config(p, "http://127.0.0.1:9", "pst_unused"), None)
    try:
        bad = make_sale(p, 1)
        bad.header.total_minor += 1
        with pytest.raises(p.SaleError.Invalid) as e:
            engine.enqueue(bad)
        assert e.value.code == "totals_mismatch" and e.value.reason

        empty = make_sale(p, 2)
        empty.items = []
        with pytest.raises(p.SaleError.Invalid) as e:
            engine.enqueue(empty)
        assert e.value.code == "no_items"
        assert engine.counts().pending == 0

        assert engine.enqueue_with_id("till-1:000001", make_sale(p, 3)).created
        assert not engine.enqueue_with_id("till-1:000001", make_sale(p, 3)).created
        with pytest.raises(p.SaleError.IdConflict) as e:
            engine.enqueue_with_id("till-1:000001", make_sale(p, 4))
        assert e.value.client_tx_id == "till-1:000001"

        engine.shutdown()
        with pytest.raises(p.SyncError.ShutDown):
            engine.sync_now(1_000)
    finally:
        engine.shutdown()


def test_invalid_config_and_corrupt_outbox_raise_open_errors(possync, tmp_path):
    p = possync
    with pytest.raises(p.OpenError.InvalidConfig) as e:
        p.PossyncEngine(make_config(p, "ftp://127.0.0.1:9", "pst_x"), None)
    assert "server_url" in e.value.reason

    not_a_db = tmp_path / "outbox.db"
    not_a_db.write_bytes(b"B" * 4096)
    config = make_config(p, "http://127.0.0.1:9", "pst_x")
    config.outbox_path = str(not_a_db)
    with pytest.raises(p.OpenError.Corrupt):
        p.PossyncEngine(config, None)
    assert not_a_db.read_bytes() == b"B" * 4096
