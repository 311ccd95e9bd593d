import Glibc

/// A pthread for blocking work (ring buffer poll, netlink recv) that must stay off Swift's
/// cooperative pool. Owns the thread: `join()` exactly once before dropping it.
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
            box.body()
            return nil
        }, box.toOpaque())
        guard rc == 0 else {
            box.release()
            throw SystemError("start thread \(name)", errno: rc)
        }
        thread = tid
    }

    public func join() {
        if let thread { pthread_join(thread, nil) }
        thread = nil
    }

    deinit {
        assert(thread == nil, "thread \(name) dropped without join()")
    }
}
