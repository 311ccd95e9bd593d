import Reorder
import TapCore
import Testing

private struct Item: Reorderable, Equatable {
    var reorderTimeNs: UInt64
    var reorderByteCount: Int = 100
    var reorderInterface = InterfaceKey(netnsInode: 1, ifindex: 1)
    var label = ""
}

private func drain(_ buffer: inout ReorderBuffer<Item>, now: UInt64) -> [Item] {
    var out: [Item] = []
    while let item = buffer.popReady(nowNs: now) { out.append(item) }
    return out
}

@Suite struct ReorderBufferTests {
    @Test func releasesInTimeOrderOnlyAfterTheWindow() {
        var buffer = ReorderBuffer<Item>(windowNs: 500, maxBytes: 1 << 20)
        for time: UInt64 in [1_030, 1_010, 1_020, 1_000] { buffer.push(Item(reorderTimeNs: time)) }
        #expect(drain(&buffer, now: 1_499).isEmpty)
        #expect(drain(&buffer, now: 1_515).map(\.reorderTimeNs) == [1_000, 1_010])
        #expect(drain(&buffer, now: 2_000).map(\.reorderTimeNs) == [1_020, 1_030])
        #expect(buffer.isEmpty && buffer.heldBytes == 0)
    }

    @Test func equalTimesKeepArrivalOrder() {
        var buffer = ReorderBuffer<Item>(windowNs: 10, maxBytes: 1 << 20)
        for label in ["a", "b", "c", "d"] { buffer.push(Item(reorderTimeNs: 5, label: label)) }
        #expect(drain(&buffer, now: 100).map(\.label) == ["a", "b", "c", "d"])
    }

    @Test func lateElementsAreDroppedAndCountedPerInterface() {
        let eth0 = InterfaceKey(netnsInode: 7, ifindex: 2), eth1 = InterfaceKey(netnsInode: 7, ifindex: 3)
        var buffer = ReorderBuffer<Item>(windowNs: 100, maxBytes: 1 << 20)
        buffer.push(Item(reorderTimeNs: 1_000, reorderInterface: eth0))
        #expect(drain(&buffer, now: 1_100).count == 1)
        #expect(buffer.push(Item(reorderTimeNs: 999, reorderInterface: eth1)) == .late)
        #expect(buffer.push(Item(reorderTimeNs: 500, reorderInterface: eth1)) == .late)
        #expect(buffer.push(Item(reorderTimeNs: 1_000, reorderInterface: eth0)) == .held) // equal time is in order
        #expect(buffer.lateDrops == [eth1: 2])
        #expect(drain(&buffer, now: 5_000).map(\.reorderTimeNs) == [1_000])
    }

    @Test func overTheByteCapTheOldestGoEarly() {
        var buffer = ReorderBuffer<Item>(windowNs: 1_000_000, maxBytes: 250)
        for time: UInt64 in [30, 10, 20] { buffer.push(Item(reorderTimeNs: time, reorderByteCount: 100)) }
        #expect(buffer.heldBytes == 300)
        // Nothing is due by time; one element must go to get back under 250 bytes: the oldest.
        #expect(drain(&buffer, now: 0).map(\.reorderTimeNs) == [10])
        #expect(buffer.releasedEarly == 1 && buffer.heldBytes == 200)
        // Anything older than what went early is now late.
        #expect(buffer.push(Item(reorderTimeNs: 5)) == .late)
        #expect(buffer.popOldest()?.reorderTimeNs == 20)
    }

    @Test func outputIsNonDecreasingUnderRandomInput() {
        var generator = SystemRandomNumberGenerator()
        var buffer = ReorderBuffer<Item>(windowNs: 50, maxBytes: 1 << 20)
        var released: [UInt64] = []
        var late = 0
        for now in stride(from: UInt64(1_000), to: 11_000, by: 10) {
            // Arrivals are up to 80 behind "now": some exceed the 50 window and must be late.
            let time = now - UInt64.random(in: 0...80, using: &generator)
            if buffer.push(Item(reorderTimeNs: time)) == .late { late += 1 }
            released += drain(&buffer, now: now).map(\.reorderTimeNs)
        }
        while let item = buffer.popOldest() { released.append(item.reorderTimeNs) }
        #expect(released == released.sorted())
        #expect(released.count + late == 1_000)
        #expect(buffer.lateDrops.values.reduce(0, +) == UInt64(late))
    }
}
