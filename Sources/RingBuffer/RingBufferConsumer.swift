import CLibBPF
import Glibc
import TapCore

/// Reads one or more BPF ring buffer maps with libbpf's `ring_buffer`, each map with its own handler.
///
/// Handlers run synchronously inside `poll`/`consume`, on the calling thread, and see each record only
/// for the duration of the call (the bytes live in the ring and are released when the handler returns:
/// copy what you keep). Call from one dedicated thread, never the cooperative pool: `poll` blocks.
///
/// Owns: the libbpf `ring_buffer` (and its epoll fd and mmaps) and one retained context per map;
/// `close()` frees them, once; a consumer dropped without `close()` asserts in debug builds.
public final class RingBufferConsumer {
    public typealias Handler = (UnsafeRawBufferPointer) -> Void

    /// What libbpf's callback gets as its context: the handler of one map.
    private final class Context {
        let handler: Handler
        init(_ handler: @escaping Handler) { self.handler = handler }
    }

    private var ring: OpaquePointer?
    private var contexts: [Unmanaged<Context>] = []

    public init() {}

    deinit {
        assert(ring == nil && contexts.isEmpty, "RingBufferConsumer dropped without close()")
        free()
    }

    /// Adds the ring buffer map `mapFD` (not owned: it must stay open while this consumer reads it).
    public func add(mapFD: Int32, name: String, handler: @escaping Handler) throws(SystemError) {
        let context = Unmanaged.passRetained(Context(handler))
        // A non-capturing closure converts to libbpf's C callback; the handler comes via the context.
        let callback: ring_buffer_sample_fn = { context, data, size in
            let me = Unmanaged<Context>.fromOpaque(context!).takeUnretainedValue()
            me.handler(UnsafeRawBufferPointer(start: data, count: Int(size)))
            return 0
        }
        if let ring {
            let rc = ring_buffer__add(ring, mapFD, callback, context.toOpaque())
            guard rc == 0 else {
                context.release()
                throw SystemError("read ring buffer \(name)", errno: -rc)
            }
        } else {
            guard let created = ring_buffer__new(mapFD, callback, context.toOpaque(), nil) else {
                let code = errno
                context.release()
                throw SystemError("read ring buffer \(name)", errno: code)
            }
            ring = created
        }
        contexts.append(context)
    }

    /// Waits up to `timeoutMs` (-1: forever) for a wakeup, then hands every available record to its
    /// handler — also when the wait timed out, since a producer that batches wakeups (the capture
    /// program's `wakeupBytes`) leaves records in the ring without waking anyone. Returns the number
    /// of records handled.
    @discardableResult
    public func poll(timeoutMs: Int32) throws(SystemError) -> Int {
        guard let ring else { return 0 }
        let rc = ring_buffer__poll(ring, timeoutMs)
        if rc != -EINTR { try libbpfCall("poll the capture ring buffers") { rc } }
        let rest = ring_buffer__consume(ring)
        try libbpfCall("consume the capture ring buffers") { rest }
        return Int(max(rc, 0)) + Int(rest)
    }

    /// Handles every record available now without waiting; returns how many.
    @discardableResult
    public func consume() throws(SystemError) -> Int {
        guard let ring else { return 0 }
        let rc = ring_buffer__consume(ring)
        try libbpfCall("consume the capture ring buffers") { rc }
        return Int(rc)
    }

    /// The epoll fd that becomes readable when a record is ready, for callers that wait elsewhere.
    public var epollFD: Int32? { ring.map { ring_buffer__epoll_fd($0) } }

    /// Frees the ring buffer reader; calling it again does nothing.
    public func close() { free() }

    private func free() {
        if let ring { ring_buffer__free(ring) }
        ring = nil
        for context in contexts { context.release() }
        contexts.removeAll()
    }
}
