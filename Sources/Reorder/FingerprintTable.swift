import TapCore

/// An open-addressing hash table from packet fingerprints (already SipHash values, so their low bits
/// index it directly) to where and when that packet was seen. Emptied in O(1): each slot carries the
/// stamp of the filling it belongs to, and `removeAll` moves to a new stamp. Grows as needed and
/// keeps its capacity, which is what the busiest window needed.
struct FingerprintTable {
    struct Seen {
        var timeNs: UInt64
        var interface: InterfaceKey
    }

    private struct Slot {
        var fingerprint: UInt64 = 0
        var seen = Seen(timeNs: 0, interface: InterfaceKey(netnsInode: 0, ifindex: 0))
        /// The filling this slot belongs to; 0 is never a live stamp.
        var stamp: UInt32 = 0
    }

    private var slots = [Slot](repeating: Slot(), count: 1024)
    private var stamp: UInt32 = 1
    private(set) var count = 0

    func find(_ fingerprint: UInt64) -> Seen? {
        let mask = slots.count - 1
        var index = Int(truncatingIfNeeded: fingerprint) & mask
        while slots[index].stamp == stamp {
            if slots[index].fingerprint == fingerprint { return slots[index].seen }
            index = (index + 1) & mask
        }
        return nil
    }

    /// Adds or replaces the entry for `fingerprint`.
    mutating func insert(_ fingerprint: UInt64, _ seen: Seen) {
        if (count + 1) * 2 > slots.count { grow() }
        let mask = slots.count - 1
        var index = Int(truncatingIfNeeded: fingerprint) & mask
        while slots[index].stamp == stamp {
            if slots[index].fingerprint == fingerprint {
                slots[index].seen = seen
                return
            }
            index = (index + 1) & mask
        }
        slots[index] = Slot(fingerprint: fingerprint, seen: seen, stamp: stamp)
        count += 1
    }

    mutating func removeAll() {
        count = 0
        stamp &+= 1
        if stamp == 0 { // wrapped after 2^32 fillings: old stamps could look live again
            slots = [Slot](repeating: Slot(), count: slots.count)
            stamp = 1
        }
    }

    private mutating func grow() {
        let old = slots
        let liveStamp = stamp
        slots = [Slot](repeating: Slot(), count: old.count * 2)
        stamp = 1
        count = 0
        for slot in old where slot.stamp == liveStamp { insert(slot.fingerprint, slot.seen) }
    }
}
