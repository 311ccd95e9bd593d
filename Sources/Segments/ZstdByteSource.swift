import CZstd
import PcapNG

/// What is wrong with a compressed segment, and where (offset in the compressed file).
public struct ZstdError: Error, CustomStringConvertible, Sendable {
    public var offset: UInt64
    public var reason: String

    public var description: String { "bad zstd data at byte offset \(offset): \(reason)" }
}

/// Decompresses a zstd byte source (one or more frames) as a stream, without holding the input.
/// A file that ends in the middle of a frame is an error: finished segments never do.
public final class ZstdByteSource: ByteSource {
    private let compressed: any ByteSource
    private let context: OpaquePointer
    private var input: [UInt8] = []
    private var inputPosition = 0
    /// Offset in the compressed input of `input[0]`.
    private var inputOffset: UInt64 = 0
    private var inputEnded = false
    /// True when the last zstd call finished a frame (or nothing started one yet).
    private var atFrameBoundary = true

    public init(compressed: any ByteSource) {
        self.compressed = compressed
        guard let context = ZSTD_createDCtx() else { fatalError("ZSTD_createDCtx: out of memory") }
        self.context = context
    }

    deinit { ZSTD_freeDCtx(context) }

    public func read(maxCount: Int) throws -> [UInt8] {
        var output = [UInt8](repeating: 0, count: maxCount)
        while true {
            // Call zstd while it has input, or output still owed from a frame in progress.
            if inputPosition < input.count || !atFrameBoundary {
                let before = inputPosition
                var produced = 0
                let result: Int = input.withUnsafeBytes { source in
                    output.withUnsafeMutableBytes { target in
                        var inBuffer = ZSTD_inBuffer(src: source.baseAddress, size: source.count, pos: inputPosition)
                        var outBuffer = ZSTD_outBuffer(dst: target.baseAddress, size: maxCount, pos: 0)
                        let result = ZSTD_decompressStream(context, &outBuffer, &inBuffer)
                        inputPosition = inBuffer.pos
                        produced = outBuffer.pos
                        return result
                    }
                }
                if ZSTD_isError(result) != 0 {
                    throw ZstdError(offset: inputOffset + UInt64(inputPosition), reason: String(cString: ZSTD_getErrorName(result)))
                }
                if produced > 0 || inputPosition > before { atFrameBoundary = result == 0 }
                if produced > 0 {
                    output.removeSubrange(produced...)
                    return output
                }
                if inputPosition < input.count { continue }
            }
            inputOffset += UInt64(input.count)
            input = inputEnded ? [] : try compressed.read(maxCount: ZSTD_DStreamInSize())
            inputPosition = 0
            if input.isEmpty {
                inputEnded = true
                guard atFrameBoundary else {
                    throw ZstdError(offset: inputOffset, reason: "the file ends inside a zstd frame (truncated)")
                }
                return []
            }
        }
    }
}

/// Opening finished segments for reading.
public enum SegmentReader {
    /// A block reader over a `.pcapng.zst` file, streaming.
    public static func open(path: String) throws -> BlockReader {
        BlockReader(source: ZstdByteSource(compressed: try FileByteSource(path: path)))
    }
}
