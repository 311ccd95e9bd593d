import Reorder
import TapCore
import Testing

private let eth0 = InterfaceKey(netnsInode: 7, ifindex: 2)
private let eth1 = InterfaceKey(netnsInode: 7, ifindex: 3)

/// Pushes a packet whose bytes are `label` repeated to `size` bytes, through a view as the pipeline does.
@discardableResult
private func push(_ buffer: ReorderBuffer, _ time: UInt64, _ label: UInt8 = 0, size: Int = 100,
                  on interface: InterfaceKey = eth0, stream: Int = 0) -> ReorderBuffer.PushOutcome {
    let bytes = [UInt8](repeating: label, count: size)
    return bytes.withUnsafeBytes {
        buffer.push(PacketView(interface: interface, timestampNs: time, direction: .inbound,
                               originalLength: UInt32(size + 1), bytes: $0), stream: stream)
    }
}

/// What is due at `now`, copied out (the views are valid only inside the callback).
private func drain(_ buffer: ReorderBuffer, now: UInt64) -> [CapturedPacket] {
    var out: [CapturedPacket] = []
    buffer.releaseReady(nowNs: now) { out.append(CapturedPacket($0)) }
    return out
}

@Suite struct ReorderBufferTests {
    @Test func releasesInTimeOrderOnlyAfterTheWindow() {
        let buffer = ReorderBuffer(windowNs: 500, maxBytes: 1 << 20)
        for time: UInt64 in [1_030, 1_010, 1_020, 1_000] { push(buffer, time) }
        #expect(drain(buffer, now: 1_499).isEmpty)
        #expect(drain(buffer, now: 1_515).map(\.timestampNs) == [1_000, 1_010])
        #expect(drain(buffer, now: 2_000).map(\.timestampNs) == [1_020, 1_030])
        #expect(buffer.isEmpty && buffer.heldBytes == 0)
    }

    @Test func equalTimesKeepArrivalOrder() {
        let buffer = ReorderBuffer(windowNs: 10, maxBytes: 1 << 20)
        for label: UInt8 in [1, 2, 3, 4] { push(buffer, 5, label) }
        push(buffer, 4, 9) // placed before the run of equal times, not inside it
        #expect(drain(buffer, now: 100).map(\.data[0]) == [9, 1, 2, 3, 4])
    }

    @Test func everyFieldAndByteComesBackAsPushed() {
        let buffer = ReorderBuffer(windowNs: 10, maxBytes: 1 << 20)
        let bytes: [UInt8] = [1, 2, 3, 4, 5]
        bytes.withUnsafeBytes {
            buffer.push(PacketView(interface: eth1, timestampNs: 42, direction: .outbound, originalLength: 1500, bytes: $0))
        }
        #expect(drain(buffer, now: 100) == [CapturedPacket(interface: eth1, timestampNs: 42, direction: .outbound,
                                                            originalLength: 1500, data: bytes)])
    }

    @Test func lateElementsAreDroppedAndCountedPerInterface() {
        let buffer = ReorderBuffer(windowNs: 100, maxBytes: 1 << 20)
        push(buffer, 1_000, on: eth0)
        #expect(drain(buffer, now: 1_100).count == 1)
        #expect(push(buffer, 999, on: eth1) == .late)
        #expect(push(buffer, 500, on: eth1) == .late)
        #expect(push(buffer, 1_000, on: eth0) == .held) // equal time is in order
        #expect(buffer.lateDrops == [eth1: 2])
        #expect(drain(buffer, now: 5_000).map(\.timestampNs) == [1_000])
    }

    @Test func overTheByteCapTheOldestGoEarly() {
        let buffer = ReorderBuffer(windowNs: 1_000_000, maxBytes: 250)
        for time: UInt64 in [30, 10, 20] { push(buffer, time, size: 100) }
        #expect(buffer.heldBytes == 300)
        // Nothing is due by time; one packet must go to get back under 250 bytes: the oldest.
        #expect(drain(buffer, now: 0).map(\.timestampNs) == [10])
        #expect(buffer.releasedEarly == 1 && buffer.heldBytes == 200)
        // Anything older than what went early is now late.
        #expect(push(buffer, 5) == .late)
        var rest: [UInt64] = []
        buffer.releaseAll { rest.append($0.timestampNs) }
        #expect(rest == [20, 30] && buffer.heldBytes == 0)
    }

    @Test func outputIsNonDecreasingUnderRandomInput() {
        var generator = SystemRandomNumberGenerator()
        let buffer = ReorderBuffer(windowNs: 50, maxBytes: 1 << 20)
        var released: [UInt64] = []
        var late = 0
        for now in stride(from: UInt64(1_000), to: 11_000, by: 10) {
            // Arrivals are up to 80 behind "now": some exceed the 50 window and must be late.
            let time = now - UInt64.random(in: 0...80, using: &generator)
            if push(buffer, time) == .late { late += 1 }
            released += drain(buffer, now: now).map(\.timestampNs)
        }
        buffer.releaseAll { released.append($0.timestampNs) }
        #expect(released == released.sorted())
        #expect(released.count + late == 1_000)
        #expect(buffer.lateDrops.values.reduce(0, +) == UInt64(late))
    }

    /// Far more bytes than one arena chunk pass through, with packets of many sizes held across chunk
    /// boundaries: every packet comes back with its own bytes, and the arena keeps only a few chunks.
    @Test func bytesSurviveChunkBoundariesAndChunksAreReused() {
        let buffer = ReorderBuffer(windowNs: 1_000, maxBytes: 1 << 30)
        var time: UInt64 = 0
        var checked = 0
        var corrupt = 0
        for round in 0..<100 {
            for index in 0..<100 {
                time += 1
                let size = 1 + (round * 100 + index) * 7919 % 65_536
                push(buffer, time, UInt8(truncatingIfNeeded: time), size: size)
            }
            buffer.releaseReady(nowNs: time) { packet in
                checked += 1
                let expected = UInt8(truncatingIfNeeded: packet.timestampNs)
                let bytes = packet.bytes
                // First, middle and last byte: a packet overwritten by a neighbour differs at an edge.
                if bytes.count != 1 + (Int(packet.timestampNs - 1)) * 7919 % 65_536
                    || [0, bytes.count / 2, bytes.count - 1].contains(where: { bytes[$0] != expected }) {
                    corrupt += 1
                }
            }
        }
        buffer.releaseAll { _ in checked += 1 }
        #expect(checked == 10_000 && corrupt == 0)
        // ~330 MB went through; what is held at the end is at most a few 4 MiB chunks.
        #expect(buffer.arenaBytes <= 8 * (4 << 20))
    }
}

extension ReorderBufferTests {
    /// Rings are read one after another, so a whole batch of one CPU's packets arrives before the
    /// other's that interleave with it in time: release still merges them in time order.
    @Test func streamsReadOneAfterAnotherAreMergedByTime() {
        let buffer = ReorderBuffer(windowNs: 100, maxBytes: 1 << 20, streams: 3)
        let evens = stride(from: UInt64(1_000), to: 1_200, by: 2), odds = stride(from: UInt64(1_001), to: 1_200, by: 2)
        for time in evens { push(buffer, time, 0, stream: 0) }
        for time in odds { push(buffer, time, 1, stream: 2) }
        var released: [UInt64] = []
        buffer.releaseReady(nowNs: 1_150) { released.append($0.timestampNs) }
        #expect(released == Array(1_000...1_050))
        buffer.releaseAll { released.append($0.timestampNs) }
        #expect(released == Array(1_000..<1_200))
    }
}
