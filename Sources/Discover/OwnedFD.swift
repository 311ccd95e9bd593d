import Glibc
import TapCore

/// One file descriptor with exactly one owner. Discovery holds many kinds (nsfs, netlink, epoll,
/// eventfd, mountinfo); each lives in one `OwnedFD` and is closed in `close()` and nowhere else.
/// Debug builds trap if an owner forgets to close it, so leaks show up in tests, not in production.
final class OwnedFD {
    private(set) var raw: Int32
    let what: String

    init(_ raw: Int32, what: String) {
        self.raw = raw
        self.what = what
    }

    /// Opens `path` read-only (close-on-exec) and owns the result.
    static func open(_ path: String, what: String, flags: Int32 = O_RDONLY) throws(SystemError) -> OwnedFD {
        let fd = try syscall("open \(path) (\(what))") { Glibc.open(path, flags | O_CLOEXEC) }
        return OwnedFD(fd, what: what)
    }

    /// Closes the descriptor; later calls do nothing.
    func close() {
        guard raw >= 0 else { return }
        _ = Glibc.close(raw)
        raw = -1
    }

    deinit {
        assert(raw < 0, "fd \(raw) (\(what)) leaked: owner did not close it")
        if raw >= 0 { _ = Glibc.close(raw) }
    }
}
