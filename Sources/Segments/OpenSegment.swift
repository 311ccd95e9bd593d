import PcapNG
import TapCore

/// What a segment holds, as far as later blocks depend on it.
struct SegmentState {
    var sectionStarted = false
    var interfaceIDs: [InterfaceKey: UInt32] = [:]
    var secrets: Set<KeyLogLine> = []
}

/// A frame ended by the compressor, waiting to be appended to the file.
struct EndedFrame {
    var bytes: [UInt8]
    var packets: Int
    var packetsByInterface: [InterfaceKey: UInt64]
    var secrets: [KeyLogLine]
}

/// One segment while it is written: its file, the compressor of its frame in progress, and its
/// state twice — as on disk (`committed`) and including the frame in progress (`state`) — so a frame
/// that cannot be written is rolled back without leaving blocks that point at lost IDBs.
final class OpenSegment {
    let file: SegmentFile
    let periodStartNs: UInt64
    var periodEndNs: UInt64
    var nextFlushNs: UInt64 = 0
    var lastTimeNs: UInt64 = 0
    var state = SegmentState()
    private var committed = SegmentState()

    private let compressor: ZstdCompressor
    private var frameOutput: [UInt8] = []
    private var frame = EndedFrame(bytes: [], packets: 0, packetsByInterface: [:], secrets: [])
    private(set) var pendingInputBytes = 0
    private var scratch: [UInt8] = []

    init(file: SegmentFile, periodStartNs: UInt64, periodEndNs: UInt64, zstdLevel: Int32) {
        self.file = file
        self.periodStartNs = periodStartNs
        self.periodEndNs = periodEndNs
        compressor = ZstdCompressor(level: zstdLevel)
    }

    var hasPendingFrame: Bool { pendingInputBytes > 0 }

    func append(_ block: Block, packetOf interface: InterfaceKey? = nil, secrets: [KeyLogLine] = []) {
        scratch.removeAll(keepingCapacity: true)
        BlockWriter.append(block, to: &scratch)
        compressor.compress(scratch, into: &frameOutput)
        pendingInputBytes += scratch.count
        if let interface {
            frame.packets += 1
            frame.packetsByInterface[interface, default: 0] += 1
        }
        if !secrets.isEmpty {
            frame.secrets += secrets
            state.secrets.formUnion(secrets)
        }
    }

    /// The IDB id of an interface in this segment, writing its IDB the first time.
    func interfaceID(for info: InterfaceInfo, snapLength: UInt32) -> UInt32 {
        if let id = state.interfaceIDs[info.key] { return id }
        let id = UInt32(state.interfaceIDs.count)
        append(.interface(InterfaceDescription(linkType: info.linkType.rawValue, snapLength: snapLength,
                                               name: info.qualifiedName, description: info.description)))
        state.interfaceIDs[info.key] = id
        return id
    }

    /// The lines of `lines` not yet in this segment, each once.
    func unwritten(_ lines: [KeyLogLine]) -> [KeyLogLine] {
        var seen = state.secrets
        return lines.filter { seen.insert($0).inserted }
    }

    func endFrame() -> EndedFrame {
        compressor.endFrame(into: &frameOutput)
        var ended = frame
        ended.bytes = frameOutput
        frameOutput = []
        frame = EndedFrame(bytes: [], packets: 0, packetsByInterface: [:], secrets: [])
        pendingInputBytes = 0
        return ended
    }

    /// The ended frame is on disk.
    func commit() { committed = state }

    /// The ended frame is lost: back to what the file holds.
    func rollBack() { state = committed }
}
