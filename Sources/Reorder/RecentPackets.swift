import TapCore

/// The packets the copy filter saw within its window: fingerprint → when and on which interface.
///
/// One cache line per lookup. The fingerprint (a SipHash value) picks a 64-byte bucket of four
/// 16-byte entries; an entry older than the window is free, so nothing is ever deleted or swept.
/// (An open-addressing table of full entries in two generations took two cache misses per packet,
/// 13 % of the daemon's CPU under HTTPS load.) A full bucket evicts its oldest entry: at worst a later
/// copy of that packet is not recognised and is written once more — never a packet dropped. The table
/// doubles when a window's worth of packets passes a quarter of its entries, so that stays rare.
///
/// Times are kept in 1.024 µs units (ns >> 10) in 32 bits, compared by wrapping difference: exact
/// enough for a window of milliseconds, and it wraps only after 73 minutes. Interfaces are kept as a
/// 16-bit tag; two interfaces with the same tag look alike, which can only keep a copy, not drop a packet.
struct RecentPackets {
    private struct Entry {
        /// 0: never used (fingerprints are stored with the low bit set).
        var fingerprint: UInt64 = 0
        var timeUnits: UInt32 = 0
        var interfaceTag: UInt16 = 0
        var unused: UInt16 = 0
    }

    static let entriesPerBucket = 4
    private let windowUnits: UInt32
    private var entries: [Entry]
    private var bucketMask: Int
    /// Inserts since `periodStartUnits`; more than a quarter of the entries in one window grows the table.
    private var insertsThisPeriod = 0
    private var periodStartUnits: UInt32 = 0

    init(windowNs: UInt64, initialBuckets: Int = 1024) {
        precondition(initialBuckets > 0 && initialBuckets & (initialBuckets - 1) == 0, "buckets: a power of two")
        windowUnits = UInt32(min(windowNs >> 10, UInt64(UInt32.max / 2)))
        entries = [Entry](repeating: Entry(), count: initialBuckets * Self.entriesPerBucket)
        bucketMask = initialBuckets - 1
    }

    static func units(_ ns: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: ns >> 10) }

    static func tag(_ interface: InterfaceKey) -> UInt16 {
        let mixed = (interface.netnsInode ^ UInt64(interface.ifindex) &* 0x9E37_79B9_7F4A_7C15) &* 0xBF58_476D_1CE4_E5B9
        return UInt16(truncatingIfNeeded: mixed >> 48)
    }

    /// True if a live entry holds `fingerprint` from another interface: the packet is a copy, and is
    /// not recorded. Otherwise records this sighting (a repeat on the same interface refreshes it).
    mutating func isCopy(_ fingerprint: UInt64, timeNs: UInt64, interface: InterfaceKey) -> Bool {
        let now = Self.units(timeNs)
        let key = fingerprint | 1
        let tag = Self.tag(interface)
        let base = bucket(of: key)
        var free = -1
        var oldest = base
        for index in base..<base + Self.entriesPerBucket {
            let entry = entries[index]
            let live = entry.fingerprint != 0 && now &- entry.timeUnits <= windowUnits
            if live && entry.fingerprint == key {
                if entry.interfaceTag != tag { return true }
                entries[index].timeUnits = now
                return false
            }
            if !live && free < 0 { free = index }
            if now &- entry.timeUnits > now &- entries[oldest].timeUnits { oldest = index }
        }
        entries[free >= 0 ? free : oldest] = Entry(fingerprint: key, timeUnits: now, interfaceTag: tag)
        countInsert(now)
        return false
    }

    private func bucket(of key: UInt64) -> Int {
        (Int(truncatingIfNeeded: key >> 1) & bucketMask) * Self.entriesPerBucket
    }

    private mutating func countInsert(_ now: UInt32) {
        if now &- periodStartUnits > windowUnits {
            periodStartUnits = now
            insertsThisPeriod = 0
        }
        insertsThisPeriod += 1
        if insertsThisPeriod * 4 > entries.count { grow(now) }
    }

    /// Doubles the buckets and re-places the live entries.
    private mutating func grow(_ now: UInt32) {
        let old = entries
        entries = [Entry](repeating: Entry(), count: old.count * 2)
        bucketMask = (bucketMask << 1) | 1
        insertsThisPeriod = 0
        for entry in old where entry.fingerprint != 0 && now &- entry.timeUnits <= windowUnits {
            let base = bucket(of: entry.fingerprint)
            if let slot = (base..<base + Self.entriesPerBucket).first(where: { entries[$0].fingerprint == 0 }) {
                entries[slot] = entry
            }
        }
    }

    var bucketCount: Int { bucketMask + 1 }
}
