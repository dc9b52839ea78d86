// possync-test-tls-front (POSSYNC_TLS_FRONT_BIN) in front of a TestServer: TLS on a free loopback port
// with certificates made when it starts, each connection forwarded in plain TCP to the server. It
// writes the CA that issued its certificate, an unrelated CA, its key's SPKI SHA-256 pin and a wrong
// (well-formed) pin into a temp folder. close() stops it (its stdin is closed).
package app.possync.tests

import java.io.File
import java.nio.file.Files
import java.util.concurrent.TimeUnit

class TlsFront private constructor(private val process: Process, val url: String, dir: File) : AutoCloseable {
    /** The CA that issued the front's certificate (PEM). */
    val caPem: String = File(dir, "ca.pem").readText()

    /** A CA that issued nothing the front sends (PEM). */
    val otherCaPem: String = File(dir, "other-ca.pem").readText()

    /** Base64 SHA-256 of the front certificate's SubjectPublicKeyInfo. */
    val pin: String = File(dir, "pin.txt").readText().trim()

    /** The same for another key: a pin that matches nothing the front sends. */
    val wrongPin: String = File(dir, "wrong-pin.txt").readText().trim()

    companion object {
        fun start(server: TestServer): TlsFront {
            val bin = System.getenv("POSSYNC_TLS_FRONT_BIN")
                ?: error("POSSYNC_TLS_FRONT_BIN is not set (scripts/bindings-test builds possync-test-tls-front and sets it)")
            check(File(bin).canExecute()) { "possync-test-tls-front not found at $bin: cargo build -p possync-tests --bin possync-test-tls-front" }
            val dir = Files.createTempDirectory("possync-pki").toFile()
            val log = File.createTempFile("possync-tls-front", ".log")
            val process = ProcessBuilder(bin, dir.path, server.baseUrl.removePrefix("http://"))
                .redirectError(log).start()
            val url = process.inputStream.bufferedReader().readLine()?.trim()
            if (url == null || !url.startsWith("https://127.0.0.1:")) {
                process.destroyForcibly().waitFor()
                error("possync-test-tls-front did not start: $url ${log.readText()}")
            }
            return TlsFront(process, url, dir)
        }
    }

    override fun close() {
        process.outputStream.close()
        if (!process.waitFor(10, TimeUnit.SECONDS)) process.destroyForcibly().waitFor()
    }
}
