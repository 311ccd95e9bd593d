/// One line of the NSS key log format (https://firefox-source-docs.mozilla.org/security/nss/legacy/key_log_format/):
/// `LABEL <client_random hex> <secret hex>`. This is what a DSB carries and what Wireshark reads.
/// Deliberately not CustomStringConvertible: key material must never be interpolated into a log.
public struct KeyLogLine: Hashable, Sendable {
    public var label: String
    public var clientRandom: [UInt8]
    public var secret: [UInt8]

    public init(label: String, clientRandom: [UInt8], secret: [UInt8]) {
        self.label = label
        self.clientRandom = clientRandom
        self.secret = secret
    }

    /// The text line, without a trailing newline.
    public var text: String { "\(label) \(clientRandom.hexString) \(secret.hexString)" }

    /// Parses one key-log line; nil for comments, blank lines or anything malformed.
    public init?(text line: Substring) {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count == 3, !fields[0].hasPrefix("#"),
              let random = [UInt8](hex: fields[1]), let secret = [UInt8](hex: fields[2]) else { return nil }
        self.init(label: String(fields[0]), clientRandom: random, secret: secret)
    }

    /// Parses a key-log text (several lines), skipping what is not a key line.
    public static func parse(_ text: String) -> [KeyLogLine] {
        text.split(whereSeparator: \.isNewline).compactMap { KeyLogLine(text: $0) }
    }
}

extension Array where Element == UInt8 {
    public var hexString: String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(count * 2)
        for byte in self {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public init?<S: StringProtocol>(hex: S) {
        let chars = Array(hex.utf8)
        guard chars.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity(chars.count / 2)
        var index = 0
        while index < chars.count {
            guard let high = nibble(chars[index]), let low = nibble(chars[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        self = bytes
    }
}
