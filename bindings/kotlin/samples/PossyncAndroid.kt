// How an Android POS app wires possync: one engine per process, triggers from WorkManager (interval),
// ConnectivityManager (online), the process lifecycle (focus) and a "Sync now" button, and the status
// for the cashier. Compiled in CI against the generated bindings (with stubs of the Android classes);
// see bindings/kotlin/README.md.
package app.possync.samples

import android.content.Context
import android.net.ConnectivityManager
import android.net.Network
import android.os.Handler
import android.os.Looper
import android.util.Log
import androidx.lifecycle.DefaultLifecycleObserver
import androidx.lifecycle.LifecycleOwner
import androidx.lifecycle.ProcessLifecycleOwner
import androidx.work.Constraints
import androidx.work.ExistingPeriodicWorkPolicy
import androidx.work.NetworkType
import androidx.work.PeriodicWorkRequestBuilder
import androidx.work.WorkManager
import androidx.work.Worker
import androidx.work.WorkerParameters
import app.possync.DrainReason
import app.possync.DrainReport
import app.possync.LogLevel
import app.possync.LogRecord
import app.possync.LogSink
import app.possync.PossyncConfig
import app.possync.PossyncEngine
import app.possync.SaleException
import app.possync.SalePayload
import app.possync.StatusListener
import app.possync.StatusSnapshot
import app.possync.SyncException
import app.possync.SyncStatus
import app.possync.installLogSink
import java.io.File
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit

/** Forwards possync's logs to Logcat. Called on possync's threads: only formats and hands off. */
object LogcatSink : LogSink {
    override fun log(record: LogRecord) {
        val line = record.message + record.fields.entries.joinToString("") { " ${it.key}=${it.value}" }
        when (record.level) {
            LogLevel.ERROR -> Log.e(record.target, line)
            LogLevel.WARN -> Log.w(record.target, line)
            LogLevel.INFO -> Log.i(record.target, line)
            LogLevel.DEBUG -> Log.d(record.target, line)
            LogLevel.TRACE -> Log.v(record.target, line)
        }
    }
}

/** What the cashier's banner shows; [render] is called on the main thread. */
fun interface SyncBanner {
    fun render(text: String, needsPerson: Boolean)
}

/** The text of the banner for a status; `unsent` from the last `Idle` (or `engine.counts().unsent`). */
fun bannerText(status: SyncStatus, unsent: Long): Pair<String, Boolean> = when (status) {
    is SyncStatus.Idle -> (if (status.unsent == 0L) "All sales sent" else "${status.unsent} sales waiting to be sent") to false
    is SyncStatus.Draining -> "Sending sales ${status.done} of ${status.total}…" to false
    is SyncStatus.Offline -> "Offline: $unsent sales kept on this till, sent when the server is back" to false
    is SyncStatus.AuthFailed -> "This till is not authorised by the server: call your administrator" to true
    is SyncStatus.TlsFailed -> "The server's certificate is not trusted: call your administrator" to true
    is SyncStatus.NeedsAttention ->
        "${status.conflicts + status.invalid} sales were refused: open Sync issues" to true
}

/** Status callbacks come on possync's `possync-status` thread: hop to the main thread for the UI. */
class BannerListener(private val banner: SyncBanner) : StatusListener {
    private val main = Handler(Looper.getMainLooper())
    @Volatile var lastReport: DrainReport? = null

    override fun onStatus(status: SyncStatus) {
        val unsent = lastReport?.remainingPending ?: 0L
        val (text, needsPerson) = bannerText(status, unsent)
        main.post { banner.render(text, needsPerson) }
    }

    override fun onReport(report: DrainReport) {
        lastReport = report
    }
}

/** The one engine of the process. Open it in `Application.onCreate()`; it lives as long as the process. */
object TillSync {
    @Volatile private var engine: PossyncEngine? = null
    val banner = BannerListener { text, needsPerson -> println((if (needsPerson) "! " else "") + text) }

    /** The outbox lives in the app's private files (backed up with the app's data, never on external storage). */
    fun outboxFile(context: Context): File = File(context.filesDir, "possync/outbox.db")

    @Synchronized
    fun get(context: Context): PossyncEngine = engine ?: run {
        installLogSink(LogcatSink, LogLevel.INFO)
        val file = outboxFile(context.applicationContext).also { it.parentFile?.mkdirs() }
        val config = PossyncConfig(
            outboxPath = file.path,
            serverUrl = "https://pos.example.com", // from the till's setup screen
            deviceId = "till-1",
        )
        // The token is a separate argument (never in the config record's toString()): from
        // `possync-server token create`, kept in EncryptedSharedPreferences. Rotate it with setToken().
        // Requests go through the platform's HTTP stack (PlatformHttpClient.kt), so the app's network
        // security config (the shop's CA, <pin-set>) applies; the slim library has no client of its own.
        PossyncEngine.withHttpClient(config, "pst_…", PlatformHttpClient(), banner).also { engine = it }
    }
}

/** Records a finished sale. Fast (one SQLite insert): fine on the main thread after the receipt prints. */
fun recordSale(context: Context, sale: SalePayload): String? = try {
    val engine = TillSync.get(context)
    engine.enqueue(sale) // the engine sends it by itself (a SALE_RECORDED run); no trigger needed
} catch (e: SaleException.Invalid) {
    Log.e("possync", "sale ${sale.header.receiptNumber} refused (${e.code}): ${e.reason}") // an app bug: fix the sale builder
    null
} catch (e: SaleException) {
    Log.e("possync", "sale not stored: ${e.message}") // storage full or busy: tell the cashier, keep the paper receipt
    null
}

/** Interval: WorkManager runs this at most every 15 min, also when the app is in the background. */
class PossyncSyncWorker(context: Context, params: WorkerParameters) : Worker(context, params) {
    override fun doWork(): Result = try {
        val report = TillSync.get(applicationContext).syncNow(60_000L)
        if (report.remainingPending == 0L) Result.success() else Result.retry()
    } catch (e: SyncException) {
        Result.retry()
    }
}

/** Schedule once (e.g. in `Application.onCreate()`); unique work, so calling it again changes nothing. */
fun schedulePeriodicSync(context: Context) {
    val request = PeriodicWorkRequestBuilder<PossyncSyncWorker>(15, TimeUnit.MINUTES)
        .setConstraints(Constraints.Builder().setRequiredNetworkType(NetworkType.CONNECTED).build())
        .build()
    WorkManager.getInstance(context)
        .enqueueUniquePeriodicWork("possync-sync", ExistingPeriodicWorkPolicy.KEEP, request)
}

/** Online: the network came back. `ONLINE` skips the engine's offline backoff. */
fun watchConnectivity(context: Context, engine: PossyncEngine): ConnectivityManager.NetworkCallback {
    val callback = object : ConnectivityManager.NetworkCallback() {
        override fun onAvailable(network: Network) = engine.trigger(DrainReason.ONLINE)
    }
    context.getSystemService(ConnectivityManager::class.java).registerDefaultNetworkCallback(callback)
    return callback
}

/** Focus: the app came to the foreground. */
fun watchForeground(engine: PossyncEngine) {
    ProcessLifecycleOwner.get().lifecycle.addObserver(object : DefaultLifecycleObserver {
        override fun onStart(owner: LifecycleOwner) = engine.trigger(DrainReason.FOCUS)
    })
}

/** The "Sync now" button: `syncNow` blocks, so run it off the main thread and post the result back. */
class SyncNowButton(private val engine: PossyncEngine, private val onDone: (String) -> Unit) {
    private val worker = Executors.newSingleThreadExecutor()
    private val main = Handler(Looper.getMainLooper())

    fun onClick() {
        worker.execute {
            val text = try {
                val r = engine.syncNow(30_000L)
                "Sent ${r.sent + r.duplicate}, ${r.remainingPending} waiting" + (r.lastError?.let { " ($it)" } ?: "")
            } catch (e: SyncException.Timeout) {
                "Still sending in the background…"
            } catch (e: SyncException) {
                "Sync failed: ${e.message}"
            }
            main.post { onDone(text) }
        }
    }
}

/** The sync screen for a supervisor: counts, unsent money per currency, refused sales. */
fun syncScreen(snapshot: StatusSnapshot, engine: PossyncEngine): List<String> =
    listOf(bannerText(snapshot.status, snapshot.counts.unsent).first) +
        snapshot.unsentByCurrency.map { "${it.count} unsent ${it.currency} sales, ${it.totalMinor} minor units" } +
        (snapshot.oldestUnsentAgeMs?.let { listOf("oldest unsent: ${it / 60_000} min") } ?: emptyList()) +
        engine.attentionItems().map { "refused ${it.clientTxId}: ${it.code} ${it.message}" }
