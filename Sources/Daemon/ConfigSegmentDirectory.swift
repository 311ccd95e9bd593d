import Glibc
import TapCore

extension TapConfig {
    /// Makes sure the segment directory exists (created 0700, parents as needed) and that a file can be
    /// created in it — by creating and removing one, since root passes every permission check but not
    /// a read-only mount. Done at config time so a bad path stops start-up with a message naming it.
    public func prepareSegmentDirectory() throws(ConfigError) {
        let path = segmentDirectory
        do {
            try Self.makeDirectories(path)
        } catch {
            throw ConfigError("segment directory \(path): \(error.description)")
        }
        let probe = path + "/.tlstap-write-test-\(getpid())"
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw ConfigError("segment directory \(path): not writable: \(String(cString: strerror(errno)))")
        }
        close(fd)
        unlink(probe)
    }

    private static func makeDirectories(_ path: String) throws(SystemError) {
        var info = stat()
        if stat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else { throw SystemError("not a directory", errno: ENOTDIR) }
            return
        }
        guard errno == ENOENT else { throw SystemError("stat", errno: errno) }
        if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            try makeDirectories(String(path[..<slash]))
        }
        if mkdir(path, 0o700) != 0 && errno != EEXIST { throw SystemError("create", errno: errno) }
    }
}
