import Glibc
import Logging
import PcapNG
import TapCore

/// Writes packets and TLS secrets into time-rotated, zstd-compressed PcapNG segments.
///
/// Single-threaded: the daemon calls it from one thread. Each segment holds one section: SHB, a head
/// DSB with the secrets of the sessions still live, then IDBs (each the first time one of its packets
/// comes), DSBs and EPBs in call order, and an ISB per interface at the end. Every `flushEvery` the
/// compressed frame in progress is ended and appended to the file, so on disk there are only
/// complete frames (plus, after a crash, maybe a torn tail that `SegmentRepair` cuts off).
///
/// A write that fails (full disk, I/O error) drops that frame: the file is cut back to its last
/// frame, what the frame held is counted as dropped, secrets it held are owed again, and the next
/// frame is tried when it is due. Nothing here throws after `init`.
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
    private var segment: OpenSegment?
    /// Secrets that must reach the file before the next packet (arrived with no segment open, or
    /// lost with a failed frame).
    private var owedSecrets: [KeyLogLine] = []
    /// Packets dropped per interface because their frame could not be written (ISB `isb_osdrop`).
    private var droppedByInterface: [InterfaceKey: UInt64] = [:]
    private var failingSince: UInt64?
    /// Past this much uncompressed input a frame ends early, bounding memory on busy hosts.
    static let maxFrameInputBytes = 16 << 20

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
    }

    /// Writes a packet. Timestamps must not decrease across calls; a packet of a later rotation
    /// period finishes the current segment first.
    public func write(_ packet: CapturedPacket) {
        advance(watermarkWallNs: packet.timestampNs)
        let segment = openSegment(at: packet.timestampNs)
        writeOwedSecrets(into: segment)
        guard let info = interfaces[packet.interface] else {
            logger.warning("packet of an unregistered interface dropped", metadata: ["interface": "\(packet.interface)"])
            return
        }
        let interfaceID = segment.interfaceID(for: info, snapLength: snapLength)
        let data = packet.data.count > Int(snapLength) ? Array(packet.data.prefix(Int(snapLength))) : packet.data
        segment.append(.packet(EnhancedPacket(interfaceID: interfaceID, timestampNs: packet.timestampNs,
                                              originalLength: packet.originalLength, data: data,
                                              direction: packet.direction)),
                       packetOf: packet.interface)
        segment.lastTimeNs = packet.timestampNs
        if segment.pendingInputBytes > Self.maxFrameInputBytes { flush() }
    }

    /// Secrets go into the file (a DSB) before any packet written after this call.
    public func write(secrets: [KeyLogLine]) {
        owedSecrets += secrets
        if let segment { writeOwedSecrets(into: segment) }
    }

    /// Everything older than the watermark has been written: ends a frame when one is due and
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

    /// Ends the frame in progress and appends it to the file now.
    public func flush() {
        guard let segment, segment.hasPendingFrame else { return }
        let frame = segment.endFrame()
        do {
            try segment.file.append(frame: frame.bytes)
            segment.commit()
            statistics.bytesWritten += UInt64(frame.bytes.count)
            statistics.packetsWritten += UInt64(frame.packets)
            if let since = failingSince {
                logger.notice("segment writes resumed", metadata: ["segment": "\(segment.file.finalName)",
                                                                    "failing_for_ms": "\((segment.lastTimeNs &- since) / 1_000_000)"])
                failingSince = nil
            }
        } catch {
            statistics.writeErrors += 1
            statistics.packetsDroppedDiskFull += UInt64(frame.packets)
            for (key, count) in frame.packetsByInterface { droppedByInterface[key, default: 0] += count }
            owedSecrets = frame.secrets + owedSecrets
            segment.rollBack()
            if failingSince == nil {
                failingSince = segment.lastTimeNs
                let kind = error.errno == ENOSPC || error.errno == EDQUOT ? "disk full" : "write failed"
                logger.error("\(kind): dropping packets until the segment directory takes writes again",
                             metadata: ["segment": "\(segment.file.finalName)", "error": "\(error)"])
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

    /// Finishes the current segment (ISBs, last frame, fsync, rename). Call at shutdown.
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
        return segment
    }

    /// The SHB and head DSB, when the section is not started yet (a new segment, or one whose first
    /// frame was lost); then any owed secrets the segment does not hold yet.
    private func writeOwedSecrets(into segment: OpenSegment) {
        if !segment.state.sectionStarted {
            segment.append(.section(SectionHeader(os: Self.operatingSystem, userApplication: "tlstap \(TLSTap.version)")))
            segment.state.sectionStarted = true
            owedSecrets = (liveSecrets?.liveSecrets(nowWallNs: segment.lastTimeNs) ?? []) + owedSecrets
        }
        let fresh = segment.unwritten(owedSecrets)
        owedSecrets = []
        if !fresh.isEmpty {
            segment.append(.secrets(DecryptionSecrets(keyLog: fresh)), secrets: fresh)
        }
    }

    private func finishSegment() {
        guard let segment else { return }
        if segment.state.sectionStarted {
            let now = segment.lastTimeNs
            let counts = counters()
            for (key, id) in segment.state.interfaceIDs.sorted(by: { $0.value < $1.value }) {
                let count = counts[key] ?? InterfaceCounters()
                segment.append(.statistics(InterfaceStatistics(
                    interfaceID: id, timestampNs: now, startNs: segment.periodStartNs, endNs: now,
                    received: count.received, droppedByInterface: count.droppedByRing,
                    droppedByOS: count.droppedByTapper + (droppedByInterface[key] ?? 0))))
            }
            flush()
        }
        let wroteSomething = segment.file.length > 0
        do {
            try segment.file.finish()
            if wroteSomething {
                statistics.segmentsWritten += 1
                logger.info("segment finished", metadata: ["segment": "\(segment.file.finalName)"])
            }
        } catch {
            statistics.writeErrors += 1
            logger.error("could not finish segment; it stays partial for repair at the next start",
                         metadata: ["segment": "\(segment.file.finalName)", "error": "\(error)"])
        }
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
