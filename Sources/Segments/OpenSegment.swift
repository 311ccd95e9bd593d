import PcapNG
import TapCore

/// Output of the compressor taken for one write: the bytes and what they carry.
struct PendingOutput {
    var bytes: [UInt8] = []
    /// Packets per IDB id of the segment (an array: this is counted for every packet).
    var packetsByInterfaceID: [UInt64] = []

    var packets: UInt64 { packetsByInterfaceID.reduce(0, +) }
}

/// One segment while it is written: its file, its zstd frame in progress (one frame per segment:
/// tshark 4.0 misreads files of several frames once they pass 128 KiB), the interfaces and secrets it
/// holds, and what has been compressed but not yet written.
final class OpenSegment {
    let file: SegmentFile
    let periodStartNs: UInt64
    var periodEndNs: UInt64
    var nextFlushNs: UInt64 = 0
    var lastTimeNs: UInt64 = 0
    var sectionStarted = false
    private(set) var interfaceIDs: [InterfaceKey: UInt32] = [:]
    /// Every key-log line in this segment, for deduplication.
    private(set) var secrets: Set<KeyLogLine> = []
    /// Lines that arrived (write(secrets:)) while this segment was open, carried into the next head DSB.
    private(set) var arrivedSecrets: [KeyLogLine] = []
    private var arrivedSet: Set<KeyLogLine> = []

    private let compressor: ZstdCompressor
    private var pending = PendingOutput()
    private(set) var pendingInputBytes = 0
    /// Encoded blocks not yet given to zstd: compressing in chunks instead of one call per packet
    /// saves zstd's per-call work on every small packet.
    private var staged: [UInt8] = []
    static let compressChunkBytes = 64 << 10

    init(file: SegmentFile, periodStartNs: UInt64, periodEndNs: UInt64, zstdLevel: Int32) {
        self.file = file
        self.periodStartNs = periodStartNs
        self.periodEndNs = periodEndNs
        compressor = ZstdCompressor(level: zstdLevel)
    }

    var hasPendingInput: Bool { pendingInputBytes > 0 }

    func append(_ block: Block) {
        let before = staged.count
        BlockWriter.append(block, to: &staged)
        pendingInputBytes += staged.count - before
        if staged.count >= Self.compressChunkBytes { compressStaged() }
    }

    /// A packet's EPB, encoded straight from its bytes (cut to `snapLength`).
    func appendPacket(_ packet: PacketView, interfaceID: UInt32, snapLength: UInt32) {
        let before = staged.count
        let data = packet.bytes.count > Int(snapLength) ? UnsafeRawBufferPointer(rebasing: packet.bytes.prefix(Int(snapLength))) : packet.bytes
        BlockWriter.appendEnhancedPacket(interfaceID: interfaceID, timestampNs: packet.timestampNs,
                                         originalLength: packet.originalLength, flags: UInt32(packet.direction.rawValue),
                                         data: data, to: &staged)
        pendingInputBytes += staged.count - before
        pending.packetsByInterfaceID[Int(interfaceID)] += 1
        if staged.count >= Self.compressChunkBytes { compressStaged() }
    }

    /// The interface of each IDB id, for turning per-id counts back into per-interface ones.
    func interfaceKeysByID() -> [InterfaceKey] {
        var keys = [InterfaceKey](repeating: InterfaceKey(netnsInode: 0, ifindex: 0), count: interfaceIDs.count)
        for (key, id) in interfaceIDs { keys[Int(id)] = key }
        return keys
    }

    /// A DSB with the lines of `lines` not yet in this segment (nothing if none); `arrived` marks
    /// lines handed to the writer now rather than repeated from elsewhere.
    func appendSecrets(_ lines: [KeyLogLine], arrived: Bool) {
        let fresh = lines.filter { secrets.insert($0).inserted }
        if arrived { arrivedSecrets += lines.filter { arrivedSet.insert($0).inserted } }
        if !fresh.isEmpty { append(.secrets(DecryptionSecrets(keyLog: fresh))) }
    }

    /// The IDB id of an interface in this segment, writing its IDB the first time.
    func interfaceID(for info: InterfaceInfo, snapLength: UInt32) -> UInt32 {
        if let id = interfaceIDs[info.key] { return id }
        let id = UInt32(interfaceIDs.count)
        append(.interface(InterfaceDescription(linkType: info.linkType.rawValue, snapLength: snapLength,
                                               name: info.qualifiedName, description: info.description)))
        interfaceIDs[info.key] = id
        pending.packetsByInterfaceID.append(0)
        return id
    }

    /// Everything compressed so far, made decodable (zstd blocks flushed) or, with `endingFrame`,
    /// the end of the frame.
    func takeOutput(endingFrame: Bool) -> PendingOutput {
        compressStaged()
        if endingFrame { compressor.endFrame(into: &pending.bytes) } else { compressor.flush(into: &pending.bytes) }
        defer {
            pending = PendingOutput(packetsByInterfaceID: [UInt64](repeating: 0, count: interfaceIDs.count))
            pendingInputBytes = 0
        }
        return pending
    }

    private func compressStaged() {
        guard !staged.isEmpty else { return }
        compressor.compress(staged, into: &pending.bytes)
        staged.removeAll(keepingCapacity: true)
    }
}
