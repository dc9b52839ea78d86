"""possync from Python: a till records sales offline-first and they reach the server exactly once.

Run it beside the generated module and the library (see README.md in this folder):

    POSSYNC_TOKEN=pst_... python3 example.py --server http://127.0.0.1:8080 --store store-1 --device till-1

It opens an outbox (a temporary file unless --outbox names one), records three sales, records one
of them again under the same id (a no-op), asks for "Sync now", prints what the cashier's banner
would show, and shuts down. Exits 1 when a sale is still unsent.
"""

import argparse
import os
import sys
import tempfile
import threading

import possync_ffi as possync


class Banner(possync.StatusListener):
    """The cashier's status line. Called on possync's own thread, never the UI thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.last = None

    def on_status(self, status):
        # A real app hands it to its UI thread; here it is kept for whoever reads it.
        with self.lock:
            self.last = status

    def on_report(self, report):
        pass


class Warnings(possync.LogSink):
    """possync's own log records, warnings and errors only, on stderr."""

    def log(self, record):
        print(f"possync {record.level.name}: {record.message} {record.fields}", file=sys.stderr)


def banner_text(status):
    """What a till's banner shows for a status."""
    if status.is_idle():
        if status.unsent == 0:
            return "All sent"
        amounts = ", ".join(f"{a.currency} {a.total_minor / 100:.2f}" for a in status.unsent_by_currency)
        return f"{status.unsent} unsent ({amounts})"
    if status.is_draining():
        return f"Sending {status.done} of {status.total}"
    if status.is_offline():
        return f"Offline: {status.last_error}"
    if status.is_needs_attention():
        return f"{status.conflicts + status.invalid} sale(s) need a person"
    return f"Setup problem: {status.last_error}"  # AUTH_FAILED, TLS_FAILED


def make_sale(store, receipt, price_minor):
    """One coffee, paid by card. Amounts are in minor units (cents)."""
    item = possync.SaleItem(line_no=1, sku="coffee", name="Coffee", quantity_milli=1000,
                            unit_price_minor=price_minor, discount_minor=0, line_total_minor=price_minor,
                            refund=False)
    header = possync.SaleHeader(store_id=store, receipt_number=receipt, kind=possync.SaleKind.SALE,
                                occurred_at_ms=1_764_000_000_000, currency="EUR",
                                subtotal_minor=price_minor, tax_minor=0, total_minor=price_minor,
                                change_minor=0)
    payment = possync.SalePayment(method="card", amount_minor=price_minor, reference=None)
    return possync.SalePayload(header=header, items=[item], payments=[payment])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:8080", help="the server's base URL")
    parser.add_argument("--store", default="store-1", help="the store the token was made for")
    parser.add_argument("--device", default="till-1", help="the device id the token was made for")
    parser.add_argument("--outbox", help="the outbox file (default: a new temporary one)")
    args = parser.parse_args()
    token = os.environ.get("POSSYNC_TOKEN")
    if not token:
        sys.exit("example.py: set POSSYNC_TOKEN to a device token (possync-server token create)")
    outbox = args.outbox or os.path.join(tempfile.mkdtemp(prefix="possync-example-"), "outbox.db")

    possync.install_log_sink(Warnings(), possync.LogLevel.WARN)  # once per process, before the engine
    config = possync.PossyncConfig(outbox_path=outbox, server_url=args.server, device_id=args.device)
    banner = Banner()
    engine = possync.PossyncEngine(config, token, banner)
    try:
        ids = [engine.enqueue(make_sale(args.store, f"R-{n}", 250 + n)) for n in (1, 2, 3)]
        print(f"recorded {len(ids)} sales; the first is {ids[0]}")
        # The app's own id: recording the same sale again under it changes nothing.
        again = engine.enqueue_with_id(ids[0], make_sale(args.store, "R-1", 251))
        print(f"the first again under its id: created={again.created}")
        try:
            engine.enqueue(make_sale(args.store, "R-bad", -5))
        except possync.SaleError.Invalid as e:
            print(f"refused before storing: {e.code} ({e.reason})")

        report = engine.sync_now(20_000)  # blocks: call it off the UI thread
        print(f"sync now: sent {report.sent}, duplicate {report.duplicate}, remaining {report.remaining_pending}")
        snapshot = engine.status()
        counts = snapshot.counts
        print(f"banner: {banner_text(snapshot.status)}")
        print(f"outbox: {counts.sent} sent, {counts.unsent} unsent, {counts.conflict + counts.invalid} need a person")
        return 0 if counts.unsent == 0 else 1
    finally:
        engine.shutdown()  # returns at once; unsent sales stay in the outbox
        engine.await_shutdown(10_000)


if __name__ == "__main__":
    sys.exit(main())
