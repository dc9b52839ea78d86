// Stub of android.os and android.util for compiling the samples off-Android (see README.md here).
package android.os

class Looper {
    companion object {
        @JvmStatic fun getMainLooper(): Looper = Looper()
    }
}

class Handler(looper: Looper) {
    fun post(r: Runnable): Boolean = true
}
