import Attach
import Discover
import Logging
import Secrets
import TapCore

/// The TLS side of the pipeline: the uprobe loader's ring of key records, deduplicated through the
/// session table (both ends of a local connection report the same secrets), which also provides the
/// live secrets at the head of each segment.
///
/// Owns the `TLSKeysLoader` (its bpf_object and uprobe links) through `LibSSLWatcher`, which is the
/// only code that attaches or detaches; this type only reads records, on the pipeline thread.
final class TLSKeySource: LiveSecretsProvider, @unchecked Sendable {
    let sessions: SessionTable
    let eventsMapFD: Int32
    private let logger: Logger
    private(set) var malformed: UInt64 = 0

    init(eventsMapFD: Int32, maxSessionIdleNs: UInt64, logger: Logger) {
        self.eventsMapFD = eventsMapFD
        sessions = SessionTable(maxIdleNs: maxSessionIdleNs)
        self.logger = logger
    }

    /// Lines to write now (new secrets only: the other end of a local connection may have reported
    /// them already) and when the library derived them. Called on the pipeline thread.
    func accept(_ raw: UnsafeRawBufferPointer, clock: MonotonicToWall) -> (lines: [KeyLogLine], wallNs: UInt64) {
        guard let event = TLSKeyEvent.decode(raw) else {
            malformed += 1
            return ([], 0)
        }
        let wall = clock.wallNs(fromMonotonic: event.timestampNs)
        return (sessions.record(event.line, wallNs: wall) ? [event.line] : [], wall)
    }

    /// Forgets sessions idle longer than `max-session-idle`.
    func expire(nowWallNs: UInt64) {
        sessions.expire(nowWallNs: nowWallNs)
    }

    var liveSessionCount: Int { sessions.counts.sessions }

    func liveSecrets(nowWallNs: UInt64) -> [KeyLogLine] {
        sessions.liveSecrets(nowWallNs: nowWallNs)
    }
}
