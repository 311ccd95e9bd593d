import TapCore

/// One TLS secret as the uprobe reported it: `struct tlskeys_event` of bpf/tlskeys.h, decoded.
/// Deliberately not CustomStringConvertible: it carries key material.
public struct TLSKeyEvent: Hashable, Sendable {
    /// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns), the clock of captured packets.
    public var timestampNs: UInt64
    /// The process that derived the secret (client or server side).
    public var pid: UInt32
    public var line: KeyLogLine

    /// Byte layout of `struct tlskeys_event` (bpf/tlskeys.h); Tests/TLSKeysTests pins it against the
    /// BTF of the compiled object.
    public enum Layout {
        public static let timestampNs = 0
        public static let pid = 8
        public static let hook = 12
        public static let secretLength = 16
        public static let readErrors = 20
        public static let label = 24
        public static let labelMax = 32
        public static let clientRandom = 56
        public static let clientRandomLength = 32
        public static let secret = 88
        public static let secretMax = 64
        public static let size = 152
    }

    /// The NSS key-log labels OpenSSL emits; anything else in a record means it was misread.
    public static let knownLabels: Set<String> = [
        "CLIENT_RANDOM",
        "CLIENT_EARLY_TRAFFIC_SECRET", "EARLY_EXPORTER_SECRET",
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0", "EXPORTER_SECRET",
    ]

    public init(timestampNs: UInt64, pid: UInt32, line: KeyLogLine) {
        self.timestampNs = timestampNs
        self.pid = pid
        self.line = line
    }

    /// Decodes one ring record; nil if it is short, was not fully readable in the process, or does not
    /// look like an NSS secret (unknown label, bad length) — such records are counted, not used.
    public static func decode(_ record: UnsafeRawBufferPointer) -> TLSKeyEvent? {
        guard record.count >= Layout.size else { return nil }
        func u32(_ offset: Int) -> UInt32 { UInt32(littleEndian: record.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
        guard u32(Layout.readErrors) == 0 else { return nil }
        let secretLength = Int(u32(Layout.secretLength))
        guard (16...Layout.secretMax).contains(secretLength) else { return nil }
        let labelBytes = record[Layout.label..<(Layout.label + Layout.labelMax)].prefix { $0 != 0 }
        let label = String(decoding: labelBytes, as: UTF8.self)
        guard knownLabels.contains(label) else { return nil }
        let random = Array(record[Layout.clientRandom..<(Layout.clientRandom + Layout.clientRandomLength)])
        guard random.contains(where: { $0 != 0 }) else { return nil }
        let secret = Array(record[Layout.secret..<(Layout.secret + secretLength)])
        return TLSKeyEvent(timestampNs: UInt64(littleEndian: record.loadUnaligned(fromByteOffset: Layout.timestampNs, as: UInt64.self)),
                           pid: u32(Layout.pid),
                           line: KeyLogLine(label: label, clientRandom: random, secret: secret))
    }
}
