import PcapNG
import TapCore

/// Where segments live unless told otherwise (the config file may name another directory).
public enum SegmentDefaults {
    public static let directory = "/var/lib/tlstap/segments"
}

/// What `tlstap segments` shows for one finished segment, read by streaming through it.
public struct SegmentSummary: Sendable {
    public var entry: SegmentEntry
    public var endNs: UInt64
    public var packets: UInt64
    /// Distinct client randoms among the segment's DSB lines: TLS sessions it can decrypt.
    public var tlsSessions: Int

    public static func read(_ entry: SegmentEntry) throws -> SegmentSummary {
        let reader = try SegmentReader.open(path: entry.path)
        var packets: UInt64 = 0
        var randoms = Set<[UInt8]>()
        var endNs = entry.startNs
        var sawSection = false
        while let block = try reader.next() {
            sawSection = true
            switch block {
            case .packet(let packet):
                packets += 1
                endNs = max(endNs, packet.timestampNs)
            case .secrets(let secrets):
                for line in secrets.keyLogLines { randoms.insert(line.clientRandom) }
            case .statistics(let statistics):
                endNs = max(endNs, statistics.endNs ?? statistics.timestampNs)
            default:
                break
            }
        }
        guard sawSection else { throw PcapNGError(offset: 0, "the segment is empty") }
        return SegmentSummary(entry: entry, endNs: endNs, packets: packets, tlsSessions: randoms.count)
    }
}

/// Times on the command line: RFC 3339 (`2026-11-25T10:05:00Z`, `…T10:05:00.5+01:00`) or a
/// duration ago (`10m` = ten minutes before now, units as `Units.parseDuration`).
public enum TimeBound {
    public struct ParseError: Error, CustomStringConvertible {
        public var text: String
        public var description: String {
            "'\(text)' is not a time: use RFC 3339 (2026-11-25T10:05:00Z) or a duration ago (90s, 10m, 2h, 7d)"
        }
    }

    public static func parse(_ text: String, nowNs: UInt64) throws(ParseError) -> UInt64 {
        if let ago = try? Units.parseDuration(text) {
            return nowNs > ago ? nowNs - ago : 0
        }
        guard let time = parseRFC3339(text) else { throw ParseError(text: text) }
        return time
    }

    static func parseRFC3339(_ text: String) -> UInt64? {
        let c = Array(text.utf8)
        func digits(_ start: Int, _ count: Int) -> Int64? {
            guard start + count <= c.count else { return nil }
            var value: Int64 = 0
            for byte in c[start..<start + count] {
                guard byte >= 48, byte <= 57 else { return nil }
                value = value * 10 + Int64(byte - 48)
            }
            return value
        }
        guard c.count >= 20, c[4] == 45, c[7] == 45, [84, 116, 32].contains(c[10]), c[13] == 58, c[16] == 58,
              let year = digits(0, 4), let month = digits(5, 2), let day = digits(8, 2),
              let hour = digits(11, 2), let minute = digits(14, 2), let second = digits(17, 2),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        var index = 19
        var fractionNs: Int64 = 0
        if c[index] == 46 { // '.'
            index += 1
            var scale: Int64 = 100_000_000
            let first = index
            while index < c.count, c[index] >= 48, c[index] <= 57 {
                fractionNs += Int64(c[index] - 48) * scale
                scale /= 10
                index += 1
            }
            guard index > first else { return nil }
        }
        guard index < c.count else { return nil }
        var offsetSeconds: Int64 = 0
        switch c[index] {
        case 90, 122: // Z, z
            guard index + 1 == c.count else { return nil }
        case 43, 45: // + -
            guard index + 6 == c.count, c[index + 3] == 58, let h = digits(index + 1, 2), let m = digits(index + 4, 2) else { return nil }
            offsetSeconds = (h * 3600 + m * 60) * (c[index] == 43 ? 1 : -1)
        default:
            return nil
        }
        // Days from the civil date (proleptic Gregorian), then seconds.
        let y = month <= 2 ? year - 1 : year
        let era = y / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
        guard seconds >= 0 else { return nil }
        return UInt64(seconds) * 1_000_000_000 + UInt64(fractionNs)
    }

    /// RFC 3339 in UTC, with the fraction only when there is one.
    public static func format(_ ns: UInt64) -> String {
        let stem = SegmentName.stem(startNs: ns) // 2026-11-25T10-05-00Z
        let chars = Array(stem)
        let date = String(chars[0..<10])
        let time = "\(String(chars[11..<13])):\(String(chars[14..<16])):\(String(chars[17..<19]))"
        let fraction = ns % 1_000_000_000
        guard fraction != 0 else { return "\(date)T\(time)Z" }
        var digits = String(fraction)
        digits = String(repeating: "0", count: 9 - digits.count) + digits
        while digits.hasSuffix("0") { digits.removeLast() }
        return "\(date)T\(time).\(digits)Z"
    }
}
