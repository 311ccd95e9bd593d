import Glibc

/// Converts the kernel's monotonic time (what `bpf_ktime_get_ns` returns) to wall-clock time.
///
/// The offset between CLOCK_REALTIME and CLOCK_MONOTONIC is sampled as the reading with the
/// narrowest monotonic bracket around a realtime read, which bounds the error by that bracket
/// (typically < 1 µs). `refresh()` re-samples so NTP slews and steps are followed; it is cheap.
public struct MonotonicToWall: Sendable {
    public private(set) var offsetNs: Int64

    public init() {
        offsetNs = 0
        refresh()
    }

    public mutating func refresh() {
        var best: (width: Int64, offset: Int64)? = nil
        for _ in 0..<8 {
            let before = Self.now(CLOCK_MONOTONIC)
            let wall = Self.now(CLOCK_REALTIME)
            let after = Self.now(CLOCK_MONOTONIC)
            let width = after - before
            let offset = wall - (before + width / 2)
            if best == nil || width < best!.width { best = (width, offset) }
        }
        offsetNs = best!.offset
    }

    public func wallNs(fromMonotonic monotonicNs: UInt64) -> UInt64 {
        UInt64(Int64(bitPattern: monotonicNs) + offsetNs)
    }

    public static func now(_ clock: clockid_t) -> Int64 {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    public static func monotonicNowNs() -> UInt64 { UInt64(now(CLOCK_MONOTONIC)) }
    public static func wallNowNs() -> UInt64 { UInt64(now(CLOCK_REALTIME)) }
}
