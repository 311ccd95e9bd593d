import Glibc
import TapCore

/// One segment file found in the segment directory.
public struct SegmentEntry: Equatable, Sendable {
    public var path: String
    public var name: String
    public var startNs: UInt64
    public var size: UInt64
    public var modifiedNs: UInt64
}

/// What is in a segment directory: finished segments (sorted by start time) and partial ones.
public enum SegmentDirectory {
    public static func finishedSegments(in directory: String) throws(SystemError) -> [SegmentEntry] {
        try entries(in: directory).filter { $0.name.hasSuffix(SegmentName.finishedSuffix) }
    }

    public static func partialSegments(in directory: String) throws(SystemError) -> [SegmentEntry] {
        try entries(in: directory).filter { $0.name.hasSuffix(SegmentName.partialSuffix) }
    }

    static func names(in directory: String) throws(SystemError) -> [String] {
        guard let dir = opendir(directory) else { throw SystemError("open segment directory \(directory)", errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            names.append(withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) })
        }
        return names
    }

    static func entries(in directory: String) throws(SystemError) -> [SegmentEntry] {
        var found: [SegmentEntry] = []
        for name in try names(in: directory) {
            guard let start = SegmentName.startNs(of: name) else { continue }
            let path = directory + "/" + name
            var info = stat()
            guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { continue }
            found.append(SegmentEntry(path: path, name: name, startNs: start, size: UInt64(info.st_size),
                                      modifiedNs: UInt64(info.st_mtim.tv_sec) * 1_000_000_000 + UInt64(info.st_mtim.tv_nsec)))
        }
        return found.sorted { ($0.startNs, $0.name) < ($1.startNs, $1.name) }
    }

    /// Makes the directory (and missing parents); a directory tlstap creates is 0700.
    public static func create(_ directory: String) throws(SystemError) {
        let components = directory.split(separator: "/", omittingEmptySubsequences: true)
        var path = directory.hasPrefix("/") ? "" : "."
        for (index, component) in components.enumerated() {
            path += "/" + component
            if mkdir(path, index == components.count - 1 ? 0o700 : 0o755) != 0 && errno != EEXIST {
                throw SystemError("create segment directory \(path)", errno: errno)
            }
        }
        var info = stat()
        guard stat(directory, &info) == 0 else { throw SystemError("stat segment directory \(directory)", errno: errno) }
        guard (info.st_mode & S_IFMT) == S_IFDIR else { throw SystemError("use segment directory \(directory)", errno: ENOTDIR) }
    }

    /// fsync of the directory, so a rename inside it is durable.
    public static func sync(_ directory: String) throws(SystemError) {
        let fd = try syscall("open \(directory)") { open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { close(fd) }
        try syscall("fsync \(directory)") { fsync(fd) }
    }

    /// A final name for a segment starting at `startNs` that no file in the directory has yet:
    /// the aligned start, or (after a restart within a period) the next free second.
    static func freeFinishedName(in directory: String, startNs: UInt64, firstWriteNs: UInt64) -> String {
        var candidate = startNs
        while true {
            let name = SegmentName.finished(startNs: candidate)
            if access(directory + "/" + name, F_OK) != 0 && access(directory + "/" + name + ".partial", F_OK) != 0 {
                return name
            }
            candidate = max(candidate + 1_000_000_000, firstWriteNs - firstWriteNs % 1_000_000_000)
        }
    }
}
