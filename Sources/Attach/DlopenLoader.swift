import CLibBPF
import Glibc
import Discover
import TapCore

/// Loads bpf/dlopen.bpf.c and puts its uretprobe on `dlopen` in a libc, so a library loaded long after
/// a process started is looked at the moment it is mapped (the loader paired with dlopen.bpf.c).
///
/// Owns the `bpf_object` (the `loads` ring and the program) and one `bpf_link` per libc file;
/// `close()` destroys them exactly once. Uprobes are perf-event based: they vanish if tlstap dies.
/// Not thread-safe: the libssl watcher's thread is its only user.
public final class DlopenLoader {
    private var object: OpaquePointer?
    private let program: OpaquePointer
    private var links: [String: OpaquePointer] = [:]
    /// The `loads` ring: records are `struct dlopen_event` (decode with `pid(of:)`).
    public let loadsMapFD: Int32

    public init() throws(SystemError) {
        let opened = try EmbeddedBPF.dlopen.open()
        do throws(SystemError) {
            try libbpfCall("load the dlopen BPF object") { bpf_object__load(opened) }
            guard let program = bpf_object__find_program_by_name(opened, "tlstap_dlopen_return") else {
                throw SystemError("find program tlstap_dlopen_return", errno: ENOENT)
            }
            let fd = bpf_object__find_map_fd_by_name(opened, "loads")
            guard fd >= 0 else { throw SystemError("find map loads in the dlopen BPF object", errno: ENOENT) }
            self.program = program
            loadsMapFD = fd
        } catch {
            bpf_object__close(opened)
            throw error
        }
        object = opened
    }

    deinit {
        assert(object == nil, "DlopenLoader dropped without close(): its uprobes and BPF object leaked")
        close()
    }

    /// Hooks the return of `dlopen` in the libc at `path` (for every process that maps it).
    public func attach(libc path: String) throws(SystemError) {
        guard links[path] == nil else { return }
        let offset = try ELFFunction.fileOffset(of: "dlopen", in: path)
        var opts = tlstap_uprobe_opts(nil, 1)
        let link = bpf_program__attach_uprobe_opts(program, -1, path, Int(offset), &opts)
        guard let link else { throw SystemError("attach a uretprobe to dlopen in \(path)", errno: errno) }
        links[path] = link
    }

    public static func pid(of record: UnsafeRawBufferPointer) -> Int32? {
        guard record.count >= MemoryLayout<dlopen_event>.size else { return nil }
        return Int32(bitPattern: record.loadUnaligned(as: dlopen_event.self).pid)
    }

    /// Detaches every uprobe and destroys the object; a second call does nothing.
    public func close() {
        for link in links.values { bpf_link__destroy(link) }
        links.removeAll()
        if let object { bpf_object__close(object) }
        object = nil
    }
}
