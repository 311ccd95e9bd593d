import Glibc
import TapCore

/// A buffered sequential writer to a file it creates, or to standard output.
public final class OutputFile {
    public let path: String
    private let fd: Int32
    private let ownsDescriptor: Bool
    private var buffer: [UInt8] = []

    /// `-` is standard output; anything else is created (0600) or truncated.
    public init(path: String) throws(SystemError) {
        self.path = path
        if path == "-" {
            fd = STDOUT_FILENO
            ownsDescriptor = false
        } else {
            fd = try syscall("create \(path)") { open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600) }
            ownsDescriptor = true
        }
    }

    deinit { if ownsDescriptor { Glibc.close(fd) } }

    public func write(_ bytes: [UInt8]) throws(SystemError) {
        buffer += bytes
        if buffer.count >= 1 << 20 { try flush() }
    }

    public func flush() throws(SystemError) {
        var written = 0
        let name = path == "-" ? "standard output" : path
        while written < buffer.count {
            let offset = written
            written += try syscall("write \(name)") {
                buffer.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            }
        }
        buffer.removeAll(keepingCapacity: true)
    }
}
