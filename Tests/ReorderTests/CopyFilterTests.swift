import Testing
import TapCore
@testable import Reorder

@Suite struct CopyFilterTests {
    let a = InterfaceKey(netnsInode: 1, ifindex: 2)
    let b = InterfaceKey(netnsInode: 3, ifindex: 2)

    /// An Ethernet frame carrying a minimal IPv4 header with the given TTL and checksum, then payload.
    func frame(ttl: UInt8, checksum: UInt16, payload: UInt8, mac: UInt8 = 0xaa) -> [UInt8] {
        let ethernet: [UInt8] = Array(repeating: mac, count: 12) + [0x08, 0x00]
        let ip: [UInt8] = [0x45, 0, 0, 21, 0, 1, 0x40, 0, ttl, 17, UInt8(checksum >> 8), UInt8(checksum & 0xff),
                           198, 18, 0, 1, 198, 18, 0, 2]
        return ethernet + ip + [payload]
    }

    func packet(_ data: [UInt8], on interface: InterfaceKey, at time: UInt64) -> CapturedPacket {
        CapturedPacket(interface: interface, timestampNs: time, direction: .outbound,
                       originalLength: UInt32(data.count), data: data)
    }

    func isCopy(_ filter: inout CopyFilter, _ data: [UInt8], on interface: InterfaceKey, at time: UInt64) -> Bool {
        packet(data, on: interface, at: time).withView { filter.isCopy($0, networkOffset: 14) }
    }

    @Test func aCopyOnAnotherInterfaceIsRecognisedDespiteRoutingChanges() {
        var filter = CopyFilter(windowNs: 50_000_000)
        var copy = isCopy(&filter, frame(ttl: 64, checksum: 0x1111, payload: 7), on: a, at: 1_000)
        #expect(!copy)
        // Routed to the next namespace: new MACs, TTL one less, checksum updated — the same packet.
        copy = isCopy(&filter, frame(ttl: 63, checksum: 0x1212, payload: 7, mac: 0xbb), on: b, at: 2_000)
        #expect(copy)
    }

    @Test func aRepeatOnTheSameInterfaceIsARetransmissionAndKept() {
        var filter = CopyFilter(windowNs: 50_000_000)
        let bytes = frame(ttl: 64, checksum: 1, payload: 9)
        var copy = isCopy(&filter, bytes, on: a, at: 1_000)
        #expect(!copy)
        copy = isCopy(&filter, bytes, on: a, at: 2_000)
        #expect(!copy)
    }

    @Test func differentPayloadsAndOldPacketsAreNotCopies() {
        var filter = CopyFilter(windowNs: 50_000_000)
        var copy = isCopy(&filter, frame(ttl: 64, checksum: 1, payload: 1), on: a, at: 1_000)
        #expect(!copy)
        copy = isCopy(&filter, frame(ttl: 64, checksum: 1, payload: 2), on: b, at: 2_000)
        #expect(!copy)
        // The same bytes again on b, but after the window: a new packet, not a copy.
        copy = isCopy(&filter, frame(ttl: 64, checksum: 1, payload: 1), on: b, at: 60_000_000)
        #expect(!copy)
    }

    @Test func manyPacketsAcrossWindowsKeepBeingTold() {
        // Thousands of distinct packets over several windows (the table grows and generations turn):
        // each is new on a, a copy on b right after, and new again on b two windows later.
        var filter = CopyFilter(windowNs: 1_000_000)
        var wrong = 0
        for index in 0..<5_000 {
            let time = UInt64(index) * 1_000
            var bytes = frame(ttl: 64, checksum: 1, payload: 0)
            bytes[18] = UInt8(index >> 8); bytes[19] = UInt8(index & 0xff) // the IP ID
            if isCopy(&filter, bytes, on: a, at: time) { wrong += 1 }
            if !isCopy(&filter, bytes, on: b, at: time + 10) { wrong += 1 }
        }
        var again = frame(ttl: 64, checksum: 1, payload: 0)
        again[18] = 0; again[19] = 0
        #expect(wrong == 0)
        #expect(!isCopy(&filter, again, on: b, at: 5_000_000 + 2_000_000))
    }

    @Test func theTableGrowsInsteadOfForgettingWithinAWindow() {
        // 5000 packets in one window into a table of 4 buckets: it must grow, keeping every entry.
        var recent = RecentPackets(windowNs: 50_000_000, initialBuckets: 4)
        var wronglyCopies = 0
        for index in 0..<5_000 where recent.isCopy(UInt64(index) << 1, timeNs: 1_000_000 + UInt64(index), interface: a) {
            wronglyCopies += 1
        }
        #expect(wronglyCopies == 0)
        var recognised = 0
        for index in 0..<5_000 where recent.isCopy(UInt64(index) << 1, timeNs: 2_000_000, interface: b) { recognised += 1 }
        #expect(recognised == 5_000)
        #expect(recent.bucketCount >= 5_000 / RecentPackets.entriesPerBucket)
    }
}

