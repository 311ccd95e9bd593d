import Glibc
import Logging
import TapCore
import CLibBPF

/// Watches the cgroup tree: containers start in new cgroups, and a runtime moves each container
/// process in by writing its pid to the cgroup's `cgroup.procs` (or v1 `tasks`). That write is an
/// ordinary file modification, so an inotify watch on the cgroup directory reports it, on cgroup v1,
/// v2 and hybrid hosts alike. Discovery then checks the namespaces of the processes in that cgroup.
/// This backs up the proc connector (which sees the same processes at fork/exec) with a second,
/// independent event source.
///
/// Watched hierarchies: every cgroup2 mount (`/sys/fs/cgroup` or hybrid `/sys/fs/cgroup/unified`) and
/// the v1 `name=systemd` hierarchy, recursively; new directories get their own watch as they appear.
///
/// Owns: one inotify fd (closed in `close()`); its watches go with it.
final class CgroupWatch {
    let inotify: OwnedFD
    private var directories: [Int32: String] = [:]
    private let logger: Logger

    init(mountinfo: String, logger: Logger) throws(SystemError) {
        self.logger = logger
        inotify = OwnedFD(try syscall("inotify_init1") { inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK)) }, what: "cgroup inotify")
        for root in Self.hierarchies(mountinfo: mountinfo) { watchTree(root) }
    }

    /// Mount points of the cgroup hierarchies worth watching, from /proc/self/mountinfo.
    static func hierarchies(mountinfo: String) -> [String] {
        var roots: [String] = []
        for line in mountinfo.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard let dash = fields.firstIndex(of: "-"), dash + 3 < fields.count, fields.count > 4 else { continue }
            let type = fields[dash + 1], superOptions = fields[dash + 3]
            if type == "cgroup2" || (type == "cgroup" && superOptions.split(separator: ",").contains("name=systemd")) {
                roots.append(String(fields[4]))
            }
        }
        return roots
    }

    var watchCount: Int { directories.count }

    /// Adds a watch on `path` and every directory below it.
    private func watchTree(_ path: String) {
        let mask = UInt32(IN_CREATE) | UInt32(IN_MODIFY) | UInt32(IN_ONLYDIR)
        let wd = inotify_add_watch(inotify.raw, path, mask)
        guard wd >= 0 else {
            // ENOSPC (fs.inotify.max_user_watches) or the cgroup vanished: the proc connector still covers it.
            if errno != ENOENT { logger.warning("cannot watch cgroup", metadata: ["path": "\(path)", "errno": "\(errno)"]) }
            return
        }
        directories[wd] = path
        guard let directory = opendir(path) else { return }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            guard entry.pointee.d_type == UInt8(DT_DIR) else { continue }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name == "." || name == ".." { continue }
            watchTree(path + "/" + name)
        }
    }

    /// Reads queued events: follows new cgroups, and returns the pids now in cgroups whose
    /// membership changed.
    func drain() -> [Int32] {
        var pids: [Int32] = []
        var changed: Set<String> = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        let headerSize = MemoryLayout<inotify_event>.size
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(inotify.raw, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            buffer.withUnsafeBytes { bytes in
                var offset = 0
                while offset + headerSize <= count {
                    let event = bytes.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                    let nameBytes = UnsafeRawBufferPointer(rebasing: bytes[(offset + headerSize)..<min(count, offset + headerSize + Int(event.len))])
                    let name = String(decoding: nameBytes.prefix { $0 != 0 }, as: UTF8.self)
                    offset += headerSize + Int(event.len)
                    if event.mask & UInt32(IN_IGNORED) != 0 { directories[event.wd] = nil; continue }
                    guard let directory = directories[event.wd] else { continue }
                    if event.mask & UInt32(IN_CREATE) != 0 && event.mask & UInt32(IN_ISDIR) != 0 {
                        // Processes may be moved in before our watch exists: look at it now too.
                        watchTree(directory + "/" + name)
                        changed.insert(directory + "/" + name)
                    } else if event.mask & UInt32(IN_MODIFY) != 0 && (name == "cgroup.procs" || name == "tasks") {
                        changed.insert(directory)
                    }
                }
            }
        }
        for directory in changed {
            let text = NamespaceScan.readProcFile(directory + "/cgroup.procs") ?? ""
            pids += text.split(separator: "\n").compactMap { Int32($0) }
        }
        return pids
    }

    func close() { inotify.close() }
}
