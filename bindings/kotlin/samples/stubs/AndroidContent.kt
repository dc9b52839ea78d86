// Stub of android.content for compiling the samples off-Android (see README.md here).
package android.content

import java.io.File

open class Context {
    open val applicationContext: Context get() = this
    open val filesDir: File get() = File(".")
    open val cacheDir: File get() = File(".")
    open fun <T> getSystemService(serviceClass: Class<T>): T = throw UnsupportedOperationException("stub")
}
