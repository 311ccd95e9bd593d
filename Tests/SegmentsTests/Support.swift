import Glibc
import Logging
import PcapNG
import Segments
import TapCore

/// A fresh directory under /tmp, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() {
        var template = Array("/tmp/tlstap-segments-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(cString: template)
    }

    func files() -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    func remove() {
        for name in files() { unlink(path + "/" + name) }
        rmdir(path)
    }
}

final class FixedSecrets: LiveSecretsProvider {
    var lines: [KeyLogLine]
    private(set) var calls = 0
    init(_ lines: [KeyLogLine]) { self.lines = lines }
    func liveSecrets(nowWallNs: UInt64) -> [KeyLogLine] {
        calls += 1
        return lines
    }
}

func keyLine(_ n: UInt8) -> KeyLogLine {
    KeyLogLine(label: "CLIENT_TRAFFIC_SECRET_0", clientRandom: [UInt8](repeating: n, count: 32), secret: [UInt8](repeating: n, count: 32))
}

let eth0 = InterfaceInfo(key: InterfaceKey(netnsInode: 4026531840, ifindex: 2), name: "eth0", linkType: .ethernet, description: "host")
let wg0 = InterfaceInfo(key: InterfaceKey(netnsInode: 4026532301, ifindex: 5), name: "wg0", linkType: .rawIP, description: "container")

func packet(_ interface: InterfaceInfo, _ timeNs: UInt64, _ byte: UInt8 = 7, _ direction: Direction = .outbound) -> CapturedPacket {
    CapturedPacket(interface: interface.key, timestampNs: timeNs, direction: direction, originalLength: 64,
                   data: [UInt8](repeating: byte, count: 60))
}

func makeWriter(_ dir: TemporaryDirectory, rotate: UInt64 = 10_000_000_000, flush: UInt64 = 1_000_000_000,
                secrets: (any LiveSecretsProvider)? = nil) throws -> SegmentWriter {
    let writer = try SegmentWriter(directory: dir.path, rotateEveryNs: rotate, flushEveryNs: flush, liveSecrets: secrets,
                                   counters: { [eth0.key: InterfaceCounters(received: 11, droppedByRing: 1, droppedByTapper: 0)] },
                                   logger: Logger(label: "test"))
    writer.register(eth0)
    writer.register(wg0)
    return writer
}

func blocks(of path: String) throws -> [Block] {
    let reader = try SegmentReader.open(path: path)
    var result: [Block] = []
    while let block = try reader.next() { result.append(block) }
    return result
}

func readFile(_ path: String) -> [UInt8] {
    guard let source = try? FileByteSource(path: path) else { return [] }
    var bytes: [UInt8] = []
    while let chunk = try? source.read(maxCount: 65536), !chunk.isEmpty { bytes += chunk }
    return bytes
}

func writeFile(_ path: String, _ bytes: [UInt8], mtimeNs: UInt64? = nil) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    precondition(fd >= 0)
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
    if let mtimeNs {
        var times = [timespec(tv_sec: Int(mtimeNs / 1_000_000_000), tv_nsec: 0), timespec(tv_sec: Int(mtimeNs / 1_000_000_000), tv_nsec: 0)]
        utimensat(AT_FDCWD, path, &times, 0)
    }
}

/// 2025-11-25T10:00:00Z
let t0: UInt64 = 1_764_064_800_000_000_000

/// The blocks of a segment still being written, as far as its flushed data goes.
func flushedBlocks(of path: String) throws -> [Block] {
    let reader = BlockReader(source: ZstdByteSource(compressed: try FileByteSource(path: path), tolerant: true))
    var result: [Block] = []
    while let block = try reader.next() { result.append(block) }
    return result
}
