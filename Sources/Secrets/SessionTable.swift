import Synchronization
import TapCore

/// The TLS sessions whose secrets tlstap has seen, keyed by client random: the source of the DSBs at
/// the head of each new segment (contract guarantee 3) and the dedupe point for secrets reported by
/// both ends of a local connection (client and server process each run the uprobe).
///
/// A session is live while it was seen within `maxIdleNs` (`--max-session-idle`): "seen" is the
/// arrival of one of its secrets, or `touch(clientRandom:)` from whoever knows the connection is still
/// used. Memory is bounded by `maxSessions`: when full, the least recently seen tenth goes.
/// Thread-safe: the ring consumer records, the segment writer reads.
public final class SessionTable: LiveSecretsProvider, Sendable {
    struct Session {
        var lines: [KeyLogLine] = []
        var lastSeenWallNs: UInt64
    }

    struct State {
        var sessions: [[UInt8]: Session] = [:]
        var duplicates: UInt64 = 0
        var evicted: UInt64 = 0
    }

    public let maxIdleNs: UInt64
    public let maxSessions: Int
    private let state = Mutex(State())

    public init(maxIdleNs: UInt64, maxSessions: Int = 100_000) {
        precondition(maxSessions > 0, "a session table holds at least one session")
        self.maxIdleNs = maxIdleNs
        self.maxSessions = maxSessions
    }

    /// Adds one secret; returns true if it is new (write it out), false for a duplicate of a
    /// (client random, label) already held — the other end of the same session reported it.
    @discardableResult
    public func record(_ line: KeyLogLine, wallNs: UInt64) -> Bool {
        state.withLock { state in
            if var session = state.sessions[line.clientRandom] {
                session.lastSeenWallNs = max(session.lastSeenWallNs, wallNs)
                let duplicate = session.lines.contains { $0.label == line.label }
                if !duplicate { session.lines.append(line) }
                state.sessions[line.clientRandom] = session
                if duplicate { state.duplicates += 1 }
                return !duplicate
            }
            if state.sessions.count >= maxSessions { evictOldest(&state) }
            state.sessions[line.clientRandom] = Session(lines: [line], lastSeenWallNs: wallNs)
            return true
        }
    }

    /// Marks a session as still in use (e.g. its connection carried packets).
    public func touch(clientRandom: [UInt8], wallNs: UInt64) {
        state.withLock { state in
            if let session = state.sessions[clientRandom], session.lastSeenWallNs < wallNs {
                state.sessions[clientRandom]?.lastSeenWallNs = wallNs
            }
        }
    }

    /// Secrets of every session seen within `maxIdleNs` before `nowWallNs`; forgets the older ones.
    /// Ordered by client random then label, so consecutive segments carry identical heads.
    public func liveSecrets(nowWallNs: UInt64) -> [KeyLogLine] {
        state.withLock { state in
            forgetIdle(&state, nowWallNs: nowWallNs)
            return state.sessions.sorted { $0.key.lexicographicallyPrecedes($1.key) }
                .flatMap { $0.value.lines.sorted { $0.label < $1.label } }
        }
    }

    /// Forgets the sessions idle longer than `maxIdleNs` (the daemon calls this once a second).
    public func expire(nowWallNs: UInt64) {
        state.withLock { forgetIdle(&$0, nowWallNs: nowWallNs) }
    }

    private func forgetIdle(_ state: inout State, nowWallNs: UInt64) {
        let oldest = nowWallNs > maxIdleNs ? nowWallNs - maxIdleNs : 0
        state.sessions = state.sessions.filter { $0.value.lastSeenWallNs >= oldest }
    }

    /// Counters for `status`: sessions held, duplicate secrets dropped, sessions evicted for room.
    public var counts: (sessions: Int, duplicates: UInt64, evicted: UInt64) {
        state.withLock { ($0.sessions.count, $0.duplicates, $0.evicted) }
    }

    /// Frees a tenth of the table at once (least recently seen first), so a full table costs one sort
    /// per tenth of its size in new sessions, not a scan per session.
    private func evictOldest(_ state: inout State) {
        let victims = state.sessions.sorted { $0.value.lastSeenWallNs < $1.value.lastSeenWallNs }.prefix(max(1, maxSessions / 10))
        for victim in victims { state.sessions.removeValue(forKey: victim.key) }
        state.evicted += UInt64(victims.count)
    }
}
