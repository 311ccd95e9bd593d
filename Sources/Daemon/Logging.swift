import Glibc
import Logging
import Synchronization

/// Picks where tlstap's logs go, once per process: journald with structured fields when stderr is
/// connected to the journal (run by systemd), readable stderr lines otherwise.
public enum TapLogging {
    private static let currentLevel = Mutex<Logger.Level>(.info)

    /// The level every tlstap handler follows; `setLevel` changes it live (a reload with a new log-level).
    public static var level: Logger.Level { currentLevel.withLock { $0 } }

    public static func setLevel(_ level: Logger.Level) {
        currentLevel.withLock { $0 = level }
    }

    /// Call once, first thing in `main`/`run()`, before any `Logger` is made.
    public static func bootstrap(level: Logger.Level) {
        setLevel(level)
        let journal = stderrIsJournal()
        LoggingSystem.bootstrap({ label, provider in
            if journal { return TapLogHandler(sink: .journal, metadataProvider: provider) }
            return TapLogHandler(sink: .stderr, metadataProvider: provider)
        }, metadataProvider: nil)
    }

    /// systemd sets `JOURNAL_STREAM=<dev>:<inode>` for a service whose stdout/stderr go to the journal;
    /// it counts only if stderr still is that stream (systemd.exec(5), "$JOURNAL_STREAM"), so a child
    /// whose stderr was redirected logs to the redirect.
    public static func stderrIsJournal(environment value: String? = getenv("JOURNAL_STREAM").map { String(cString: $0) }) -> Bool {
        guard let value else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(STDERR_FILENO, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }
}
