import Glibc
import Logging
import TapCore

/// Live inventory of every network namespace and every interface in each.
///
/// How it learns about changes (no polling as the main mechanism):
/// - the proc connector (fork/exec/exit of every process): a process that enters a new namespace is
///   seen at fork (`clone(CLONE_NEWNET)`) or at exec (`unshare -n cmd`, `ip netns exec`, runc);
///   the exit of a namespace's last known process triggers a removal check;
/// - `/proc/self/mountinfo` polled with `EPOLLPRI` (the kernel signals every mount table change):
///   nsfs bind mounts appearing and disappearing (`ip netns add/del`, Docker, CNI), whatever
///   directory they live in — this replaces inotify on /run/netns, which cannot see a bind mount;
/// - inotify on the cgroup tree (`CgroupWatch`): a runtime writing a pid into a new container's
///   cgroup makes discovery check that cgroup's processes — a second source beside the connector;
/// - one rtnetlink socket per namespace (RTM_NEWLINK/RTM_DELLINK), opened inside it;
/// - a full rescan every `rescanInterval`, only as a backstop for what the streams cannot say
///   (a process that `setns` without exec, proc connector overflow).
///
/// Lifetime policy: discovery holds one nsfs fd and one netlink socket per namespace, and both keep
/// the namespace alive. It therefore holds them only while something *outside* tlstap refers to the
/// namespace: a process inside it or an nsfs mount in our mount table. When the last of those goes
/// (exit event, unmount, or rescan), it reports the interfaces and the namespace removed and closes
/// both, so the kernel can destroy it. A namespace kept alive only by another program's open fd or
/// socket, or only by a thread (not a process) inside it, is not seen.
///
/// Identity: the kernel recycles a freed namespace's inode number at once (the 50-cycle test sees
/// two numbers alternate), so an `InterfaceKey` is unique only while its namespace is reported.
/// Events keep that safe — a namespace's interfaces and the namespace are reported removed before
/// anything can reuse its number — and the cookie (`NetnsInfo.cookie`) is never reused.
///
/// Events go to `handler`, always on the discovery thread; the initial inventory is complete when
/// `start()` returns. `NetnsInfo.path` is valid from
/// `namespaceAdded` until the handler for `namespaceRemoved` returns; the handler should do its work
/// (attach/detach) synchronously and quickly, since it delays the events behind it, and must not
/// call `stop()` (that joins the thread the handler runs on). `Discovery.stream` offers the same
/// events as an `AsyncStream` for consumers that do not need that guarantee.
public final class Discovery: @unchecked Sendable {
    public typealias Handler = @Sendable (DiscoveryEvent) -> Void

    enum State { case idle, running, stopped }

    let logger: Logger
    let rescanInterval: Duration
    let handler: Handler
    /// Told of every process that starts or execs (pid), on the discovery thread; set before `start()`.
    /// The TLS target watcher uses it to look at new processes' libraries.
    public var processObserver: (@Sendable (Int32) -> Void)?
    /// The inode of the host namespace (pid 1's); it is never reported removed.
    let hostInode: UInt64

    // Owned resources, created in `start()`, released in `stop()`.
    var home: HomeNamespace?
    var loop: EventLoop?
    var procConnector: ProcConnector?
    var mountinfo: OwnedFD?
    var cgroups: CgroupWatch?
    private var thread: DedicatedThread?

    /// Discovery state; touched only by the discovery thread (and by `start`/`stop` while it is not running).
    var namespaces: [UInt64: WatchedNamespace] = [:]
    var pidNamespace: [Int32: UInt64] = [:]
    var mountedInodes: [UInt64: [String]] = [:]

    private let lock = PThreadMutexCondition()
    private var state = State.idle
    private var stopRequested = false
    private let initialDone = PThreadMutexCondition()
    private var initialResult: Result<Void, any Error>?
    private var published: (namespaces: [UInt64: NetnsInfo], interfaces: [InterfaceKey: InterfaceInfo]) = ([:], [:])

    static let procToken: UInt64 = 1
    static let mountToken: UInt64 = 2
    static let cgroupToken: UInt64 = 3

    /// Called once after `stop()` has delivered its last event (the stream form uses it to finish).
    private let onStop: (@Sendable () -> Void)?

    public convenience init(logger: Logger, rescanInterval: Duration = .seconds(5), handler: @escaping Handler) {
        self.init(logger: logger, rescanInterval: rescanInterval, handler: handler, onStop: nil)
    }

    init(logger: Logger, rescanInterval: Duration, handler: @escaping Handler, onStop: (@Sendable () -> Void)?) {
        self.logger = logger
        self.rescanInterval = rescanInterval
        self.handler = handler
        self.onStop = onStop
        hostInode = NamespaceScan.netnsInode("/proc/1/ns/net") ?? NamespaceScan.netnsInode("/proc/self/ns/net") ?? 0
    }

    deinit {
        assert(state != .running, "Discovery dropped while running: call stop()")
    }

    /// Subscribes to every event source, takes the initial inventory (delivered through the handler
    /// before this returns), then starts the discovery thread. Call once.
    public func start() throws {
        try lock.locked { () throws -> Void in
            guard state == .idle else { throw SystemError("start discovery twice", errno: EALREADY) }
            state = .running
        }
        do {
            home = try HomeNamespace()
            let loop = try EventLoop()
            self.loop = loop
            // Subscribe before scanning so nothing that happens during the scan is missed. The mount
            // table is required; the process sources only make discovery faster than the rescan, so
            // where they are refused (no CAP_NET_ADMIN in the initial user namespace) it goes on without.
            let mounts = try OwnedFD.open("/proc/self/mountinfo", what: "mountinfo")
            mountinfo = mounts
            try loop.add(mounts.raw, token: Self.mountToken, priority: true)
            do {
                let connector = try ProcConnector()
                procConnector = connector
                try loop.add(connector.socket.raw, token: Self.procToken)
            } catch {
                logger.warning("no proc connector; new namespaces of processes are found by cgroup events and rescans only",
                               metadata: ["error": "\(error)"])
            }
            do {
                let cgroupWatch = try CgroupWatch(mountinfo: NamespaceScan.readAll(mounts.raw), logger: logger)
                cgroups = cgroupWatch
                try loop.add(cgroupWatch.inotify.raw, token: Self.cgroupToken)
            } catch {
                logger.warning("no cgroup watch", metadata: ["error": "\(error)"])
            }

            try startThread()
            // The thread takes the initial inventory first; wait for it so the caller can attach
            // everything before it says ready.
            initialDone.wait { initialResult != nil }
            try initialDone.locked { try initialResult!.get() }
        } catch {
            if let thread {
                lock.locked { stopRequested = true }
                loop?.wake()
                thread.join()
                self.thread = nil
            }
            releaseResources()
            lock.locked { state = .stopped }
            throw error
        }
    }

    /// Stops the thread and closes every descriptor; no events follow. Safe to call more than once.
    public func stop() {
        let wasRunning = lock.locked { () -> Bool in
            defer { state = .stopped }
            stopRequested = true
            return state == .running
        }
        guard wasRunning else { return }
        loop?.wake()
        thread?.join()
        thread = nil
        releaseResources()
        onStop?()
    }

    /// What is being watched right now.
    public func snapshot() -> (namespaces: [NetnsInfo], interfaces: [InterfaceInfo]) {
        lock.locked {
            (published.namespaces.values.sorted { $0.inode < $1.inode },
             published.interfaces.values.sorted { ($0.key.netnsInode, $0.key.ifindex) < ($1.key.netnsInode, $1.key.ifindex) })
        }
    }

    /// Records the event in the snapshot, then hands it to the handler.
    func emit(_ event: DiscoveryEvent) {
        lock.locked {
            switch event {
            case .namespaceAdded(let info): published.namespaces[info.inode] = info
            case .namespaceRemoved(let inode): published.namespaces[inode] = nil
            case .interfaceAdded(let info, _): published.interfaces[info.key] = info
            case .interfaceRemoved(let key): published.interfaces[key] = nil
            }
        }
        handler(event)
    }

    private func startThread() throws {
        thread = try DedicatedThread(name: "tlstap-discover") { [self] in run() }
    }

    /// The discovery thread: waits on every source, handles what is ready, rescans when due.
    private func run() {
        let outcome = Result { try initialScan() }
        initialDone.signalAll { initialResult = outcome }
        guard case .success = outcome, let loop else { return }
        let clock = ContinuousClock()
        var nextRescan = clock.now + rescanInterval
        while true {
            let remaining = nextRescan - clock.now
            let timeoutMS = max(0, Int32(remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000))
            let ready = loop.wait(timeoutMS: timeoutMS)
            if lock.locked({ stopRequested }) { return }
            for token in ready {
                switch token {
                case EventLoop.wakeToken: loop.drainWakeups()
                case Self.procToken: handleProcessEvents()
                case Self.mountToken: handleMountsChanged()
                case Self.cgroupToken: for pid in cgroups?.drain() ?? [] { processStarted(pid) }
                default: handleLinks(inode: token)
                }
            }
            if clock.now >= nextRescan {
                rescan()
                nextRescan = clock.now + rescanInterval
            }
        }
    }

    private func releaseResources() {
        for namespace in namespaces.values {
            loop?.remove(namespace.route.socket.raw)
            namespace.close()
        }
        namespaces.removeAll()
        pidNamespace.removeAll()
        procConnector?.close()
        procConnector = nil
        mountinfo?.close()
        mountinfo = nil
        cgroups?.close()
        cgroups = nil
        loop?.close()
        loop = nil
        home?.close()
        home = nil
        lock.locked { published = ([:], [:]) }
    }
}

extension Discovery {
    /// Discovery whose events arrive as an unbounded `AsyncStream`, finished by `stop()`. Call
    /// `start()` on the returned object; the initial inventory is buffered in the stream when it returns.
    public static func stream(logger: Logger, rescanInterval: Duration = .seconds(5)) -> (Discovery, AsyncStream<DiscoveryEvent>) {
        let (stream, continuation) = AsyncStream.makeStream(of: DiscoveryEvent.self, bufferingPolicy: .unbounded)
        let discovery = Discovery(logger: logger, rescanInterval: rescanInterval,
                                  handler: { continuation.yield($0) }, onStop: { continuation.finish() })
        return (discovery, stream)
    }
}
