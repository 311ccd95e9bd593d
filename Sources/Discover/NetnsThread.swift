import Glibc
import TapCore
import CLibBPF

/// Runs work inside other network namespaces. `setns` changes the namespace of the calling thread
/// only, so the work runs on this object's own dedicated thread, which does nothing else; each job
/// enters the target namespace, runs, and returns to the namespace the thread started in.
///
/// Owns: one fd to its home namespace (closed in `deinit`) and the thread (joined on `shutdown`).
public final class NetnsThread: @unchecked Sendable {
    private let mutex = PThreadMutexCondition()
    private var jobs: [() -> Void] = []
    private var stopping = false
    private var thread: pthread_t?
    private let homeFD: Int32

    public init(name: String) throws(SystemError) {
        homeFD = try syscall("open /proc/self/ns/net") { open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC) }
        let box = Unmanaged.passRetained(self)
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let me = Unmanaged<NetnsThread>.fromOpaque(arg!).takeRetainedValue()
            me.loop()
            return nil
        }, box.toOpaque())
        guard rc == 0 else {
            box.release()
            close(homeFD)
            throw SystemError("start netns thread \(name)", errno: rc)
        }
        thread = tid
    }

    deinit {
        close(homeFD)
    }

    /// Runs `body` inside the namespace at `netnsPath` (or the home namespace if nil) and returns its result.
    public func run<T>(in netnsPath: String?, _ body: () throws -> T) throws -> T {
        try withoutActuallyEscaping(body) { body in
            // The worker may still hold the job closure for a moment after it signalled `done`, so the
            // job reaches `body` through a box that is emptied before `body` must stop existing.
            let box = NetnsJobBody(body)
            defer { box.body = nil }
            let done = PThreadMutexCondition()
            var result: Result<T, any Error>?
            let job = { [homeFD] in
                let outcome = Result { () throws -> T in
                    let body = box.body!
                    guard let netnsPath else { return try body() }
                    let fd = try syscall("open \(netnsPath)") { open(netnsPath, O_RDONLY | O_CLOEXEC) }
                    defer { close(fd) }
                    try syscall("enter netns \(netnsPath)") { tlstap_setns(fd, tlstap_clone_newnet) }
                    defer {
                        // Returning home cannot fail for a namespace we left a moment ago; if it did, this
                        // thread would run the next job in the wrong namespace, so stop rather than go on.
                        if tlstap_setns(homeFD, tlstap_clone_newnet) != 0 {
                            fatalError("cannot return to the home network namespace: errno \(errno)")
                        }
                    }
                    return try body()
                }
                done.signalAll { result = outcome }
            }
            let accepted = mutex.locked { () -> Bool in
                guard !stopping else { return false }
                jobs.append(job)
                return true
            }
            guard accepted else { throw SystemError("run in netns thread after shutdown", errno: ESHUTDOWN) }
            mutex.signalAll { }
            done.wait { result != nil }
            return try result!.get()
        }
    }

    /// Runs the jobs already queued, then stops the thread; call once.
    public func shutdown() {
        mutex.signalAll { stopping = true }
        if let thread { pthread_join(thread, nil) }
        thread = nil
    }

    private func loop() {
        while true {
            mutex.wait { !jobs.isEmpty || stopping }
            let (next, stop) = mutex.locked { () -> ([() -> Void], Bool) in
                defer { jobs.removeAll() }
                return (jobs, stopping)
            }
            for job in next { job() }
            if stop { return }
        }
    }
}

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

/// Holds a job's body so the caller can drop it while the worker still holds the job (see `run`).
private final class NetnsJobBody<T>: @unchecked Sendable {
    var body: (() throws -> T)?
    init(_ body: @escaping () throws -> T) { self.body = body }
}
