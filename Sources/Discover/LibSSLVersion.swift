import Glibc

/// An OpenSSL release as named by its `OPENSSL_VERSION_TEXT`, e.g. "OpenSSL 3.0.19 27 Jan 2026".
public struct OpenSSLVersion: Hashable, Sendable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public var patch: Int
    /// The whole version text as found in the binary (no key material: safe to log and show).
    public var text: String

    public var description: String { text }
    /// "3.0", "1.1": the series whose struct layouts are alike.
    public var series: String { "\(major).\(minor)" }

    /// Parses "OpenSSL 3.0.19 27 Jan 2026" or "OpenSSL 1.1.1w  11 Sep 2023".
    public init?(text: String) {
        guard text.hasPrefix("OpenSSL ") else { return nil }
        let number = text.dropFirst("OpenSSL ".count).prefix { $0.isNumber || $0 == "." }
        let parts = number.split(separator: ".").compactMap { Int($0) }
        guard parts.count == 3 else { return nil }
        (major, minor, patch) = (parts[0], parts[1], parts[2])
        self.text = text
    }

    /// Finds the version text in an ELF image (libcrypto's `.rodata`, or a static binary's).
    static func find(in image: ELFImage) -> OpenSSLVersion? {
        let marker = Array("OpenSSL ".utf8)
        let bytes = image.bytes
        guard let base = bytes.baseAddress else { return nil }
        var offset = 0
        // memchr to each 'O' keeps this fast on a 100 MB static binary.
        while offset < bytes.count - 40 {
            guard let hit = memchr(base + offset, Int32(UInt8(ascii: "O")), bytes.count - offset - 40) else { return nil }
            let at = base.distance(to: UnsafeRawPointer(hit))
            offset = at + 1
            guard marker.indices.allSatisfy({ bytes[at + $0] == marker[$0] }),
                  (UInt8(ascii: "1")...UInt8(ascii: "9")).contains(bytes[at + marker.count]) else { continue }
            // OPENSSL_VERSION_TEXT is a whole NUL-terminated string: "OpenSSL X.Y.Z[letter] DD Mon YYYY".
            guard at == 0 || bytes[at - 1] == 0, let text = image.cString(at: at), text.count < 64,
                  let version = OpenSSLVersion(text: text), text.split(separator: " ").count >= 5 else { continue }
            return version
        }
        return nil
    }
}

/// Where OpenSSL keeps `s3.client_random` inside the `SSL` object (`SSL_CONNECTION` from 3.2), per
/// release series. Needed only for builds where the compiler inlined `nss_keylog_int` into
/// `ssl_log_secret`, so the hook sees the SSL object instead of the client random. Each row was read
/// off the code of `ssl_log_secret` of the named build and confirmed by a handshake with known keys
/// (Tests/TLSKeysTests). Supporting another release is one more row here; without a row such a target
/// is refused, never guessed.
public enum OpenSSLLayout {
    public struct Row: Sendable {
        public var series: String
        /// 1.1.1 keeps s3 behind a pointer in SSL (`ssl->s3->client_random`); 3.x embeds it (nil).
        public var s3PointerOffset: UInt64?
        public var clientRandomOffset: UInt64
        public var measuredOn: String
    }

    public static let rows: [Row] = [
        Row(series: "1.1", s3PointerOffset: 0xa8, clientRandomOffset: 0xb8, measuredOn: "psycopg2-binary 2.9.5 wheel (OpenSSL 1.1.1r)"),
        Row(series: "3.0", s3PointerOffset: nil, clientRandomOffset: 0x160, measuredOn: "node 20.20.2 (static OpenSSL 3.0.19)"),
        Row(series: "3.5", s3PointerOffset: nil, clientRandomOffset: 0x188, measuredOn: "psycopg2-binary 2.9.13 wheel (OpenSSL 3.5.8)"),
    ]

    public static func row(for version: OpenSSLVersion) -> Row? {
        rows.first { $0.series == version.series }
    }
}
