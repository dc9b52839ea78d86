// Stub of androidx.lifecycle (lifecycle-process) for compiling the samples off-Android (see README.md here).
package androidx.lifecycle

interface LifecycleObserver

interface LifecycleOwner {
    val lifecycle: Lifecycle
}

abstract class Lifecycle {
    abstract fun addObserver(observer: LifecycleObserver)
}

interface DefaultLifecycleObserver : LifecycleObserver {
    fun onStart(owner: LifecycleOwner) {}
    fun onStop(owner: LifecycleOwner) {}
}

class ProcessLifecycleOwner private constructor() : LifecycleOwner {
    override val lifecycle: Lifecycle = object : Lifecycle() {
        override fun addObserver(observer: LifecycleObserver) {}
    }
    companion object {
        @JvmStatic fun get(): LifecycleOwner = ProcessLifecycleOwner()
    }
}
