import CZstd

/// A zstd streaming compressor (ZSTD_compressStream2) producing one frame into memory; owns its
/// context and frees it in `deinit`. The frame carries a content checksum.
final class ZstdCompressor {
    private let context: OpaquePointer
    private var scratch: [UInt8]

    init(level: Int32) {
        guard let context = ZSTD_createCCtx() else { fatalError("ZSTD_createCCtx: out of memory") }
        self.context = context
        scratch = [UInt8](repeating: 0, count: ZSTD_CStreamOutSize())
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1)
    }

    deinit { ZSTD_freeCCtx(context) }

    /// Compresses `input` into the current frame, appending what zstd emits to `output`.
    func compress(_ input: [UInt8], into output: inout [UInt8]) {
        run(input, ZSTD_e_continue, into: &output)
    }

    /// Flushes what was compressed so far as complete zstd blocks (ZSTD_e_flush): a reader of the
    /// output decodes everything given so far, though the frame goes on.
    func flush(into output: inout [UInt8]) {
        run([], ZSTD_e_flush, into: &output)
    }

    /// Ends the current frame: afterwards `output` ends with a complete frame.
    func endFrame(into output: inout [UInt8]) {
        run([], ZSTD_e_end, into: &output)
    }

    private func run(_ input: [UInt8], _ directive: ZSTD_EndDirective, into output: inout [UInt8]) {
        input.withUnsafeBytes { source in
            var inBuffer = ZSTD_inBuffer(src: source.baseAddress, size: source.count, pos: 0)
            let scratchCount = scratch.count
            scratch.withUnsafeMutableBytes { target in
                while true {
                    var outBuffer = ZSTD_outBuffer(dst: target.baseAddress, size: scratchCount, pos: 0)
                    let remaining = ZSTD_compressStream2(context, &outBuffer, &inBuffer, directive)
                    // Only misuse (a bad parameter) can fail here; memory comes from the process.
                    precondition(ZSTD_isError(remaining) == 0, "zstd compression: \(String(cString: ZSTD_getErrorName(remaining)))")
                    output.append(contentsOf: UnsafeRawBufferPointer(rebasing: target[0..<outBuffer.pos]))
                    let inputDone = inBuffer.pos == inBuffer.size
                    if directive == ZSTD_e_continue ? inputDone : (inputDone && remaining == 0) { break }
                }
            }
        }
    }
}
