/// Parsing of the contract's human units: durations (`500ms`, `5s`, `10m`, `7d`) and sizes
/// (`64K`, `512M`, `10G`). Flags and config values use the same words, so one parser serves both.
public enum UnitParseError: Error, Equatable, CustomStringConvertible {
    case badDuration(String)
    case badSize(String)

    public var description: String {
        switch self {
        case .badDuration(let text):
            return "'\(text)' is not a duration: use a whole number with a unit, e.g. 500ms, 5s, 10m, 2h, 7d"
        case .badSize(let text):
            return "'\(text)' is not a size: use a whole number of bytes or one with a suffix, e.g. 64K, 512M, 10G"
        }
    }
}

public enum Units {
    private static let durationUnits: [(suffix: String, nanoseconds: UInt64)] = [
        ("ns", 1), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000),
        ("m", 60_000_000_000), ("h", 3_600_000_000_000), ("d", 86_400_000_000_000),
    ]

    /// A positive duration in nanoseconds.
    public static func parseDuration(_ text: String) throws(UnitParseError) -> UInt64 {
        let trimmed = text.trimmingWhitespace()
        let digits = trimmed.prefix { $0.isASCII && $0.isNumber }
        let suffix = trimmed.dropFirst(digits.count)
        guard !digits.isEmpty, let value = UInt64(digits), value > 0,
              let unit = durationUnits.first(where: { $0.suffix == suffix }) else {
            throw .badDuration(text)
        }
        let (product, overflow) = value.multipliedReportingOverflow(by: unit.nanoseconds)
        guard !overflow else { throw .badDuration(text) }
        return product
    }

    /// A positive size in bytes; suffixes are binary (K = 1024).
    public static func parseSize(_ text: String) throws(UnitParseError) -> UInt64 {
        let trimmed = text.trimmingWhitespace()
        let digits = trimmed.prefix { $0.isASCII && $0.isNumber }
        var suffix = trimmed.dropFirst(digits.count).uppercased()
        if suffix.hasSuffix("IB") { suffix.removeLast(2) } else if suffix.hasSuffix("B") && suffix.count == 2 { suffix.removeLast() }
        let multipliers: [String: UInt64] = ["": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        guard !digits.isEmpty, let value = UInt64(digits), value > 0, let multiplier = multipliers[suffix] else {
            throw .badSize(text)
        }
        let (product, overflow) = value.multipliedReportingOverflow(by: multiplier)
        guard !overflow else { throw .badSize(text) }
        return product
    }

    /// The shortest exact spelling of a duration, for messages and `--help` defaults.
    public static func formatDuration(_ nanoseconds: UInt64) -> String {
        for unit in durationUnits.reversed() where nanoseconds % unit.nanoseconds == 0 {
            return "\(nanoseconds / unit.nanoseconds)\(unit.suffix)"
        }
        return "\(nanoseconds)ns"
    }

    public static func formatSize(_ bytes: UInt64) -> String {
        for (suffix, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] where bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return "\(bytes >> shift)\(suffix)"
        }
        return "\(bytes)"
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        let scalars = unicodeScalars.drop { $0.properties.isWhitespace }
        var result = String(String.UnicodeScalarView(scalars))
        while let last = result.unicodeScalars.last, last.properties.isWhitespace { result.unicodeScalars.removeLast() }
        return result
    }
}
