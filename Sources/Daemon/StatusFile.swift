import FoundationEssentials
import Discover
import Glibc
import TapCore

/// What `tlstap status` shows: the running daemon writes it to /run/tlstap/status.json (atomically,
/// about once a second) and the CLI reads it. Counters and names only — never key material.
public struct DaemonStatus: Codable, Sendable {
    public struct Interface: Codable, Sendable {
        public var name: String            // netns:<inode>/<ifname>
        public var description: String
        public var received: UInt64
        public var droppedByRing: UInt64
        public var droppedByTapper: UInt64
    }
    public struct Namespace: Codable, Sendable {
        public var inode: UInt64
        public var origin: String
        public var interfaces: [Interface]
    }
    public struct Library: Codable, Sendable {
        public var path: String
        public var kind: String            // shared / static
        public var version: String
        public var state: String           // attached / found / refused: why
    }
    public var pid: Int32
    public var version: String
    public var startedAt: String           // RFC 3339
    public var updatedAt: String
    public var segmentDirectory: String
    public var currentSegment: String?
    public var namespaces: [Namespace]
    public var libraries: [Library]
    public var packets: UInt64
    public var bytes: UInt64
    public var drops: UInt64
    public var sessions: Int
    public var keys: UInt64
    public var lateKeys: UInt64
    /// Copies of packets already recorded from another interface (duplicates = "drop").
    public var duplicates: UInt64

    /// systemd sets RUNTIME_DIRECTORY for `RuntimeDirectory=tlstap`; elsewhere /run/tlstap.
    public static func defaultPath(environment runtimeDirectory: String?) -> String {
        (runtimeDirectory ?? "/run/tlstap") + "/status.json"
    }

    public func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(self)
        let temporary = path + ".tmp"
        try data.write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, path) == 0 else { throw SystemError("rename \(temporary) to \(path)", errno: errno) }
    }

    public static func read(from path: String) throws -> DaemonStatus {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try JSONDecoder().decode(DaemonStatus.self, from: data)
    }
}

public func rfc3339(wallNs: UInt64) -> String {
    var seconds = time_t(wallNs / 1_000_000_000)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
    let date = "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))"
    return date + "T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
}

extension DaemonStatus.Library {
    init(_ target: LibSSLTarget) {
        let state: String
        switch target.state {
        case .attached: state = "attached"
        case .found: state = "found"
        case .refused(let reason): state = "refused: \(reason)"
        }
        self.init(path: target.displayPath, kind: target.kind.rawValue, version: target.version?.text ?? "unknown",
                  state: state)
    }
}
