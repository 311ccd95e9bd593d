import CZstd
import PcapNG

/// What is wrong with a compressed segment, and where (offset in the compressed file).
public struct ZstdError: Error, CustomStringConvertible, Sendable {
    public var offset: UInt64
    public var reason: String

    public var description: String { "bad zstd data at byte offset \(offset): \(reason)" }
}

/// Decompresses a zstd byte source (one or more frames) as a stream, without holding the input.
/// A file that ends in the middle of a frame is an error (finished segments never do) unless the
/// source is `tolerant`: then, as repair needs, it ends quietly where the data stops decoding.
public final class ZstdByteSource: ByteSource {
    private let tolerant: Bool
    /// In tolerant mode: true when the input ended early, torn or damaged.
    public private(set) var stoppedEarly = false
    private var stopPending = false
    private var inputHint = 1
    /// ZSTD_blockHeaderSize, which zstd.h declares only for static linking.
    private static let blockHeaderSize = 3
    private var drainFirst = false
    private let compressed: any ByteSource
    private let context: OpaquePointer
    fileprivate var input: [UInt8] = []
    fileprivate var inputPosition = 0
    /// Offset in the compressed input of `input[0]`.
    private var inputOffset: UInt64 = 0
    fileprivate var inputEnded = false
    /// True when the last zstd call finished a frame (or nothing started one yet).
    fileprivate var atFrameBoundary = true

    public init(compressed: any ByteSource, tolerant: Bool = false) {
        self.compressed = compressed
        self.tolerant = tolerant
        guard let context = ZSTD_createDCtx() else { fatalError("ZSTD_createDCtx: out of memory") }
        self.context = context
    }

    deinit { ZSTD_freeDCtx(context) }

    public func read(maxCount: Int) throws -> [UInt8] {
        if stopPending { return stop() }
        var output = [UInt8](repeating: 0, count: maxCount)
        while true {
            // Call zstd while it has input, or output still owed from a frame in progress.
            if inputPosition < input.count || !atFrameBoundary {
                let before = inputPosition
                var produced = 0
                let result: Int = input.withUnsafeBytes { source in
                    output.withUnsafeMutableBytes { target in
                        // Tolerant mode feeds zstd one block at a time (its hint, less the next block's
                        // header it includes) and, after each bite, calls once with no new input so the
                        // decoded data comes out: a call that fails reports none of the output it made
                        // before the failure, so damage must never share a call with good data.
                        let bite = drainFirst ? 0 : max(inputHint - Self.blockHeaderSize, 1)
                        let size = tolerant ? min(source.count, inputPosition + bite) : source.count
                        var inBuffer = ZSTD_inBuffer(src: source.baseAddress, size: size, pos: inputPosition)
                        var outBuffer = ZSTD_outBuffer(dst: target.baseAddress, size: maxCount, pos: 0)
                        let result = ZSTD_decompressStream(context, &outBuffer, &inBuffer)
                        inputPosition = inBuffer.pos
                        produced = outBuffer.pos
                        return result
                    }
                }
                if ZSTD_isError(result) != 0 {
                    if tolerant {
                        // What decoded before the damage comes first; the next read ends the stream.
                        guard produced > 0 else { return stop() }
                        stopPending = true
                        output.removeSubrange(produced...)
                        return output
                    }
                    throw ZstdError(offset: inputOffset + UInt64(inputPosition), reason: String(cString: ZSTD_getErrorName(result)))
                }
                if produced > 0 || inputPosition > before { atFrameBoundary = result == 0 }
                inputHint = result
                drainFirst = tolerant && inputPosition > before
                if produced > 0 {
                    output.removeSubrange(produced...)
                    return output
                }
                if inputPosition < input.count || drainFirst { continue }
            }
            inputOffset += UInt64(input.count)
            input = inputEnded ? [] : try compressed.read(maxCount: ZSTD_DStreamInSize())
            inputPosition = 0
            if input.isEmpty {
                inputEnded = true
                guard atFrameBoundary else {
                    if tolerant { return stop() }
                    throw ZstdError(offset: inputOffset, reason: "the file ends inside a zstd frame (truncated)")
                }
                return []
            }
        }
    }
}

extension ZstdByteSource {
    fileprivate func stop() -> [UInt8] {
        stoppedEarly = true
        inputEnded = true
        input = []
        inputPosition = 0
        atFrameBoundary = true
        return []
    }
}

/// Opening finished segments for reading.
public enum SegmentReader {
    /// A block reader over a `.pcapng.zst` file, streaming.
    public static func open(path: String) throws -> BlockReader {
        BlockReader(source: ZstdByteSource(compressed: try FileByteSource(path: path)))
    }
}
