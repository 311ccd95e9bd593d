import Glibc
import TapCore

/// Read-only views of the host that say which network namespaces exist and who refers to them.
/// Two kinds of reference keep a namespace alive and make it worth watching: a process inside it
/// (`/proc/PID/ns/net`) and an nsfs bind mount (`ip netns`, Docker, CNI) in our mount table.
enum NamespaceScan {
    /// The inode of the network namespace `path` opens, or nil if it is gone.
    static func netnsInode(_ path: String) -> UInt64? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return UInt64(info.st_ino)
    }

    static func netnsInode(pid: Int32) -> UInt64? { netnsInode("/proc/\(pid)/ns/net") }

    /// Every process's network namespace: inode → pids. Processes that exit during the scan are skipped.
    static func processes() -> [UInt64: [Int32]] {
        var members: [UInt64: [Int32]] = [:]
        guard let directory = opendir("/proc") else { return members }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let pid = Int32(name), let inode = netnsInode(pid: pid) else { continue }
            members[inode, default: []].append(pid)
        }
        return members
    }

    /// nsfs mounts of network namespaces in our mount table: inode → mount points.
    /// mountinfo lines read `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL…] - FSTYPE SOURCE SUPEROPTS`;
    /// for an nsfs mount ROOT is `net:[INODE]`.
    static func mounts(mountinfo: String) -> [UInt64: [String]] {
        var result: [UInt64: [String]] = [:]
        for line in mountinfo.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 4, let dash = fields.firstIndex(of: "-"), dash + 1 < fields.count,
                  fields[dash + 1] == "nsfs", fields[3].hasPrefix("net:[") else { continue }
            guard let inode = UInt64(fields[3].dropFirst(5).dropLast()) else { continue }
            result[inode, default: []].append(unescapeOctal(String(fields[4])))
        }
        return result
    }

    /// Reads a whole /proc file (their size is unknown until read).
    static func readProcFile(_ path: String) -> String? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        return readAll(fd)
    }

    /// Reads `fd` from its current offset to the end.
    static func readAll(_ fd: Int32) -> String {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            bytes += chunk[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// mountinfo escapes space, tab, newline and backslash as `\ooo`.
    private static func unescapeOctal(_ text: String) -> String {
        guard text.contains("\\") else { return text }
        var out: [UInt8] = []
        let bytes = Array(text.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "\\"), i + 3 < bytes.count,
               let value = UInt8(String(decoding: bytes[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(value)
                i += 4
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
