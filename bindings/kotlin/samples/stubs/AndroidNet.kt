// Stub of android.net for compiling the samples off-Android (see README.md here).
package android.net

class Network

class ConnectivityManager {
    open class NetworkCallback {
        open fun onAvailable(network: Network) {}
        open fun onLost(network: Network) {}
    }
    fun registerDefaultNetworkCallback(networkCallback: NetworkCallback) {}
    fun unregisterNetworkCallback(networkCallback: NetworkCallback) {}
}
