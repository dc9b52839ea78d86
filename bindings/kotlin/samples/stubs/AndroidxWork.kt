// Stub of androidx.work (work-runtime-ktx) for compiling the samples off-Android (see README.md here).
package androidx.work

import android.content.Context
import java.util.concurrent.TimeUnit

class WorkerParameters

abstract class ListenableWorker(val applicationContext: Context, params: WorkerParameters) {
    sealed class Result {
        class Success : Result()
        class Retry : Result()
        class Failure : Result()
        companion object {
            @JvmStatic fun success(): Result = Success()
            @JvmStatic fun retry(): Result = Retry()
            @JvmStatic fun failure(): Result = Failure()
        }
    }
}

abstract class Worker(context: Context, params: WorkerParameters) : ListenableWorker(context, params) {
    abstract fun doWork(): Result
}

enum class NetworkType { NOT_REQUIRED, CONNECTED }

enum class ExistingPeriodicWorkPolicy { KEEP, UPDATE, CANCEL_AND_REENQUEUE }

class Constraints {
    class Builder {
        fun setRequiredNetworkType(networkType: NetworkType): Builder = this
        fun build(): Constraints = Constraints()
    }
}

class PeriodicWorkRequest {
    class Builder {
        fun setConstraints(constraints: Constraints): Builder = this
        fun build(): PeriodicWorkRequest = PeriodicWorkRequest()
    }
}

@Suppress("UNUSED_PARAMETER")
inline fun <reified W : ListenableWorker> PeriodicWorkRequestBuilder(
    repeatInterval: Long,
    repeatIntervalTimeUnit: TimeUnit,
): PeriodicWorkRequest.Builder = PeriodicWorkRequest.Builder()

class WorkManager {
    fun enqueueUniquePeriodicWork(
        uniqueWorkName: String,
        existingPeriodicWorkPolicy: ExistingPeriodicWorkPolicy,
        periodicWork: PeriodicWorkRequest,
    ) {}
    companion object {
        @JvmStatic fun getInstance(context: Context): WorkManager = WorkManager()
    }
}
