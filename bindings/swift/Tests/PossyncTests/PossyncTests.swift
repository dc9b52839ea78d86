// Swift binding tests, the same scenarios as bindings/kotlin/tests/BindingsTest.kt. Run on a Mac with
// `swift test` (see ../../README.md). The sync test needs a running possync-server: set
// POSSYNC_TEST_SERVER_URL and POSSYNC_TEST_TOKEN (store `store-1`, device `till-1`); without them it
// fails, it is never skipped silently.
import Foundation
import XCTest
@testable import Possync

final class CapturedLogs: LogSink, @unchecked Sendable {
    private let lock = NSLock()
    private var records: [LogRecord] = []

    func log(record: LogRecord) {
        lock.lock(); defer { lock.unlock() }
        records.append(record)
    }

    func sends(correlationId: String) -> [LogRecord] {
        lock.lock(); defer { lock.unlock() }
        return records.filter { $0.target == "possync::send" && $0.fields["correlation_id"] == correlationId }
    }
}

final class RecordingListener: StatusListener, @unchecked Sendable {
    private let lock = NSLock()
    private var _statuses: [SyncStatus] = []
    private var _reports: [DrainReport] = []
    var statuses: [SyncStatus] { lock.lock(); defer { lock.unlock() }; return _statuses }
    var reports: [DrainReport] { lock.lock(); defer { lock.unlock() }; return _reports }

    func onStatus(status: SyncStatus) {
        lock.lock(); defer { lock.unlock() }
        _statuses.append(status)
    }

    func onReport(report: DrainReport) {
        lock.lock(); defer { lock.unlock() }
        _reports.append(report)
    }
}

let logs = CapturedLogs()
let installLogs: Void = { try! installLogSink(sink: logs, maxLevel: .debug) }()

func waitFor(_ what: String, timeout: TimeInterval = 10, _ cond: () -> Bool) {
    let deadline = Date().addingTimeInterval(timeout)
    while !cond() {
        if Date() > deadline { XCTFail("timed out waiting for \(what)"); return }
        Thread.sleep(forTimeInterval: 0.02)
    }
}

func sale(_ seed: Int64, lines: Int = 2) -> SalePayload {
    let items = (1...lines).map {
        SaleItem(lineNo: UInt32($0), sku: "sku-\($0)", name: "Article \($0)", quantityMilli: 1000,
                 unitPriceMinor: 250, discountMinor: 0, lineTotalMinor: 250, refund: false)
    }
    let total = Int64(250 * lines)
    let header = SaleHeader(storeId: "store-1", receiptNumber: "R-\(seed)", kind: .sale,
                            occurredAtMs: 1_764_000_000_000 + seed, currency: "EUR", subtotalMinor: total,
                            taxMinor: 0, totalMinor: total, changeMinor: 0, cashierId: nil)
    return SalePayload(header: header, items: items,
                       payments: [SalePayment(method: "card", amountMinor: total, reference: "auth-\(seed)")])
}

func config(server: String) -> PossyncConfig {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
    try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return PossyncConfig(outboxPath: dir.appendingPathComponent("outbox.db").path, serverUrl: server,
                         deviceId: "till-1", intervalMs: 3_600_000, connectTimeoutMs: 2_000,
                         requestTimeoutMs: 5_000, leaseMs: 15_000, heartbeatMs: 2_000)
}

final class PossyncTests: XCTestCase {
    override func setUp() {
        _ = installLogs
    }

    func testEnqueueThenSyncNowSendsEverySaleAndReportsIt() throws {
        let env = ProcessInfo.processInfo.environment
        guard let url = env["POSSYNC_TEST_SERVER_URL"], let token = env["POSSYNC_TEST_TOKEN"] else {
            return XCTFail("set POSSYNC_TEST_SERVER_URL and POSSYNC_TEST_TOKEN (see bindings/swift/README.md)")
        }
        let listener = RecordingListener()
        let engine = try PossyncEngine.withHttpClient(config: config(server: url), token: token, httpClient: PlatformHttpClient(), listener: listener)
        defer { engine.shutdown() }
        waitFor("the startup run's report") { listener.reports.contains { $0.reasons.contains(.startup) } }
        let ids = try (1...3).map { try engine.enqueue(sale: sale(Int64($0) + Int64(Date().timeIntervalSince1970 * 1000))) }
        XCTAssertEqual(try engine.counts().pending, 3)

        let report = try engine.syncNow(timeoutMs: 20_000)
        XCTAssertEqual(report.sent, 3)
        XCTAssertEqual(report.remainingPending, 0)
        XCTAssertNil(report.stop)
        XCTAssertTrue(report.reasons.contains(.manual))
        XCTAssertEqual(try engine.counts().sent, 3)

        waitFor("the manual run's report on the listener") { listener.reports.contains { $0.correlationId == report.correlationId } }
        waitFor("Idle after the run") { listener.statuses.last == .idle(unsent: 0, unsentByCurrency: []) }

        let sends = logs.sends(correlationId: report.correlationId)
        XCTAssertEqual(sends.count, 3)
        for r in sends {
            for key in ["correlation_id", "client_tx_id", "attempt", "lease_token", "drain_reason", "latency_ms", "result", "code"] {
                XCTAssertNotNil(r.fields[key], "field \(key) missing")
            }
            XCTAssertEqual(r.fields["result"], "OK")
        }
        XCTAssertEqual(Set(sends.compactMap { $0.fields["client_tx_id"] }), Set(ids))
    }

    func testInvalidSaleThrowsATypedErrorAndStoresNothing() throws {
        let engine = try PossyncEngine.withHttpClient(config: config(server: "http://127.0.0.1:9"), token: "pst_unused", httpClient: PlatformHttpClient(), listener: nil)
        defer { engine.shutdown() }
        var bad = sale(1)
        bad.header.totalMinor += 1
        XCTAssertThrowsError(try engine.enqueue(sale: bad)) { error in
            guard case SaleError.Invalid(let code, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(code, "totals_mismatch")
            XCTAssertFalse(reason.isEmpty)
        }
        XCTAssertEqual(try engine.counts().pending, 0)
    }

    func testInvalidConfigThrowsOpenError() {
        XCTAssertThrowsError(try PossyncEngine.withHttpClient(config: config(server: "ftp://127.0.0.1:9"), token: "pst_x", httpClient: PlatformHttpClient(), listener: nil)) { error in
            guard case OpenError.InvalidConfig = error else { return XCTFail("\(error)") }
        }
    }
}
