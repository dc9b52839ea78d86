// Stub of android.util.Log for compiling the samples off-Android (see README.md here).
package android.util

object Log {
    @JvmStatic fun e(tag: String, msg: String): Int = 0
    @JvmStatic fun w(tag: String, msg: String): Int = 0
    @JvmStatic fun i(tag: String, msg: String): Int = 0
    @JvmStatic fun d(tag: String, msg: String): Int = 0
    @JvmStatic fun v(tag: String, msg: String): Int = 0
}
