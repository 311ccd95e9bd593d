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
    private var jobs: [Job] = []
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
            let outcome = Outcome<T>()
            let work = { [homeFD] in
                outcome.result = Result { () throws -> T in
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
            }
            let accepted = mutex.locked { () -> Bool in
                guard !stopping else { return false }
                jobs.append(Job(work: work, finish: { outcome.done.signalAll { outcome.finished = true } }))
                return true
            }
            guard accepted else { throw SystemError("run in netns thread after shutdown", errno: ESHUTDOWN) }
            mutex.signalAll { }
            outcome.done.wait { outcome.finished }
            return try outcome.result!.get()
        }
    }

    /// A queued job: `work` holds the caller's non-escaping closure, so the thread drops it before
    /// `finish` wakes the caller (withoutActuallyEscaping checks that nothing kept it).
    private struct Job {
        var work: () -> Void
        var finish: () -> Void
    }

    private final class Outcome<T>: @unchecked Sendable {
        let done = PThreadMutexCondition()
        var result: Result<T, any Error>?
        var finished = false
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
            var (next, stop) = mutex.locked { () -> ([Job], Bool) in
                defer { jobs.removeAll() }
                return (jobs, stopping)
            }
            while !next.isEmpty {
                let job = next.removeFirst()
                job.work()
                let finish = job.finish
                _ = consume job
                finish()
            }
            if stop { return }
        }
    }
}
