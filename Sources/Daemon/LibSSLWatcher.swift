import Attach
import Discover
import Glibc
import Logging
import TapCore

/// Keeps a uprobe on every file that carries OpenSSL: the start-up scan (system libraries, static
/// executables, every running process) before READY, then each process that starts or execs — looked
/// at at once (a static binary is mapped at exec), again after 100 ms (the dynamic loader has mapped
/// its libraries) and after 1 s (early dlopen) — plus a full rescan every 30 s as a backstop for
/// later dlopens. A library the system already has is covered before any program that uses it starts,
/// because uprobes attach per file, for every process present and future.
///
/// Runs on its own thread, the only one that touches the scanner and the loader (neither is
/// thread-safe). Owns the loader: `stop()` detaches every uprobe and closes it.
final class LibSSLWatcher: @unchecked Sendable {
    private let loader: TLSKeysLoader
    private let scanner: LibSSLScanner
    private let logger: Logger
    private let queue = PThreadMutexCondition()
    private var due: [(atNs: UInt64, pid: Int32)] = []
    private var stopping = false
    private var thread: DedicatedThread?
    private let snapshotLock = PThreadMutexCondition()
    private var snapshot: [LibSSLTarget] = []

    static let rescanDelaysNs: [UInt64] = [0, 100_000_000, 1_000_000_000]
    static let fullRescanIntervalNs: UInt64 = 30_000_000_000

    init(loader: TLSKeysLoader, logger: Logger) {
        self.loader = loader
        self.logger = logger
        scanner = LibSSLScanner(logger: logger)
    }

    var eventsMapFD: Int32 { loader.eventsMapFD }

    /// The start-up scan and attach, on the caller's thread (before READY); then the watcher thread.
    func start() throws {
        attach(scanner.initialScan())
        publish()
        thread = try DedicatedThread(name: "tlstap-libssl") { [self] in loop() }
    }

    /// Called from discovery's thread for every process start/exec: cheap, just queues the pid.
    func processStarted(_ pid: Int32) {
        let now = MonotonicToWall.monotonicNowNs()
        queue.signalAll {
            for delay in Self.rescanDelaysNs { due.append((now + delay, pid)) }
        }
    }

    /// Targets with their state, for `status`.
    var targets: [LibSSLTarget] { snapshotLock.locked { snapshot } }

    func stop() {
        queue.signalAll { stopping = true }
        thread?.join()
        thread = nil
        loader.close()
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
            if !pids.isEmpty {
                attach(scanner.rescan(pids: Array(Set(pids))))
            }
            if MonotonicToWall.monotonicNowNs() >= nextFullRescan {
                attach(scanner.initialScan())
                nextFullRescan = MonotonicToWall.monotonicNowNs() + Self.fullRescanIntervalNs
            }
            // Short sleeps: the next due rescan is at most 100 ms away when anything is queued.
            usleepMillis(pids.isEmpty ? 20 : 5)
        }
    }

    private func attach(_ found: [LibSSLTarget]) {
        guard !found.isEmpty else { return }
        for target in found {
            let result = target.hook == nil ? target : loader.attach(target)
            scanner.update(result)
        }
        publish()
    }

    private func publish() {
        let all = scanner.allTargets
        snapshotLock.locked { snapshot = all }
    }
}

private func usleepMillis(_ milliseconds: UInt32) {
    _ = Glibc.usleep(milliseconds * 1000)
}
