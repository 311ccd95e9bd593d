import CZstd
import Glibc
import Logging
import PcapNG
import TapCore

/// Run at daemon start: turns every `*.pcapng.zst.partial` left by a crash into a finished segment.
///
/// A partial is cut to its last zstd frame that is complete and decompresses (checksum included),
/// and within that to the last frame whose content ends on a complete PcapNG block — the writer
/// ends frames only between blocks, so this keeps everything up to the last flush. The result is a
/// valid section without ISBs, renamed to its final name. A partial with nothing recoverable is
/// removed. Finished segments are never opened for writing.
public struct SegmentRepair {
    public enum Outcome: Equatable, Sendable {
        case repaired(finalPath: String, keptBytes: UInt64, droppedBytes: UInt64)
        case removed(path: String, reason: String)
    }

    public let directory: String
    public let logger: Logger

    public init(directory: String, logger: Logger) {
        self.directory = directory
        self.logger = logger
    }

    @discardableResult
    public func run() throws(SystemError) -> [Outcome] {
        var outcomes: [Outcome] = []
        for partial in try SegmentDirectory.partialSegments(in: directory) {
            outcomes.append(try repair(partial))
        }
        return outcomes
    }

    func repair(_ partial: SegmentEntry) throws(SystemError) -> Outcome {
        let keep: UInt64
        var reason = "no complete PcapNG section"
        do {
            keep = try recoverableLength(of: partial.path)
        } catch {
            keep = 0
            reason = "\(error)"
        }
        if keep == 0 {
            try syscall("remove unrecoverable segment \(partial.path)") { unlink(partial.path) }
            logger.warning("removed a partial segment with nothing recoverable",
                           metadata: ["segment": "\(partial.name)", "reason": "\(reason)"])
            return .removed(path: partial.path, reason: reason)
        }
        let fd = try syscall("open \(partial.path)") { open(partial.path, O_WRONLY | O_CLOEXEC) }
        defer { close(fd) }
        try syscall("truncate \(partial.path)") { ftruncate(fd, off_t(keep)) }
        try syscall("fsync \(partial.path)") { fsync(fd) }
        let stem = String(partial.name.dropLast(SegmentName.partialSuffix.count))
        var finalName = stem + SegmentName.finishedSuffix
        if access(directory + "/" + finalName, F_OK) == 0 {
            finalName = SegmentDirectory.freeFinishedName(in: directory, startNs: partial.startNs, firstWriteNs: partial.startNs)
        }
        let finalPath = directory + "/" + finalName
        try syscall("rename \(partial.path)") { rename(partial.path, finalPath) }
        try SegmentDirectory.sync(directory)
        logger.notice("repaired a segment left partial by a crash",
                      metadata: ["segment": "\(finalName)", "kept_bytes": "\(keep)", "dropped_bytes": "\(partial.size - keep)"])
        return .repaired(finalPath: finalPath, keptBytes: keep, droppedBytes: partial.size - keep)
    }

    /// Compressed length of the longest prefix of whole, valid frames whose content is whole blocks
    /// starting with a Section Header Block.
    func recoverableLength(of path: String) throws -> UInt64 {
        let frames = try FrameSource(path: path)
        let reader = BlockReader(source: frames)
        var blocksEnd: UInt64 = 0
        do {
            while let block = try reader.next() {
                if blocksEnd == 0 { guard case .section = block else { break } }
                blocksEnd = reader.offset
            }
        } catch {
            // A torn or damaged tail: keep what came before it.
        }
        // The last frame boundary at or before the end of the last whole block.
        return frames.boundaries.last { $0.uncompressedEnd <= blocksEnd }?.compressedEnd ?? 0
    }
}

/// The decompressed content of a zstd file, frame by frame, stopping quietly at the first frame
/// that is incomplete or does not decompress; records where each good frame ends.
final class FrameSource: ByteSource {
    struct Boundary { var compressedEnd: UInt64; var uncompressedEnd: UInt64 }

    private let file: FileByteSource
    private var pending: [UInt8] = []
    private var fileEnded = false
    private var compressedOffset: UInt64 = 0
    private var uncompressedOffset: UInt64 = 0
    private var output: [UInt8] = []
    private var outputPosition = 0
    private var stopped = false
    private(set) var boundaries: [Boundary] = []
    private let context: OpaquePointer

    init(path: String) throws {
        file = try FileByteSource(path: path)
        guard let context = ZSTD_createDCtx() else { fatalError("ZSTD_createDCtx: out of memory") }
        self.context = context
    }

    deinit { ZSTD_freeDCtx(context) }

    func read(maxCount: Int) throws -> [UInt8] {
        while outputPosition == output.count {
            guard !stopped, let frame = try nextFrame() else { return [] }
            output = frame
            outputPosition = 0
        }
        let end = min(output.count, outputPosition + maxCount)
        defer { outputPosition = end }
        return Array(output[outputPosition..<end])
    }

    /// The next whole frame, decompressed; nil at the end or at the first bad frame.
    private func nextFrame() throws -> [UInt8]? {
        while true {
            let size = pending.withUnsafeBytes { ZSTD_findFrameCompressedSize($0.baseAddress, $0.count) }
            if ZSTD_isError(size) == 0 && size <= pending.count {
                guard let content = decompress(frameLength: size) else { stopped = true; return nil }
                pending.removeSubrange(0..<size)
                compressedOffset += UInt64(size)
                uncompressedOffset += UInt64(content.count)
                boundaries.append(Boundary(compressedEnd: compressedOffset, uncompressedEnd: uncompressedOffset))
                return content
            }
            let needsMore = ZSTD_isError(size) == 0 || ZSTD_getErrorCode(size) == ZSTD_error_srcSize_wrong || pending.count < 18
            guard needsMore, !fileEnded else { stopped = true; return nil }
            let chunk = try file.read(maxCount: 1 << 20)
            if chunk.isEmpty { fileEnded = true } else { pending += chunk }
        }
    }

    private func decompress(frameLength: Int) -> [UInt8]? {
        ZSTD_DCtx_reset(context, ZSTD_reset_session_only)
        var content: [UInt8] = []
        var scratch = [UInt8](repeating: 0, count: ZSTD_DStreamOutSize())
        let scratchCount = scratch.count
        var finished = false
        let ok: Bool = pending.withUnsafeBytes { source in
            var inBuffer = ZSTD_inBuffer(src: source.baseAddress, size: frameLength, pos: 0)
            return scratch.withUnsafeMutableBytes { target in
                while true {
                    var outBuffer = ZSTD_outBuffer(dst: target.baseAddress, size: scratchCount, pos: 0)
                    let result = ZSTD_decompressStream(context, &outBuffer, &inBuffer)
                    if ZSTD_isError(result) != 0 { return false }
                    content.append(contentsOf: UnsafeRawBufferPointer(rebasing: target[0..<outBuffer.pos]))
                    if result == 0 { finished = true; return true }
                    if inBuffer.pos == inBuffer.size && outBuffer.pos < scratchCount { return false }
                }
            }
        }
        return ok && finished ? content : nil
    }
}
