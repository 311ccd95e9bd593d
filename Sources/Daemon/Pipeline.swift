import Glibc
import Attach
import Logging
import Reorder
import RingBuffer
import Segments
import TapCore

/// The one thread that moves packets and keys from the kernel to disk:
///
///     ring_buffer__poll ─┬─ capture record (one ring per CPU) → resolve interface → count → ReorderBuffer (held `window`)
///                        └─ key record     → SessionTable → SegmentWriter (a DSB, at once)
///     then: release packets older than now − window → SegmentWriter → advance(watermark)
///
/// Keys skip the reorder buffer on purpose: a TLS 1.3 client learns its handshake secrets a round
/// trip after the ServerHello it needs them for, so the packets wait and the keys do not.
/// This thread owns the ring consumer, the reorder buffer, the segment writer and the counters; other
/// threads talk to it only through `PipelineMailbox`. It also pings the watchdog, so a stuck pipeline
/// trips it.
final class Pipeline: @unchecked Sendable {
    struct Settings {
        var reorderWindowNs: UInt64
        var reorderMaxBytes: Int
        /// Record every copy of a packet (veth ends, bridge ports) instead of the first only.
        var keepDuplicates: Bool
    }

    private let ring: RingBufferConsumer
    private let writer: SegmentWriter
    private let registry: InterfaceRegistry
    private let capture: CaptureProgram
    private let keys: TLSKeySource?
    private let mailbox: PipelineMailbox
    private let hooks: PipelineHooks
    private let logger: Logger
    private var settings: Settings
    private let reorder: ReorderBuffer
    private var copies = CopyFilter()
    private var clock = MonotonicToWall()
    /// Shared with the segment writer's counter callback, which runs on this same thread.
    private let statsBox: PipelineStatsBox
    private var stats: PipelineStats {
        get { statsBox.value }
        _modify { yield &statsBox.value }
    }
    /// (cookie, ifindex) → interface, refreshed when the registry's generation moves.
    private var resolved: [CaptureInterfaceID: InterfaceKey] = [:]
    /// Where the IP header starts in each interface's packets, for the copy filter.
    private var networkOffsets: [InterfaceKey: Int] = [:]
    private var resolvedGeneration: UInt64 = .max
    /// The last record's interface and the packets received on it not yet added to `stats`: records
    /// come in runs from one interface, so most skip the dictionaries (folded in after each poll).
    private var lastReceived: (id: CaptureInterfaceID, key: InterfaceKey, uncounted: UInt64)?
    /// The last written packet's interface and its network offset, for the same reason.
    private var lastWritten: (key: InterfaceKey, networkOffset: Int)?
    /// Capture record bytes read by the last poll (decides whether releasing yields the CPU).
    private var bytesSinceLastPoll = 0
    private var lateCounted: [InterfaceKey: UInt64] = [:]

    init(ring: RingBufferConsumer, writer: SegmentWriter, registry: InterfaceRegistry, capture: CaptureProgram,
         keys: TLSKeySource?, stats: PipelineStatsBox, mailbox: PipelineMailbox, hooks: PipelineHooks,
         settings: Settings, logger: Logger) throws {
        self.statsBox = stats
        self.ring = ring
        self.writer = writer
        self.registry = registry
        self.capture = capture
        self.keys = keys
        self.mailbox = mailbox
        self.hooks = hooks
        self.settings = settings
        self.logger = logger
        reorder = ReorderBuffer(windowNs: settings.reorderWindowNs, maxBytes: settings.reorderMaxBytes,
                                streams: capture.eventsMapFDs.count)
        for (cpu, fd) in capture.eventsMapFDs.enumerated() {
            try ring.add(mapFD: fd, name: "capture events of CPU \(cpu)") { [unowned self] raw in
                self.receivePacket(raw, stream: cpu)
            }
        }
        if let keys {
            try ring.add(mapFD: keys.eventsMapFD, name: "tls key events") { [unowned self] raw in
                self.receiveKey(raw)
            }
        }
    }

    /// Runs until the mailbox says stop; then writes out everything held and closes the segment.
    func run() {
        var nextHousekeeping: UInt64 = 0
        while true {
            let message = mailbox.take()
            if case .some(.reconfigure(let changes)) = message { apply(changes) }
            if case .some(.stop) = message { break }
            refreshResolvedInterfaces()
            bytesSinceLastPoll = 0
            do {
                _ = try ring.poll(timeoutMs: 50)
            } catch {
                logger.error("ring buffer poll failed: \(error)")
            }
            countReceived()
            let now = MonotonicToWall.wallNowNs()
            release(upTo: now)
            hooks.watchdog()
            let monotonic = MonotonicToWall.monotonicNowNs()
            if monotonic >= nextHousekeeping {
                housekeeping(nowWallNs: now)
                nextHousekeeping = monotonic + 1_000_000_000
            }
        }
        drain()
    }

    // MARK: per record (hot path)

    private func receivePacket(_ raw: UnsafeRawBufferPointer, stream: Int) {
        bytesSinceLastPoll += raw.count
        guard let record = CaptureEventDecoder.decode(raw) else {
            stats.malformedRecords += 1
            return
        }
        let key: InterfaceKey
        if let last = lastReceived, last.id == record.interface {
            key = last.key
            lastReceived!.uncounted += 1
        } else {
            countReceived()
            guard let found = interfaceKey(for: record.interface) else {
                stats.unknownInterfaceRecords += 1
                return
            }
            key = found
            lastReceived = (record.interface, key, 1)
        }
        let packet = record.view(interface: key, clock: clock)
        stats.packets += 1
        stats.bytes += UInt64(packet.originalLength)
        reorder.push(packet, stream: stream)
    }

    /// Adds the packets counted in `lastReceived` to the per-interface counters.
    private func countReceived() {
        guard let last = lastReceived, last.uncounted > 0 else { return }
        stats.counters[last.key, default: InterfaceCounters()].received += last.uncounted
        lastReceived!.uncounted = 0
    }

    private func receiveKey(_ raw: UnsafeRawBufferPointer) {
        guard let keys else { return }
        let (lines, derivedNs) = keys.accept(raw, clock: clock)
        guard !lines.isEmpty else { return }
        stats.keys += UInt64(lines.count)
        // Packets up to `lastReleasedNs` are in the file already; a secret derived before that came
        // too late for whatever of its session went out in between (the reorder window was too short).
        if derivedNs < reorder.lastReleasedNs { stats.lateKeys += UInt64(lines.count) }
        writer.write(secrets: lines)
    }

    /// Drops the lookup cache when the registry changed; once per loop turn, not per packet (the
    /// registry's lock would otherwise be taken for every record).
    private func refreshResolvedInterfaces() {
        let generation = registry.currentGeneration()
        guard generation != resolvedGeneration else { return }
        countReceived()
        lastReceived = nil
        lastWritten = nil
        resolved.removeAll(keepingCapacity: true)
        resolvedGeneration = generation
    }

    private func interfaceKey(for id: CaptureInterfaceID) -> InterfaceKey? {
        if let key = resolved[id] { return key }
        guard let info = registry.resolve(cookie: id.netnsCookie, ifindex: id.ifindex) else { return nil }
        writer.register(info)
        resolved[id] = info.key
        networkOffsets[info.key] = info.linkType == .ethernet ? 14 : 0
        return info.key
    }

    // MARK: release and housekeeping

    private func release(upTo nowWallNs: UInt64) {
        // Under a flood capture comes first: no yielding once a poll read more than floodBytesPerPoll.
        let yielding = bytesSinceLastPoll < Self.floodBytesPerPoll
        var sinceYield = 0
        reorder.releaseReady(nowNs: nowWallNs) {
            write($0)
            sinceYield += 1
            if yielding && sinceYield == Self.packetsPerSlice {
                sinceYield = 0
                sched_yield()
            }
        }
        let watermark = nowWallNs >= settings.reorderWindowNs ? nowWallNs - settings.reorderWindowNs : 0
        writer.advance(watermarkWallNs: watermark)
    }

    /// Packets written between yields of the CPU: ~0.15 ms of work. Released packets come in batches
    /// of a poll's worth (~1 ms of compressing and writing at 140 000 packets/s); done in one go, that
    /// took a CPU from the watched service for the whole millisecond — with a single-worker nginx, a
    /// stall of every connection. Yielding every 128 packets lets a waiting task run in between: under
    /// the HTTPS bench p99 fell from ~2.2 to ~1.4 ms at the same CPU (bench/RESULTS.md).
    static let packetsPerSlice = 128
    /// Ring bytes read in one poll above which the pipeline does not yield: the rings are filling (at
    /// the HTTPS bench's 140 000 packets/s a poll reads ~0.2 MiB; at 10 Gbit/s several MiB).
    static let floodBytesPerPoll = 1 << 20

    /// The one place packets go to the writer: copies are dropped here unless configured to be kept.
    private func write(_ packet: PacketView) {
        if !settings.keepDuplicates, copies.isCopy(packet, networkOffset: networkOffset(of: packet.interface)) {
            stats.duplicates += 1
            return
        }
        writer.write(packet)
    }

    private func networkOffset(of key: InterfaceKey) -> Int {
        if let last = lastWritten, last.key == key { return last.networkOffset }
        let offset = networkOffsets[key] ?? 14
        lastWritten = (key, offset)
        return offset
    }

    private func housekeeping(nowWallNs: UInt64) {
        clock.refresh()
        do {
            for (id, count) in try capture.readDrops() {
                guard let key = interfaceKey(for: CaptureInterfaceID(netnsCookie: id.netnsCookie, ifindex: id.ifindex)) else { continue }
                // ISB isb_ifrecv counts what the program saw: delivered plus what the ring refused.
                let previous = stats.counters[key]?.droppedByRing ?? 0
                guard count > previous else { continue }
                stats.counters[key, default: InterfaceCounters()].droppedByRing = count
                stats.counters[key, default: InterfaceCounters()].received += count - previous
            }
        } catch {
            logger.warning("cannot read ring drop counters: \(error)")
        }
        for (key, late) in reorder.lateDrops where lateCounted[key] != late {
            stats.counters[key, default: InterfaceCounters()].droppedByTapper += late - (lateCounted[key] ?? 0)
            lateCounted[key] = late
        }
        stats.drops = stats.counters.values.reduce(0) { $0 + $1.droppedByRing + $1.droppedByTapper }
        keys?.expire(nowWallNs: nowWallNs)
        hooks.housekeeping(stats, writer.currentSegmentPath)
    }

    private func apply(_ changes: PipelineChanges) {
        if let window = changes.reorderWindowNs, window != settings.reorderWindowNs {
            settings.reorderWindowNs = window
            reorder.windowNs = window
        }
        if let keep = changes.keepDuplicates { settings.keepDuplicates = keep }
        if let rotation = changes.rotation { writer.reconfigure(rotateEveryNs: rotation.rotateEveryNs, flushEveryNs: rotation.flushEveryNs) }
    }

    /// On stop: nothing more comes from the kernel, so everything held is due now.
    private func drain() {
        _ = try? ring.consume()
        countReceived()
        reorder.releaseAll { write($0) }
        housekeeping(nowWallNs: MonotonicToWall.wallNowNs())
        writer.close()
    }
}

/// Counters the pipeline keeps; copied out for status and ISBs.
struct PipelineStats: Sendable {
    var counters: [InterfaceKey: InterfaceCounters] = [:]
    var packets: UInt64 = 0
    var bytes: UInt64 = 0
    var drops: UInt64 = 0
    var keys: UInt64 = 0
    /// Copies of packets already written from another interface, not written again.
    var duplicates: UInt64 = 0
    /// Secrets that reached the writer after packets newer than them were written.
    var lateKeys: UInt64 = 0
    var malformedRecords: UInt64 = 0
    var unknownInterfaceRecords: UInt64 = 0
}

/// The pipeline's counters, in a box the segment writer's ISB callback reads (same thread).
final class PipelineStatsBox: @unchecked Sendable {
    var value = PipelineStats()
}

/// What the service shell gives the pipeline to call on its thread.
struct PipelineHooks {
    /// Called on every loop turn; paced to WATCHDOG_USEC/2 by `WatchdogPacer`.
    var watchdog: () -> Void
    var housekeeping: (PipelineStats, String?) -> Void
}
