// A real possync-server for the binding tests: a fresh PostgreSQL database, `migrate`, a device token,
// `serve` on a free loopback port. Everything is torn down (server stopped, database dropped) by close().
// Any missing piece (PostgreSQL unreachable, server binary missing) fails loudly.
package app.possync.tests

import java.io.File
import java.net.HttpURLConnection
import java.net.ServerSocket
import java.net.URI
import java.util.UUID
import java.util.concurrent.TimeUnit

class TestServer private constructor(
    private val adminUrl: String,
    private val dbName: String,
    private val process: Process,
    val baseUrl: String,
    val token: String,
) : AutoCloseable {
    /** The server's database, for running `possync-server` commands (e.g. `verify`) against it. */
    val dbUrl: String get() = adminUrl.substringBeforeLast('/') + "/" + dbName

    /** Runs `sql` against the server's database; its rows, one a line, columns split by `|`. */
    fun query(sql: String): String = psql(dbUrl, sql).trim()

    companion object {
        const val STORE = "store-1"
        const val DEVICE = "till-1"

        /** Starts a server; `serveArgs` are extra `serve` options (e.g. `--max-items 2`). */
        fun start(vararg serveArgs: String): TestServer {
            val bin = System.getenv("POSSYNC_SERVER_BIN")
                ?: error("POSSYNC_SERVER_BIN is not set (scripts/bindings-test sets it to target/debug/possync-server)")
            check(File(bin).canExecute()) { "possync-server binary not found at $bin: build it with cargo build -p possync-server" }
            val adminUrl = System.getenv("DATABASE_URL") ?: "postgres://postgres@127.0.0.1:5432/postgres"
            val dbName = "possync_kt_" + UUID.randomUUID().toString().replace("-", "").take(16)
            psql(adminUrl, "CREATE DATABASE $dbName")
            val dbUrl = adminUrl.substringBeforeLast('/') + "/" + dbName
            try {
                run(listOf(bin, "migrate"), dbUrl)
                val token = run(listOf(bin, "token", "create", "--store", STORE, "--device", DEVICE), dbUrl).trim()
                check(token.startsWith("pst_")) { "unexpected token output: $token" }
                val port = ServerSocket(0).use { it.localPort }
                val pb = ProcessBuilder(listOf(bin, "serve", "--listen", "127.0.0.1:$port", "--log-level", "warn") + serveArgs)
                pb.environment()["DATABASE_URL"] = dbUrl
                pb.redirectErrorStream(true).redirectOutput(File.createTempFile("possync-server", ".log"))
                val process = pb.start()
                val base = "http://127.0.0.1:$port"
                waitHealthy(base, process)
                return TestServer(adminUrl, dbName, process, base, token)
            } catch (e: Throwable) {
                psql(adminUrl, "DROP DATABASE IF EXISTS $dbName WITH (FORCE)")
                throw e
            }
        }

        private fun psql(url: String, sql: String): String {
            val p = ProcessBuilder("psql", url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql).start()
            val out = p.inputStream.bufferedReader().readText()
            val err = p.errorStream.bufferedReader().readText()
            check(p.waitFor() == 0) { "psql failed ($sql): $err -- is PostgreSQL reachable at $url?" }
            return out
        }

        private fun run(cmd: List<String>, dbUrl: String): String {
            val pb = ProcessBuilder(cmd)
            pb.environment()["DATABASE_URL"] = dbUrl
            val p = pb.start()
            val out = p.inputStream.bufferedReader().readText()
            val err = p.errorStream.bufferedReader().readText()
            check(p.waitFor() == 0) { "${cmd.joinToString(" ")} failed: $err" }
            return out
        }

        private fun waitHealthy(base: String, process: Process) {
            val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(15)
            while (System.nanoTime() < deadline) {
                check(process.isAlive) { "possync-server exited with ${process.exitValue()}" }
                try {
                    val c = URI("$base/healthz").toURL().openConnection() as HttpURLConnection
                    c.connectTimeout = 500
                    c.readTimeout = 500
                    if (c.responseCode == 200) return
                } catch (_: java.io.IOException) {
                }
                Thread.sleep(50)
            }
            error("possync-server did not become healthy at $base")
        }
    }

    override fun close() {
        process.destroy()
        if (!process.waitFor(10, TimeUnit.SECONDS)) process.destroyForcibly().waitFor()
        psql(adminUrl, "DROP DATABASE IF EXISTS $dbName WITH (FORCE)")
    }
}
