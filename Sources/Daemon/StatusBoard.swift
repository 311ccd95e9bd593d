import Glibc
import TapCore

/// Publishes what the daemon is doing: the STATUS= line for systemd and /run/tlstap/status.json for
/// `tlstap status`. Called from the pipeline's housekeeping, once a second.
final class StatusBoard: @unchecked Sendable {
    static var runtimeDirectory: String { ProcessInfoLite.environment("RUNTIME_DIRECTORY") ?? "/run/tlstap" }
    static var statusPath: String { DaemonStatus.defaultPath(environment: ProcessInfoLite.environment("RUNTIME_DIRECTORY")) }

    private let config: TapConfig
    private let startedNs: UInt64
    private let registry: InterfaceRegistry
    private let notifier: ServiceNotifier
    private let lock = PThreadMutexCondition()
    private var lastLine = "starting"
    private let statusSender: StatusSender
    var libraries: () -> [DaemonStatus.Library] = { [] }

    init(config: TapConfig, startedNs: UInt64, registry: InterfaceRegistry, notifier: ServiceNotifier) {
        self.config = config
        self.startedNs = startedNs
        self.registry = registry
        self.notifier = notifier
        statusSender = StatusSender(notifier: notifier)
        mkdir(Self.runtimeDirectory, 0o755)
    }

    var line: String { lock.locked { lastLine } }

    func publish(_ stats: PipelineStats, segment: String?, sessions: Int) {
        let (namespaces, interfaces) = registry.snapshot()
        let libraries = libraries()
        let attachedLibraries = libraries.filter { $0.state == "attached" }.count
        let segmentName = segment.map { String($0.split(separator: "/").last ?? "") } ?? "none"
        let line = "\(interfaces.count) interfaces in \(namespaces.count) namespaces, \(attachedLibraries) libssl targets, "
            + "\(sessions) TLS sessions, \(stats.packets) packets, \(stats.drops) dropped, segment \(segmentName)"
        let changed = lock.locked { () -> Bool in
            defer { lastLine = line }
            return lastLine != line
        }
        if changed { statusSender.send(line) }

        let status = DaemonStatus(
            pid: getpid(), version: TLSTap.version, startedAt: rfc3339(wallNs: startedNs),
            updatedAt: rfc3339(wallNs: MonotonicToWall.wallNowNs()), segmentDirectory: config.segmentDirectory,
            currentSegment: segment,
            namespaces: namespaces.map { netns in
                DaemonStatus.Namespace(inode: netns.inode, origin: netns.origin, interfaces: interfaces
                    .filter { $0.key.netnsInode == netns.inode }
                    .map { info in
                        let counters = stats.counters[info.key] ?? InterfaceCounters()
                        return DaemonStatus.Interface(name: info.qualifiedName, description: info.description,
                                                      received: counters.received, droppedByRing: counters.droppedByRing,
                                                      droppedByTapper: counters.droppedByTapper)
                    })
            },
            libraries: libraries, packets: stats.packets, bytes: stats.bytes, drops: stats.drops,
            sessions: sessions, keys: stats.keys, lateKeys: stats.lateKeys,
            duplicates: stats.duplicates)
        do {
            try status.write(to: Self.statusPath)
        } catch {
            // Status is a convenience; capture goes on without it.
        }
    }

    func remove() {
        statusSender.stop()
        unlink(Self.statusPath)
    }
}

/// Sends STATUS= from a thread of its own: sd_notify blocks while the notify socket's queue is full,
/// and the pipeline thread, which publishes the status, must never wait on its reader. Only the latest
/// line matters, so a line not yet sent is replaced by a newer one.
private final class StatusSender: @unchecked Sendable {
    private let notifier: ServiceNotifier
    private let state = PThreadMutexCondition()
    private var pending: String?
    private var stopping = false
    private var thread: DedicatedThread?

    init(notifier: ServiceNotifier) {
        self.notifier = notifier
        guard notifier.isActive else { return }
        thread = try? DedicatedThread(name: "tlstap-status") { [self] in loop() }
    }

    func send(_ line: String) {
        guard thread != nil else { return }
        state.signalAll { pending = line }
    }

    func stop() {
        state.signalAll { stopping = true }
        thread?.join()
        thread = nil
    }

    private func loop() {
        while true {
            state.wait { pending != nil || stopping }
            let (line, stop) = state.locked { () -> (String?, Bool) in
                defer { pending = nil }
                return (pending, stopping)
            }
            if stop { return }
            if let line { notifier.status(line) }
        }
    }
}

/// getenv without Foundation's ProcessInfo.
enum ProcessInfoLite {
    static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        return String(cString: value)
    }
}
