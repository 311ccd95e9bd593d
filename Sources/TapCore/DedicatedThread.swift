import Glibc

/// A pthread for blocking work (ring buffer poll, netlink recv) that must stay off Swift's
/// cooperative pool, named so that `top -H`, `ps -T` and perf show what it is (without a name it
/// inherits its creator's, e.g. a Dispatch worker's "…default-qos"). Owns the thread: `join()`
/// exactly once before dropping it.
public final class DedicatedThread: @unchecked Sendable {
    private var thread: pthread_t?
    private let name: String

    private final class Box {
        let body: () -> Void
        let name: String
        init(_ body: @escaping () -> Void, name: String) { self.body = body; self.name = name }
    }

    public init(name: String, _ body: @escaping () -> Void) throws(SystemError) {
        self.name = name
        let box = Unmanaged.passRetained(Box(body, name: name))
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            DedicatedThread.nameCallingThread(box.name)
            box.body()
            return nil
        }, box.toOpaque())
        guard rc == 0 else {
            box.release()
            throw SystemError("start thread \(name)", errno: rc)
        }
        thread = tid
    }

    /// Names the calling thread through /proc/thread-self/comm (pthread_setname_np and prctl are not in
    /// Swift's Glibc module). The kernel keeps 15 bytes; a thread left unnamed only looks anonymous.
    static func nameCallingThread(_ name: String) {
        guard let fd = try? syscall("open /proc/thread-self/comm", { open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC) }) else { return }
        defer { close(fd) }
        let bytes = Array(name.utf8.prefix(15))
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    public func join() {
        if let thread { pthread_join(thread, nil) }
        thread = nil
    }

    deinit {
        assert(thread == nil, "thread \(name) dropped without join()")
    }
}
