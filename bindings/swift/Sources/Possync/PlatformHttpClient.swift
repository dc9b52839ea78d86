// The app's own HTTP stack for possync on iOS: URLSession, so App Transport Security, the system trust
// store and the app's own pinning (a URLSessionDelegate of its choice) apply. Give it to
// `PossyncEngine.withHttpClient(...)`; the slim mobile library has no HTTP client of its own.
// Not compiled on the Linux CI machines (no Swift toolchain): XCTests on a Mac cover it
// (Tests/PossyncTests), as the Kotlin twin bindings/kotlin/samples/PlatformHttpClient.kt is covered in CI.
import Foundation

/// One `POST` per call, on the engine's thread (never the main thread): it waits for URLSession's
/// answer, whatever its status.
public final class PlatformHttpClient: HttpClient, @unchecked Sendable {
    private let session: URLSession

    /// `session` carries the app's configuration and delegate (pinning); an ephemeral one by default.
    public init(session: URLSession = URLSession(configuration: .ephemeral)) {
        self.session = session
    }

    public func post(request: HttpPost) throws -> HttpReply {
        guard let url = URL(string: request.url) else {
            throw HttpFailure.Unreachable(reason: "bad server URL \(request.url)")
        }
        var post = URLRequest(url: url)
        post.httpMethod = "POST"
        post.httpBody = Data(request.body)
        post.timeoutInterval = TimeInterval(max(request.requestTimeoutMs, 1)) / 1000
        for header in request.headers {
            post.setValue(header.value, forHTTPHeaderField: header.name)
        }
        let done = DispatchSemaphore(value: 0)
        let outcome = Outcome()
        let task = session.dataTask(with: post) { data, response, error in
            defer { done.signal() }
            if let error = error as? URLError {
                outcome.set(.failure(Self.failure(error)))
            } else if let error = error {
                outcome.set(.failure(.Io(reason: error.localizedDescription)))
            } else if let response = response as? HTTPURLResponse {
                let body = String(decoding: data ?? Data(), as: UTF8.self)
                let retryAfter = response.value(forHTTPHeaderField: "Retry-After")
                let status = UInt16(clamping: response.statusCode)
                outcome.set(.success(HttpReply(status: status, retryAfter: retryAfter, body: body)))
            }
        }
        task.resume()
        let deadline = DispatchTime.now() + .milliseconds(Int(clamping: max(request.requestTimeoutMs, 1)))
        if done.wait(timeout: deadline) == .timedOut {
            task.cancel()
            throw HttpFailure.Timeout(reason: "no complete answer within \(request.requestTimeoutMs) ms")
        }
        return try outcome.get()
    }

    /// The completion handler's result, handed from URLSession's queue to the waiting thread.
    private final class Outcome: @unchecked Sendable {
        private let lock = NSLock()
        private var result: Result<HttpReply, HttpFailure> = .failure(.Io(reason: "no answer"))

        func set(_ value: Result<HttpReply, HttpFailure>) {
            lock.lock(); defer { lock.unlock() }
            result = value
        }

        func get() throws -> HttpReply {
            lock.lock(); defer { lock.unlock() }
            return try result.get()
        }
    }

    private static func failure(_ error: URLError) -> HttpFailure {
        switch error.code {
        case .timedOut:
            return .Timeout(reason: error.localizedDescription)
        case .cannotFindHost, .cannotConnectToHost, .notConnectedToInternet, .networkConnectionLost,
             .dnsLookupFailed, .internationalRoamingOff, .dataNotAllowed:
            return .Unreachable(reason: error.localizedDescription)
        case .serverCertificateUntrusted, .serverCertificateHasBadDate, .serverCertificateNotYetValid,
             .serverCertificateHasUnknownRoot, .clientCertificateRejected, .secureConnectionFailed:
            return .Tls(reason: error.localizedDescription)
        default:
            return .Io(reason: error.localizedDescription)
        }
    }
}
