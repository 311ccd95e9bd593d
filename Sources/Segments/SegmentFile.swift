import Glibc
import TapCore

/// The file of a segment being written: created 0600 under its `.partial` name, appended to at each
/// flush, and on `finish` fsynced, closed and renamed to its final name. Owns the descriptor and
/// closes it in exactly one place (`closeDescriptor`).
final class SegmentFile {
    let directory: String
    let finalName: String
    var partialPath: String { directory + "/" + finalName + ".partial" }
    var finalPath: String { directory + "/" + finalName }
    /// Bytes on disk, ending where a flush ended.
    private(set) var length: Int = 0
    private var fd: Int32 = -1

    init(directory: String, finalName: String) {
        self.directory = directory
        self.finalName = finalName
    }

    deinit { assert(fd < 0, "segment file \(partialPath) was not closed") }

    var isOpen: Bool { fd >= 0 }

    /// Creates the partial file; done at the first flush, so an unwritable disk leaves
    /// nothing behind.
    func create() throws(SystemError) {
        guard fd < 0 else { return }
        let path = partialPath
        fd = try syscall("create segment \(path)") { open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) }
    }

    /// Appends one flush worth of compressed bytes, or nothing: a failed write is cut back off, so
    /// the file ends where the last flush ended.
    func append(_ bytes: [UInt8]) throws(SystemError) {
        try create()
        var written = 0
        do throws(SystemError) {
            while written < bytes.count {
                let path = partialPath
                let offset = written
                written += try syscall("write segment \(path)") {
                    bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
                }
            }
        } catch {
            if written > 0 { _ = ftruncate(fd, off_t(length)) }
            _ = lseek(fd, off_t(length), SEEK_SET)
            throw error
        }
        length += bytes.count
    }

    /// fsync, close, rename to the final name, fsync the directory: the segment becomes visible
    /// only when complete. A segment with nothing on disk is removed instead.
    func finish() throws(SystemError) {
        guard fd >= 0 else { return }
        let path = partialPath
        defer { closeDescriptor() }
        if length == 0 {
            unlink(path)
            return
        }
        try syscall("fsync segment \(path)") { fsync(fd) }
        try syscall("rename segment \(path)") { rename(path, finalPath) }
        try SegmentDirectory.sync(directory)
    }

    /// Gives the file up after a failed write: an empty one is removed; one holding data stays
    /// `.partial` (its frame unfinished) for `SegmentRepair`. Returns the path left, if any.
    func abandon() -> String? {
        let path = partialPath
        let created = fd >= 0
        closeDescriptor()
        guard created else { return nil }
        if length == 0 {
            unlink(path)
            return nil
        }
        return path
    }

    private func closeDescriptor() {
        if fd >= 0 { close(fd) }
        fd = -1
    }
}
