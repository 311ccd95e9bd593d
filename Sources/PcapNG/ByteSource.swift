import Glibc
import TapCore

/// Where a reader gets bytes from, in order, without holding the whole input: a file, a decompressor.
public protocol ByteSource: AnyObject {
    /// Up to `maxCount` next bytes; empty only at the end of the input.
    func read(maxCount: Int) throws -> [UInt8]
}

/// Bytes already in memory (tests, small inputs).
public final class MemoryByteSource: ByteSource {
    private let bytes: [UInt8]
    private var position = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public func read(maxCount: Int) throws -> [UInt8] {
        let end = min(bytes.count, position + maxCount)
        defer { position = end }
        return Array(bytes[position..<end])
    }
}

/// A file read sequentially. Owns its descriptor and closes it in `deinit`.
public final class FileByteSource: ByteSource {
    public let path: String
    private let fd: Int32

    public init(path: String) throws(SystemError) {
        self.path = path
        fd = try syscall("open \(path)") { open(path, O_RDONLY | O_CLOEXEC) }
    }

    deinit { close(fd) }

    public func read(maxCount: Int) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: maxCount)
        let count = try buffer.withUnsafeMutableBytes { raw throws(SystemError) in
            try syscall("read \(path)") { Glibc.read(fd, raw.baseAddress, maxCount) }
        }
        buffer.removeSubrange(count...)
        return buffer
    }
}
