import Attach
import Discover
import Glibc
import Logging
import RingBuffer
import TapCore

/// Keeps a uprobe on every file that carries OpenSSL: the start-up scan (system libraries, static
/// executables, every running process) before READY, then each process that starts or execs — looked
/// at at once (a static binary is mapped at exec), again after 100 ms (the dynamic loader has mapped
/// its libraries) and after 1 s — and each process the moment its `dlopen` returns (a uretprobe on the
/// host libc's dlopen, bpf/dlopen.bpf.c), plus a full rescan every 30 s as a backstop (a container's
/// own libc is not hooked). A library the system already has is covered before any program that uses
/// it starts, because uprobes attach per file, for every process present and future.
///
/// Runs on its own thread, the only one that touches the key attachments and the dlopen loader
/// (neither is thread-safe); it sleeps in the dlopen ring's poll. Owns both: `stop()` detaches every
/// uprobe and closes them.
final class LibSSLWatcher: @unchecked Sendable {
    private let attachments: TLSKeyAttachments
    private let dlopens: DlopenLoader?
    private let dlopenRing = RingBufferConsumer()
    private let logger: Logger
    private let queue = PThreadMutexCondition()
    private var due: [(atNs: UInt64, pid: Int32)] = []
    private var stopping = false
    private var thread: DedicatedThread?
    private let snapshotLock = PThreadMutexCondition()
    private var snapshot: [LibSSLTarget] = []

    static let rescanDelaysNs: [UInt64] = [0, 100_000_000, 1_000_000_000]
    static let fullRescanIntervalNs: UInt64 = 30_000_000_000

    init(attachments: TLSKeyAttachments, logger: Logger) {
        self.attachments = attachments
        self.logger = logger
        dlopens = Self.hookDlopen(ring: dlopenRing, logger: logger)
    }

    /// The dlopen hook is an accelerator: without it, late loads wait for the periodic rescan.
    private static func hookDlopen(ring: RingBufferConsumer, logger: Logger) -> DlopenLoader? {
        do {
            let hook = try DlopenLoader()
            do {
                try hook.attach(libc: try hostLibC())
                return hook
            } catch {
                hook.close()
                throw error
            }
        } catch {
            logger.warning("libraries loaded late are found by the 30 s rescan only: \(error)")
            return nil
        }
    }

    /// The libc this process maps, which is the host's (tlstap runs in the host's mount namespace).
    private static func hostLibC() throws -> String {
        let maps = try readWholeFile("/proc/self/maps")
        for line in maps.split(separator: "\n") {
            guard let path = line.split(separator: " ", omittingEmptySubsequences: true).last,
                  path.hasPrefix("/"), path.split(separator: "/").last?.hasPrefix("libc.so") == true else { continue }
            return String(path)
        }
        throw SystemError("find the host libc in /proc/self/maps", errno: ENOENT)
    }

    var eventsMapFD: Int32 { attachments.eventsMapFD }

    /// The start-up scan and attach, on the caller's thread (before READY); then the watcher thread.
    func start() throws {
        attachments.attachInitial()
        publish()
        if let dlopens {
            try dlopenRing.add(mapFD: dlopens.loadsMapFD, name: "dlopen returns") { [unowned self] record in
                if let pid = DlopenLoader.pid(of: record) { processLoadedLibrary(pid) }
            }
        }
        thread = try DedicatedThread(name: "tlstap-libssl") { [self] in loop() }
    }

    /// Called from discovery's thread for every process start/exec: cheap, just queues the pid.
    func processStarted(_ pid: Int32) {
        let now = MonotonicToWall.monotonicNowNs()
        queue.signalAll {
            for delay in Self.rescanDelaysNs { due.append((now + delay, pid)) }
        }
    }

    /// On the watcher thread, from the dlopen ring: the library is mapped now.
    private func processLoadedLibrary(_ pid: Int32) {
        let now = MonotonicToWall.monotonicNowNs()
        queue.locked { due.append((now, pid)) }
    }

    /// Targets with their state, for `status`.
    var targets: [LibSSLTarget] { snapshotLock.locked { snapshot } }

    func stop() {
        queue.signalAll { stopping = true }
        thread?.join()
        thread = nil
        dlopenRing.close()
        dlopens?.close()
        attachments.close()
    }

    private func loop() {
        var nextFullRescan = MonotonicToWall.monotonicNowNs() + Self.fullRescanIntervalNs
        while true {
            let (pids, stop) = queue.locked { () -> ([Int32], Bool) in
                let now = MonotonicToWall.monotonicNowNs()
                let ready = due.filter { $0.atNs <= now }.map(\.pid)
                due.removeAll { $0.atNs <= now }
                return (ready, stopping)
            }
            if stop { return }
            if !pids.isEmpty, !attachments.attachNew(inProcesses: Array(Set(pids))).isEmpty {
                publish()
            }
            if MonotonicToWall.monotonicNowNs() >= nextFullRescan {
                if !attachments.attachInitial().isEmpty { publish() }
                nextFullRescan = MonotonicToWall.monotonicNowNs() + Self.fullRescanIntervalNs
            }
            // Sleep in the dlopen ring's poll; short, since a queued rescan is at most 100 ms away.
            if dlopens != nil {
                _ = try? dlopenRing.poll(timeoutMs: pids.isEmpty ? 20 : 5)
            } else {
                usleepMillis(pids.isEmpty ? 20 : 5)
            }
        }
    }

    private func publish() {
        let all = attachments.targets
        snapshotLock.locked { snapshot = all }
    }
}

private func usleepMillis(_ milliseconds: UInt32) {
    _ = Glibc.usleep(milliseconds * 1000)
}
