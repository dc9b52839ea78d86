// The app's own HTTP stack for possync: `HttpURLConnection` (on Android it is backed by the platform's
// OkHttp, and honours the app's network security config: trust anchors, certificate pins, cleartext
// rules). Give it to `PossyncEngine.withHttpClient(...)`; the slim mobile library has no HTTP client of
// its own. Compiled and tested in CI (bindings/kotlin/tests).
package app.possync.samples

import app.possync.HttpClient
import app.possync.HttpFailure
import app.possync.HttpPost
import app.possync.HttpReply
import java.io.IOException
import java.net.ConnectException
import java.net.HttpURLConnection
import java.net.NoRouteToHostException
import java.net.SocketTimeoutException
import java.net.URI
import java.net.UnknownHostException
import javax.net.ssl.SSLException

/** One `POST` per call, on the engine's thread; the answer whatever its status. */
class PlatformHttpClient : HttpClient {
    override fun post(request: HttpPost): HttpReply {
        val connection = try {
            URI(request.url).toURL().openConnection() as HttpURLConnection
        } catch (e: Exception) {
            throw HttpFailure.Unreachable("bad server URL ${request.url}: ${e.message}")
        }
        try {
            connection.requestMethod = "POST"
            connection.doOutput = true
            connection.instanceFollowRedirects = false
            connection.useCaches = false
            connection.connectTimeout = request.connectTimeoutMs.coerceIn(1L, Int.MAX_VALUE.toLong()).toInt()
            // HttpURLConnection bounds each read, not the whole call (OkHttp's callTimeout would).
            connection.readTimeout = request.requestTimeoutMs.coerceIn(1L, Int.MAX_VALUE.toLong()).toInt()
            connection.setFixedLengthStreamingMode(request.body.size)
            for (header in request.headers) connection.setRequestProperty(header.name, header.value)
            connection.outputStream.use { it.write(request.body) }
            val status = connection.responseCode
            val stream = if (status >= 400) connection.errorStream else connection.inputStream
            val body = stream?.use { it.readBytes().toString(Charsets.UTF_8) } ?: ""
            return HttpReply(status = status.toUShort(), retryAfter = connection.getHeaderField("Retry-After"), body = body)
        } catch (e: HttpFailure) {
            throw e
        } catch (e: SSLException) {
            throw HttpFailure.Tls("TLS handshake with ${request.url} failed: ${e.message}")
        } catch (e: SocketTimeoutException) {
            throw HttpFailure.Timeout("${request.url}: ${e.message}")
        } catch (e: ConnectException) {
            throw HttpFailure.Unreachable("${request.url}: ${e.message}")
        } catch (e: UnknownHostException) {
            throw HttpFailure.Unreachable("unknown host in ${request.url}: ${e.message}")
        } catch (e: NoRouteToHostException) {
            throw HttpFailure.Unreachable("${request.url}: ${e.message}")
        } catch (e: IOException) {
            throw HttpFailure.Io("${request.url}: ${e.message}")
        } finally {
            connection.disconnect()
        }
    }
}
