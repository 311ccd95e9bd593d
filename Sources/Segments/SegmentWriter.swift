import Glibc
import Logging
import PcapNG
import TapCore

/// Writes packets and TLS secrets into time-rotated, zstd-compressed PcapNG segments.
///
/// Single-threaded: the daemon calls it from one thread. Each segment holds one section: SHB, a head
/// DSB (the secrets of the sessions still live, plus those that arrived during the previous segment),
/// then IDBs (each the first time one of its packets comes), DSBs and EPBs in call order, and an ISB
/// per interface at the end. The segment is one zstd frame; every `flushEvery` what was compressed is
/// flushed as complete zstd blocks and appended, so after a crash everything up to the last flush
/// decodes and `SegmentRepair` turns the file into a finished segment.
///
/// A write that fails (full disk, I/O error) is cut back off the file; that segment is given up
/// (left for repair, which runs again once writes succeed), what the failed write held is counted as
/// dropped, and the next packet starts a fresh segment file whose first flush tests the disk again.
/// Nothing here throws after `init`.
public final class SegmentWriter {
    public struct Statistics: Sendable, Equatable {
        public var segmentsWritten: UInt64 = 0
        public var bytesWritten: UInt64 = 0
        public var packetsWritten: UInt64 = 0
        public var writeErrors: UInt64 = 0
        public var packetsDroppedDiskFull: UInt64 = 0
    }

    public let directory: String
    public private(set) var rotateEveryNs: UInt64
    public private(set) var flushEveryNs: UInt64
    public let snapLength: UInt32
    public private(set) var statistics = Statistics()

    private let zstdLevel: Int32
    private let liveSecrets: (any LiveSecretsProvider)?
    private let counters: () -> [InterfaceKey: InterfaceCounters]
    private let logger: Logger
    private var interfaces: [InterfaceKey: InterfaceInfo] = [:]
    /// Secrets that must reach the file before the next packet: arrived with no segment open.
    private var owedSecrets: [KeyLogLine] = []
    /// Secrets that arrived during the previous segment: repeated in the next head DSB, so it does not
    /// depend on the provider alone.
    private var carriedSecrets: [KeyLogLine] = []
    /// Partial segments given up after a failed write, repaired once writes succeed again.
    private var brokenPartials: [String] = []
    /// Packets dropped per interface because their flush could not be written (ISB `isb_osdrop`).
    private var droppedByInterface: [InterfaceKey: UInt64] = [:]
    private var failingSince: UInt64?
    private var unregisteredWarned: Set<InterfaceKey> = []
    /// The interface of the last packet and its IDB id in the open segment (cleared with the segment):
    /// consecutive packets mostly share an interface, and this spares them two dictionary lookups each.
    private var lastInterface: (key: InterfaceKey, id: UInt32)?
    private var segment: OpenSegment? {
        didSet { lastInterface = nil }
    }
    /// Past this much uncompressed input a flush comes early, bounding memory on busy hosts.
    static let maxPendingInputBytes = 16 << 20

    public init(directory: String, rotateEveryNs: UInt64, flushEveryNs: UInt64, snapLength: UInt32 = 262_144,
                zstdLevel: Int32 = 3, liveSecrets: (any LiveSecretsProvider)?,
                counters: @escaping () -> [InterfaceKey: InterfaceCounters], logger: Logger) throws(SystemError) {
        precondition(rotateEveryNs >= 1_000_000_000 && flushEveryNs > 0, "rotation must be ≥ 1s and flushes > 0")
        try SegmentDirectory.create(directory)
        self.directory = directory
        self.rotateEveryNs = rotateEveryNs
        self.flushEveryNs = flushEveryNs
        self.snapLength = snapLength
        self.zstdLevel = zstdLevel
        self.liveSecrets = liveSecrets
        self.counters = counters
        self.logger = logger
    }

    /// The `.partial` path of the segment being written, nil between segments.
    public var currentSegmentPath: String? { segment?.file.partialPath }

    /// Makes an interface known; its IDB goes into each segment the first time one of its packets does.
    public func register(_ info: InterfaceInfo) {
        interfaces[info.key] = info
        if lastInterface?.key == info.key { lastInterface = nil }
    }

    /// Writes a packet. Timestamps must not decrease across calls; a packet of a later rotation
    /// period finishes the current segment first.
    public func write(_ packet: CapturedPacket) {
        packet.withView { write($0) }
    }

    /// Writes a packet from bytes that live elsewhere (the reorder buffer's arena): the hot path.
    public func write(_ packet: PacketView) {
        advance(watermarkWallNs: packet.timestampNs)
        let segment: OpenSegment
        let interfaceID: UInt32
        if let last = lastInterface, last.key == packet.interface, let open = self.segment {
            segment = open
            interfaceID = last.id
        } else {
            guard let info = interfaces[packet.interface] else {
                if unregisteredWarned.insert(packet.interface).inserted {
                    logger.warning("dropping packets of an interface that was never registered", metadata: ["interface": "\(packet.interface)"])
                }
                return
            }
            segment = openSegment(at: packet.timestampNs)
            interfaceID = segment.interfaceID(for: info, snapLength: snapLength)
            lastInterface = (packet.interface, interfaceID)
        }
        segment.appendPacket(packet, interfaceID: interfaceID, snapLength: snapLength)
        segment.lastTimeNs = packet.timestampNs
        if segment.pendingInputBytes > Self.maxPendingInputBytes { flush() }
    }

    /// Secrets go into the file (a DSB) before any packet written after this call.
    public func write(secrets: [KeyLogLine]) {
        if let segment {
            segment.appendSecrets(secrets, arrived: true)
        } else {
            owedSecrets += secrets
        }
    }

    /// Everything older than the watermark has been written: flushes when one is due and
    /// finishes the segment when the watermark passes its period, with or without packets.
    public func advance(watermarkWallNs: UInt64) {
        guard let segment else { return }
        if watermarkWallNs >= segment.periodEndNs {
            segment.lastTimeNs = max(segment.lastTimeNs, segment.periodEndNs)
            finishSegment()
        } else if watermarkWallNs >= segment.nextFlushNs {
            segment.lastTimeNs = max(segment.lastTimeNs, watermarkWallNs)
            flush()
            segment.nextFlushNs = watermarkWallNs + flushEveryNs
        }
    }

    /// Makes what was compressed so far decodable and appends it to the file now.
    public func flush() {
        guard let segment, segment.hasPendingInput else { return }
        write(segment.takeOutput(endingFrame: false), of: segment)
    }

    /// Appends compressed output; on failure gives the segment up. True when written.
    @discardableResult
    private func write(_ output: PendingOutput, of segment: OpenSegment) -> Bool {
        do {
            try segment.file.append(output.bytes)
        } catch {
            statistics.writeErrors += 1
            statistics.packetsDroppedDiskFull += output.packets
            for (key, count) in zip(segment.interfaceKeysByID(), output.packetsByInterfaceID) where count > 0 {
                droppedByInterface[key, default: 0] += count
            }
            if failingSince == nil {
                failingSince = segment.lastTimeNs
                let kind = error.errno == ENOSPC || error.errno == EDQUOT ? "disk full" : "write failed"
                logger.error("\(kind): dropping packets until the segment directory takes writes again",
                             metadata: ["segment": "\(segment.file.finalName)", "error": "\(error)"])
            }
            giveUp(segment)
            return false
        }
        statistics.bytesWritten += UInt64(output.bytes.count)
        statistics.packetsWritten += output.packets
        if let since = failingSince {
            failingSince = nil
            logger.notice("segment writes resumed", metadata: ["segment": "\(segment.file.finalName)",
                                                                "failing_for_ms": "\((segment.lastTimeNs &- since) / 1_000_000)"])
            repairBrokenPartials()
        }
        return true
    }

    /// After a failed write: the segment's frame cannot go on. What it wrote stays for repair; its
    /// secrets go to the head of the next segment.
    private func giveUp(_ segment: OpenSegment) {
        if let left = segment.file.abandon() { brokenPartials.append(left) }
        carriedSecrets = segment.arrivedSecrets
        self.segment = nil
    }

    private func repairBrokenPartials() {
        let repair = SegmentRepair(directory: directory, logger: logger)
        brokenPartials = brokenPartials.filter { path in
            do {
                try repair.repair(path: path)
                return false
            } catch {
                logger.error("could not repair a segment given up after a failed write; it is repaired at the next start",
                             metadata: ["segment": "\(path)", "error": "\(error)"])
                return true
            }
        }
    }

    /// New rotation and flush periods (on reload). The open segment ends at the next boundary of the
    /// new rotation, or at its own end if that comes first; later segments follow the new rotation.
    public func reconfigure(rotateEveryNs: UInt64, flushEveryNs: UInt64) {
        precondition(rotateEveryNs >= 1_000_000_000 && flushEveryNs > 0, "rotation must be ≥ 1s and flushes > 0")
        self.rotateEveryNs = rotateEveryNs
        self.flushEveryNs = flushEveryNs
        if let segment {
            let nextBoundary = segment.lastTimeNs - segment.lastTimeNs % rotateEveryNs + rotateEveryNs
            segment.periodEndNs = min(segment.periodEndNs, nextBoundary)
            segment.nextFlushNs = min(segment.nextFlushNs, segment.lastTimeNs + flushEveryNs)
        }
    }

    /// Finishes the current segment (ISBs, end of its frame, fsync, rename). Call at shutdown.
    public func close() {
        finishSegment()
    }

    // MARK: - Segments

    private func openSegment(at timeNs: UInt64) -> OpenSegment {
        if let segment { return segment }
        let periodStart = timeNs - timeNs % rotateEveryNs
        let name = SegmentDirectory.freeFinishedName(in: directory, startNs: periodStart, firstWriteNs: timeNs)
        let segment = OpenSegment(file: SegmentFile(directory: directory, finalName: name), periodStartNs: periodStart,
                                  periodEndNs: periodStart + rotateEveryNs, zstdLevel: zstdLevel)
        segment.nextFlushNs = timeNs + flushEveryNs
        segment.lastTimeNs = timeNs
        self.segment = segment
        segment.append(.section(SectionHeader(os: Self.operatingSystem, userApplication: "tlstap \(TLSTap.version)")))
        let live = liveSecrets?.liveSecrets(nowWallNs: timeNs) ?? []
        segment.appendSecrets(live + carriedSecrets, arrived: false)
        segment.appendSecrets(owedSecrets, arrived: true)
        carriedSecrets = []
        owedSecrets = []
        return segment
    }

    private func finishSegment() {
        guard let segment else { return }
        let now = segment.lastTimeNs
        let counts = counters()
        for (key, id) in segment.interfaceIDs.sorted(by: { $0.value < $1.value }) {
            let count = counts[key] ?? InterfaceCounters()
            segment.append(.statistics(InterfaceStatistics(
                interfaceID: id, timestampNs: now, startNs: segment.periodStartNs, endNs: now,
                received: count.received, droppedByInterface: count.droppedByRing,
                droppedByOS: count.droppedByTapper + (droppedByInterface[key] ?? 0))))
        }
        guard write(segment.takeOutput(endingFrame: true), of: segment) else { return }
        do {
            try segment.file.finish()
            statistics.segmentsWritten += 1
            logger.info("segment finished", metadata: ["segment": "\(segment.file.finalName)"])
        } catch {
            statistics.writeErrors += 1
            logger.error("could not finish segment; it stays partial for repair at the next start",
                         metadata: ["segment": "\(segment.file.finalName)", "error": "\(error)"])
        }
        carriedSecrets = segment.arrivedSecrets
        self.segment = nil
    }

    static let operatingSystem: String = {
        var names = utsname()
        uname(&names)
        func field<T>(_ value: T) -> String {
            withUnsafeBytes(of: value) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        return "\(field(names.sysname)) \(field(names.release))"
    }()
}
