import Glibc

/// Segment file names: `YYYY-MM-DDTHH-MM-SSZ.pcapng.zst`, the UTC start of the segment, so names sort
/// by time. While written, a segment carries `.partial` after that, so no glob for finished ones
/// matches it.
public enum SegmentName {
    public static let finishedSuffix = ".pcapng.zst"
    public static let partialSuffix = ".pcapng.zst.partial"

    /// The name stem (`2026-11-25T10-05-00Z`) for a start time; sub-second parts are dropped.
    public static func stem(startNs: UInt64) -> String {
        var seconds = time_t(startNs / 1_000_000_000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour))-\(two(parts.tm_min))-\(two(parts.tm_sec))Z"
    }

    public static func finished(startNs: UInt64) -> String { stem(startNs: startNs) + finishedSuffix }

    /// The start time a finished or partial name encodes, nil for names that are not segments.
    public static func startNs(of fileName: String) -> UInt64? {
        let stem: Substring
        if fileName.hasSuffix(partialSuffix) {
            stem = fileName.dropLast(partialSuffix.count)
        } else if fileName.hasSuffix(finishedSuffix) {
            stem = fileName.dropLast(finishedSuffix.count)
        } else {
            return nil
        }
        let chars = Array(stem.utf8)
        guard chars.count == 20, chars[4] == UInt8(ascii: "-"), chars[7] == UInt8(ascii: "-"),
              chars[10] == UInt8(ascii: "T"), chars[13] == UInt8(ascii: "-"), chars[16] == UInt8(ascii: "-"),
              chars[19] == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int32? {
            var value: Int32 = 0
            for c in chars[range] {
                guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int32(c - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
              let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        var parts = tm()
        parts.tm_year = year - 1900
        parts.tm_mon = month - 1
        parts.tm_mday = day
        parts.tm_hour = hour
        parts.tm_min = minute
        parts.tm_sec = second
        let seconds = timegm(&parts)
        guard seconds >= 0 else { return nil }
        return UInt64(seconds) * 1_000_000_000
    }
}
