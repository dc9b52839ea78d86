// The till's screens over possync: the status line, a "needs attention" screen where a supervisor
// re-keys or voids a refused sale with a note, the sales list (paged, with each sale's state), token
// rotation, TLS settings and a diagnostics export for support. Compiled in CI with the other sample
// against the generated bindings (Android classes stubbed); see bindings/kotlin/README.md.
package app.possync.samples

import android.content.Context
import android.os.Handler
import android.os.Looper
import android.util.Log
import app.possync.AttentionItem
import app.possync.ConfigException
import app.possync.DrainReason
import app.possync.PossyncConfig
import app.possync.PossyncEngine
import app.possync.Resolution
import app.possync.SaleException
import app.possync.SaleRecord
import app.possync.SaleResolution
import app.possync.SaleState
import app.possync.StorageException
import app.possync.SyncStatus
import java.io.File
import java.util.concurrent.Executors

/** Money for a person: 1234 minor units of EUR → "EUR 12.34" (two decimals; adapt for JPY and the like). */
fun money(currency: String, minor: Long): String = "%s %d.%02d".format(currency, minor / 100, Math.abs(minor % 100))

/**
 * The one-line status at the bottom of the till. `Idle` carries the unsent count and amounts, so no
 * second call is needed; the other states say what is going on and whether a person is needed.
 */
fun statusLine(status: SyncStatus): String = when (status) {
    is SyncStatus.Idle ->
        if (status.unsent == 0L) "All sales sent"
        else "${status.unsent} unsent: " + status.unsentByCurrency.joinToString { money(it.currency, it.totalMinor) }
    is SyncStatus.Draining -> "Sending ${status.done}/${status.total}…"
    is SyncStatus.Offline -> "Offline, sales kept on this till: ${status.lastError}"
    is SyncStatus.AuthFailed -> "Not authorised: ask for a new device token"
    is SyncStatus.TlsFailed -> "Server certificate not trusted: call your administrator"
    is SyncStatus.NeedsAttention -> "${status.conflicts + status.invalid} sales need a supervisor"
}

/**
 * "Needs attention": the sales the server refused for good, and what a supervisor can do with each.
 * `resolve` writes to the outbox (fast, but not for the main thread on a slow device): it runs on a
 * background executor and the result is posted back to the main thread.
 */
class AttentionScreen(private val engine: PossyncEngine, private val show: (List<String>, String?) -> Unit) {
    private val worker = Executors.newSingleThreadExecutor()
    private val main = Handler(Looper.getMainLooper())

    /** One row per refused sale: when, why (the server's code and message). */
    fun rows(items: List<AttentionItem>): List<String> = items.map {
        "${it.state} ${it.clientTxId}: ${it.code ?: "-"} ${it.message ?: ""} (recorded at ${it.createdAtMs})"
    }

    fun refresh(message: String? = null) = worker.execute {
        val rows = try {
            rows(engine.attentionItems())
        } catch (e: StorageException) {
            listOf("cannot read the outbox: ${e.message}")
        }
        main.post { show(rows, message) }
    }

    /** CONFLICT: another sale holds the id on the server; send this one again under a new id. */
    fun rekey(item: AttentionItem, note: String) = resolve(item, Resolution.Rekey, note)

    /** The sale should never be sent (a test sale, a duplicate rung up by mistake); it is kept as voided. */
    fun void(item: AttentionItem, note: String) = resolve(item, Resolution.Void, note)

    /** INVALID: send a corrected sale instead (built by the app from the original and the server's message). */
    fun replace(item: AttentionItem, corrected: app.possync.SalePayload, note: String) =
        resolve(item, Resolution.Replace(corrected), note)

    private fun resolve(item: AttentionItem, resolution: Resolution, note: String) = worker.execute {
        val message = try {
            val newId = engine.resolve(item.clientTxId, resolution, note.ifBlank { null })
            if (newId != null) engine.trigger(DrainReason.MANUAL) // send the new sale now
            if (newId != null) "Sent again as $newId" else "Voided"
        } catch (e: SaleException.NotResolvable) {
            "Already resolved or no longer refused: ${e.reason}"
        } catch (e: SaleException) {
            "Not resolved: ${e.message}"
        }
        refresh(message)
    }
}

/** The sales screen: newest first, 50 at a time; `next()` loads the page after the last one shown. */
class SalesList(private val engine: PossyncEngine) {
    private var oldestShown: Long? = null

    fun row(s: SaleRecord): String {
        val state = when {
            s.resolution == SaleResolution.VOIDED -> "voided"
            s.resolution != null -> "resolved (${s.resolution}) → ${s.linkedClientTxId}"
            s.state == SaleState.SENT -> "sent"
            s.state == SaleState.PENDING || s.state == SaleState.IN_FLIGHT -> "waiting to be sent"
            else -> "refused (${s.lastCode}): needs a supervisor"
        }
        return "${s.sale?.header?.receiptNumber ?: s.clientTxId}  ${money(s.currency, s.totalMinor)}  $state"
    }

    /** Throws StorageException: call it off the main thread. */
    fun next(): List<String> {
        val page = engine.recentSales(50L, oldestShown)
        page.lastOrNull()?.let { oldestShown = it.seq }
        return page.map(::row)
    }
}

/**
 * Token rotation: after `possync-server token create` issued a new token (and the old one was revoked),
 * the app stores it (EncryptedSharedPreferences) and hands it to the running engine; no restart.
 */
fun rotateToken(engine: PossyncEngine, newToken: String): Boolean = try {
    engine.setToken(newToken)
    engine.trigger(DrainReason.MANUAL) // an AuthFailed engine sends at once with the new token
    true
} catch (e: ConfigException.Invalid) {
    Log.e("possync", e.reason) // never contains the token
    false
}

/** A shop on its own CA (no public certificate), with the server's key pinned. */
fun configWithOwnCa(context: Context, caPem: String, pin: String) = PossyncConfig(
    outboxPath = File(context.filesDir, "possync/outbox.db").path,
    serverUrl = "https://pos.shop.lan",
    deviceId = "till-1",
    tlsExtraCaPem = listOf(caPem),    // trusted besides the public roots
    tlsSpkiSha256Pins = listOf(pin),  // base64 SHA-256 of the server's public key; keep a backup pin too
    sentRetentionMs = 30L * 24 * 3600 * 1000, // sent sales kept 30 days for the sales screen, then pruned
)

/**
 * "Send to support": a consistent copy of the outbox (open with `possync-server verify --outbox`) and
 * engine.txt (settings without the token, status, last runs), in a fresh folder under cacheDir, to be
 * shared with a FileProvider. Off the main thread (it copies the file).
 */
fun exportForSupport(context: Context, engine: PossyncEngine): List<String> {
    val dir = File(context.cacheDir, "possync-support-${System.currentTimeMillis()}")
    return try {
        engine.exportDiagnostics(dir.path)
    } catch (e: StorageException) {
        Log.e("possync", "diagnostics export failed: ${e.message}")
        emptyList()
    }
}
