import Attach
import Discover
import Glibc
import Logging
import Retention
import RingBuffer
import Segments
import TapCore

/// Everything `tlstap run` starts, in start order, and the one place that stops it in reverse:
///
///     segment dir (repair) → capture program → writer → pipeline thread → discovery (attaches the
///     initial inventory synchronously) → TLS targets → READY
///     stop: discovery → TLS uprobes → tc filters → pipeline drains + closes the segment → program
///
/// Ownership: the runtime owns the capture program (bpf_object), the tc attachment table, the
/// netns thread, discovery (its fds and thread), the key source (uprobe links) and the pipeline
/// thread; the pipeline thread owns the ring consumer and the segment writer.
public final class DaemonRuntime: @unchecked Sendable {
    private let logger: Logger
    private var config: TapConfig
    private let capture: CaptureProgram
    private let netnsThread: NetnsThread
    private let table: TCAttachmentTable
    private let registry = InterfaceRegistry()
    private let attacher: Attacher
    private let discovery: Discovery
    private let keys: TLSKeySource?
    private let libssl: LibSSLWatcher?
    private let mailbox = PipelineMailbox()
    private let pipelineThread: DedicatedThread
    private let statusBoard: StatusBoard
    private let retention: RetentionPolicy
    private var state = State.running

    enum State { case running, stopped }

    public init(config: TapConfig, notifier: ServiceNotifier, logger: Logger) throws {
        self.logger = logger
        self.config = config
        let startedNs = MonotonicToWall.wallNowNs()
        LibBPFLog.route(to: logger)
        Self.raiseOpenFileLimit(logger: logger)

        try SegmentDirectory.create(config.segmentDirectory)
        try SegmentRepair(directory: config.segmentDirectory, logger: logger).run()

        capture = try CaptureProgram(configuration: .init(
            snaplen: config.snaplen, ringBytes: UInt32(config.ringBufferSizeBytes)))
        netnsThread = try NetnsThread(name: "tc-attach")
        table = TCAttachmentTable(program: capture, netnsThread: netnsThread, logger: logger)
        attacher = Attacher(table: table, registry: registry, config: config, logger: logger)
        // Without TLS keys tlstap still records every packet; say so loudly and go on.
        do {
            let attachments = try TLSKeyAttachments(logger: logger)
            libssl = LibSSLWatcher(attachments: attachments, logger: logger)
            keys = TLSKeySource(eventsMapFD: attachments.eventsMapFD, maxSessionIdleNs: config.maxSessionIdle.nanoseconds,
                                logger: logger)
        } catch {
            logger.error("TLS secrets unavailable, capturing packets only: \(error)")
            libssl = nil
            keys = nil
        }
        retention = RetentionPolicy(Retention(directory: config.segmentDirectory, maxTotalBytes: config.maxTotalSizeBytes,
                                              maxAgeNs: config.maxAge.nanoseconds, logger: logger))
        statusBoard = StatusBoard(config: config, startedNs: startedNs, registry: registry, notifier: notifier)

        let stats = PipelineStatsBox()
        let writer = try SegmentWriter(
            directory: config.segmentDirectory, rotateEveryNs: config.rotateEvery.nanoseconds,
            flushEveryNs: config.flushEvery.nanoseconds, zstdLevel: config.zstdLevel,
            liveSecrets: keys, counters: { stats.value.counters }, logger: logger)
        let ring = RingBufferConsumer()
        let pacer = PacerBox(WatchdogPacer(notifier: notifier))
        let pipeline = try Pipeline(
            ring: ring, writer: writer, registry: registry, capture: capture, keys: keys, stats: stats, mailbox: mailbox,
            hooks: PipelineHooks(
                watchdog: { pacer.value.loopDidRun() },
                housekeeping: { [statusBoard, retention, keys] snapshot, segment in
                    retention.enforce(nowWallNs: MonotonicToWall.wallNowNs())
                    statusBoard.publish(snapshot, segment: segment, sessions: keys?.liveSessionCount ?? 0)
                }),
            settings: .init(reorderWindowNs: config.reorderWindow.nanoseconds, reorderMaxBytes: 512 << 20,
                            keepDuplicates: config.keepDuplicates),
            logger: logger)
        pipelineThread = try DedicatedThread(name: "tlstap-pipeline") {
            pipeline.run()
            ring.close()
        }
        let attacher = self.attacher
        discovery = Discovery(logger: logger) { event in attacher.handle(event) }
        if let libssl {
            discovery.processObserver = { pid in libssl.processStarted(pid) }
            statusBoard.libraries = { libssl.targets.map(DaemonStatus.Library.init) }
        }
        do {
            try discovery.start()
            try libssl?.start()
        } catch {
            stop()
            throw error
        }
    }

    /// Discovery holds two fds per watched namespace; a host with hundreds of pods would exhaust the
    /// usual soft limit of 1024, so the soft limit is raised to the hard one (systemd's is 524288).
    private static func raiseOpenFileLimit(logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 {
            logger.warning("cannot raise the open file limit: errno \(errno)")
        }
    }

    /// One human line for systemd's STATUS=.
    public var statusLine: String { statusBoard.line }

    public func reload(_ newConfig: TapConfig) {
        let old = config
        let changes = newConfig.changes(from: old)
        for change in changes {
            logger.notice("config changed: \(change.key.rawValue) \(change.old) → \(change.new)")
        }
        for change in changes where !change.key.appliesOnReload {
            logger.warning("\(change.key.rawValue) changes only on restart; still using \(change.old)")
        }
        // What cannot change live keeps its running value, so status and retention stay truthful.
        var newConfig = newConfig
        newConfig.segmentDirectory = old.segmentDirectory
        newConfig.snaplen = old.snaplen
        newConfig.ringBufferSizeBytes = old.ringBufferSizeBytes
        config = newConfig
        attacher.apply(newConfig, current: discovery.snapshot().interfaces)
        mailbox.send(.reconfigure(PipelineChanges(
            reorderWindowNs: newConfig.reorderWindow.nanoseconds,
            rotation: (newConfig.rotateEvery.nanoseconds, newConfig.flushEvery.nanoseconds),
            keepDuplicates: newConfig.keepDuplicates)))
        retention.replace(Retention(directory: newConfig.segmentDirectory, maxTotalBytes: newConfig.maxTotalSizeBytes,
                                    maxAgeNs: newConfig.maxAge.nanoseconds, logger: logger))
    }

    /// Detaches everything, writes out what is held, finishes the segment. Call once.
    public func stop() {
        guard state == .running else { return }
        state = .stopped
        attacher.detachAll()
        discovery.stop()
        libssl?.stop()
        mailbox.send(.stop)
        pipelineThread.join()
        capture.close()
        netnsThread.shutdown()
        statusBoard.remove()
    }
}


/// The retention limits in force; reload replaces them while the pipeline thread enforces them.
private final class RetentionPolicy: @unchecked Sendable {
    private let lock = PThreadMutexCondition()
    private var current: Retention

    init(_ retention: Retention) { current = retention }

    func replace(_ retention: Retention) { lock.locked { current = retention } }

    func enforce(nowWallNs: UInt64) {
        lock.locked { current }.enforce(nowWallNs: nowWallNs)
    }
}

/// The watchdog pacer, mutated only by the pipeline thread.
private final class PacerBox: @unchecked Sendable {
    var value: WatchdogPacer
    init(_ value: WatchdogPacer) { self.value = value }
}
