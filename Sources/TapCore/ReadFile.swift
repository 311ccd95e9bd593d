import Glibc

/// Reads a whole file through the syscall gateway, in chunks: /proc files report size 0, so a
/// size-first reader (Foundation's) gets nothing from them. The error carries errno.
public func readWholeFile(_ path: String) throws(SystemError) -> String {
    let fd = try syscall("open \(path)") { open(path, O_RDONLY | O_CLOEXEC) }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while true {
        let count = try syscall("read \(path)") { chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }
        if count == 0 { break }
        bytes.append(contentsOf: chunk[..<count])
    }
    return String(decoding: bytes, as: UTF8.self)
}
