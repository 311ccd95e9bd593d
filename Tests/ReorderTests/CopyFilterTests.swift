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

    @Test func aCopyOnAnotherInterfaceIsRecognisedDespiteRoutingChanges() {
        var filter = CopyFilter(windowNs: 50_000_000)
        var copy = filter.isCopy(packet(frame(ttl: 64, checksum: 0x1111, payload: 7), on: a, at: 1_000), networkOffset: 14)
        #expect(!copy)
        // Routed to the next namespace: new MACs, TTL one less, checksum updated — the same packet.
        copy = filter.isCopy(packet(frame(ttl: 63, checksum: 0x1212, payload: 7, mac: 0xbb), on: b, at: 2_000),
                              networkOffset: 14)
        #expect(copy)
    }

    @Test func aRepeatOnTheSameInterfaceIsARetransmissionAndKept() {
        var filter = CopyFilter(windowNs: 50_000_000)
        let bytes = frame(ttl: 64, checksum: 1, payload: 9)
        var copy = filter.isCopy(packet(bytes, on: a, at: 1_000), networkOffset: 14)
        #expect(!copy)
        copy = filter.isCopy(packet(bytes, on: a, at: 2_000), networkOffset: 14)
        #expect(!copy)
    }

    @Test func differentPayloadsAndOldPacketsAreNotCopies() {
        var filter = CopyFilter(windowNs: 50_000_000)
        var copy = filter.isCopy(packet(frame(ttl: 64, checksum: 1, payload: 1), on: a, at: 1_000), networkOffset: 14)
        #expect(!copy)
        copy = filter.isCopy(packet(frame(ttl: 64, checksum: 1, payload: 2), on: b, at: 2_000), networkOffset: 14)
        #expect(!copy)
        // The same bytes again on b, but after the window: a new packet, not a copy.
        copy = filter.isCopy(packet(frame(ttl: 64, checksum: 1, payload: 1), on: b, at: 60_000_000), networkOffset: 14)
        #expect(!copy)
    }
}
