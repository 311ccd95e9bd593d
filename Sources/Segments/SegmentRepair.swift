import Glibc
import Logging
import PcapNG
import TapCore

/// Run at daemon start (and by the writer once a full disk frees up): turns each
/// `*.pcapng.zst.partial` into a finished segment.
///
/// A partial is decoded as far as its zstd data goes — the writer flushes complete zstd blocks, so
/// that is everything up to the last flush — and cut to its last complete PcapNG block. A partial
/// that decodes whole is only renamed; otherwise that prefix is compressed again into
/// `<name>.repair`, which replaces the partial under the final name. The result is a valid section
/// without ISBs. A partial with nothing recoverable is removed. Finished segments are never touched.
public struct SegmentRepair {
    public enum Outcome: Equatable, Sendable {
        case repaired(finalPath: String, keptBytes: UInt64)
        case removed(path: String, reason: String)
    }

    public let directory: String
    public let logger: Logger
    public var zstdLevel: Int32 = 3

    public init(directory: String, logger: Logger) {
        self.directory = directory
        self.logger = logger
    }

    /// Suffix of the copy being written by a repair; one left by a crash is incomplete and removed.
    static let temporarySuffix = ".repair"

    /// Repairs every partial segment of the directory; a directory that does not exist yet has none.
    @discardableResult
    public func run() throws -> [Outcome] {
        guard access(directory, F_OK) == 0 else { return [] }
        for stale in try SegmentDirectory.names(in: directory) where stale.hasSuffix(SegmentName.partialSuffix + Self.temporarySuffix) {
            unlink(directory + "/" + stale)
        }
        var outcomes: [Outcome] = []
        for partial in try SegmentDirectory.partialSegments(in: directory) {
            outcomes.append(try repair(path: partial.path))
        }
        return outcomes
    }

    @discardableResult
    public func repair(path: String) throws -> Outcome {
        let name = String(path.split(separator: "/").last ?? "")
        let (blocksEnd, whole, reason) = recoverable(path)
        if blocksEnd == 0 {
            try syscall("remove unrecoverable segment \(path)") { unlink(path) }
            logger.warning("removed a partial segment with nothing recoverable", metadata: ["segment": "\(name)", "reason": "\(reason)"])
            return .removed(path: path, reason: reason)
        }
        let stem = String(name.dropLast(SegmentName.partialSuffix.count))
        var finalName = stem + SegmentName.finishedSuffix
        if access(directory + "/" + finalName, F_OK) == 0, let start = SegmentName.startNs(of: name) {
            finalName = SegmentDirectory.freeFinishedName(in: directory, startNs: start, firstWriteNs: start)
        }
        let finalPath = directory + "/" + finalName
        if !whole {
            // Replace the partial by its repaired copy first: a crash in between leaves one or the
            // other, never both under final names.
            let temporary = path + Self.temporarySuffix
            try recompress(path, uncompressedLength: blocksEnd, to: temporary)
            try syscall("replace \(path) by its repaired copy") { rename(temporary, path) }
        }
        try syscall("rename \(path)") { rename(path, finalPath) }
        try SegmentDirectory.sync(directory)
        logger.notice("repaired a segment left partial", metadata: ["segment": "\(finalName)", "kept_pcapng_bytes": "\(blocksEnd)"])
        return .repaired(finalPath: finalPath, keptBytes: blocksEnd)
    }

    /// The uncompressed length of the whole PcapNG blocks the file decodes to (0 unless they start
    /// with a Section Header Block), and whether that is all of it.
    func recoverable(_ path: String) -> (blocksEnd: UInt64, whole: Bool, reason: String) {
        guard let file = try? FileByteSource(path: path) else { return (0, false, "cannot be opened") }
        let source = ZstdByteSource(compressed: file, tolerant: true)
        let reader = BlockReader(source: source)
        var blocksEnd: UInt64 = 0
        do {
            while let block = try reader.next() {
                if blocksEnd == 0 { guard case .section = block else { return (0, false, "does not start with a section header") } }
                blocksEnd = reader.offset
            }
            return (blocksEnd, !source.stoppedEarly, blocksEnd == 0 ? "empty" : "")
        } catch {
            return (blocksEnd, false, "\(error)")
        }
    }

    private func recompress(_ path: String, uncompressedLength: UInt64, to temporary: String) throws {
        let source = ZstdByteSource(compressed: try FileByteSource(path: path), tolerant: true)
        let fd = try syscall("create \(temporary)") { open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600) }
        var closed = false
        defer { if !closed { close(fd); unlink(temporary) } }
        let compressor = ZstdCompressor(level: zstdLevel)
        var remaining = uncompressedLength
        var output: [UInt8] = []
        func drain() throws {
            var written = 0
            while written < output.count {
                let offset = written
                written += try syscall("write \(temporary)") { output.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) } }
            }
            output.removeAll(keepingCapacity: true)
        }
        while remaining > 0 {
            let chunk = try source.read(maxCount: Int(min(remaining, 1 << 20)))
            guard !chunk.isEmpty else { throw PcapNGError(offset: uncompressedLength - remaining, "segment data ended early on the second read") }
            compressor.compress(chunk, into: &output)
            remaining -= UInt64(chunk.count)
            if output.count >= 1 << 20 { try drain() }
        }
        compressor.endFrame(into: &output)
        try drain()
        try syscall("fsync \(temporary)") { fsync(fd) }
        close(fd)
        closed = true
    }
}
