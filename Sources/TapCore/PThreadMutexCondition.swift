import Glibc

/// A pthread mutex with a condition variable, for the few places that block a dedicated thread.
public final class PThreadMutexCondition: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()

    public init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
    }

    deinit {
        pthread_cond_destroy(&condition)
        pthread_mutex_destroy(&mutex)
    }

    public func locked<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }

    /// Blocks until `ready()` (evaluated under the lock) is true.
    public func wait(until ready: () -> Bool) {
        pthread_mutex_lock(&mutex)
        while !ready() { pthread_cond_wait(&condition, &mutex) }
        pthread_mutex_unlock(&mutex)
    }

    public func signalAll(_ change: () -> Void) {
        pthread_mutex_lock(&mutex)
        change()
        pthread_cond_broadcast(&condition)
        pthread_mutex_unlock(&mutex)
    }
}
