import Glibc
import Logging
import TapCore

/// Everything `tlstap run` can be told, from flags, `/etc/tlstap/tlstap.toml` or the built-in defaults
/// (a flag beats the file, the file beats the default). Each property is one config key and one flag of
/// the same name; `ConfigKey` holds that name and how its value is parsed.
public struct TapConfig: Equatable, Sendable {
    /// Where finished and in-progress segments live (`StateDirectory=tlstap` makes /var/lib/tlstap).
    public var segmentDirectory: String = "/var/lib/tlstap/segments"
    /// Segment length; segments start at wall-clock multiples of it (5m → :00, :05, …).
    public var rotateEvery: Duration = .seconds(300)
    /// How often the open segment is flushed so that all of it decodes (what survives a crash).
    public var flushEvery: Duration = .seconds(1)
    /// How long packets are held back so TLS keys learned at handshake end can be written first.
    public var reorderWindow: Duration = .milliseconds(500)
    /// Bytes kept of each packet (64 … 262144).
    public var snaplen: UInt32 = 262_144
    /// Retention: oldest segments are deleted while the total exceeds this.
    public var maxTotalSizeBytes: UInt64 = 10 << 30
    /// Retention: segments that ended longer ago than this are deleted.
    public var maxAge: Duration = .seconds(7 * 86_400)
    /// A TLS session unseen for this long no longer has its secrets repeated at the head of new segments.
    public var maxSessionIdle: Duration = .seconds(600)
    /// Interfaces to capture: globs matched against `eth0` and `netns:4026532301/eth0`.
    public var interfaces: [String] = ["*"]
    /// Interfaces never captured, same glob forms; an exclusion beats an inclusion.
    public var excludeInterfaces: [String] = []
    /// Size of the BPF ring buffer packets travel through (a power of two; bigger absorbs longer bursts).
    public var ringBufferSizeBytes: UInt64 = 64 << 20
    /// Copies of one packet seen on several interfaces (veth ends, bridge ports): "drop" keeps the first
    /// (each packet once, on the first interface it crossed), "keep" records every copy on its interface.
    public var keepDuplicates: Bool = false
    /// zstd compression level of segments (1 fast … 19 small).
    public var zstdLevel: Int32 = 1
    /// Least severe log level written (trace, debug, info, notice, warning, error, critical).
    public var logLevel: Logger.Level = .info

    public init() {}

    public static let defaults = TapConfig()
    /// Where `tlstap run` looks when `--config` is not given; absent means built-in defaults.
    public static let defaultFilePath = "/etc/tlstap/tlstap.toml"

    /// Whether packets of this interface are captured: some inclusion glob and no exclusion glob matches
    /// its plain name or its namespace-qualified name (`netns:<inode>/<ifname>`).
    public func captures(interface name: String, netnsInode: UInt64) -> Bool {
        let forms = [name, "netns:\(netnsInode)/\(name)"]
        func matches(_ globs: [String]) -> Bool {
            globs.contains { glob in forms.contains { fnmatch(glob, $0, 0) == 0 } }
        }
        return matches(interfaces) && !matches(excludeInterfaces)
    }

    public func captures(_ interface: InterfaceInfo) -> Bool {
        captures(interface: interface.name, netnsInode: interface.key.netnsInode)
    }

    /// The keys whose values differ, each with old and new value in config spelling; for logging a reload.
    public func changes(from old: TapConfig) -> [(key: ConfigKey, old: String, new: String)] {
        ConfigKey.allCases.compactMap { key in
            let before = key.render(old), after = key.render(self)
            return before == after ? nil : (key, before, after)
        }
    }
}

extension Duration {
    /// Whole nanoseconds (durations here come from `Units.parseDuration`, so they are exact).
    public var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        return UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
    }
}
