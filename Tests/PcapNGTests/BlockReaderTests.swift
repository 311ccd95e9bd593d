import PcapNG
import TapCore
import Testing

/// Builds blocks by hand in either byte order, the way other writers lay them out.
struct HandBlock {
    var bigEndian: Bool
    var bytes: [UInt8] = []

    mutating func put32(_ v: UInt32) { bytes += bigEndian ? withUnsafeBytes(of: v.bigEndian, Array.init) : withUnsafeBytes(of: v.littleEndian, Array.init) }
    mutating func put16(_ v: UInt16) { bytes += bigEndian ? withUnsafeBytes(of: v.bigEndian, Array.init) : withUnsafeBytes(of: v.littleEndian, Array.init) }

    /// A block of `type` whose body is built by `body`; lengths filled in.
    static func block(_ type: UInt32, bigEndian: Bool, _ body: (inout HandBlock) -> Void) -> [UInt8] {
        var inner = HandBlock(bigEndian: bigEndian)
        body(&inner)
        var outer = HandBlock(bigEndian: bigEndian)
        outer.put32(type)
        outer.put32(UInt32(inner.bytes.count + 12))
        outer.bytes += inner.bytes
        outer.put32(UInt32(inner.bytes.count + 12))
        return outer.bytes
    }

    static func section(bigEndian: Bool) -> [UInt8] {
        block(0x0A0D0D0A, bigEndian: bigEndian) { b in
            b.put32(0x1A2B3C4D); b.put16(1); b.put16(0); b.put32(0xffffffff); b.put32(0xffffffff)
        }
    }

    /// IDB with if_tsresol `resolution` (microseconds when nil).
    static func interface(bigEndian: Bool, resolution: UInt8?) -> [UInt8] {
        block(1, bigEndian: bigEndian) { b in
            b.put16(1); b.put16(0); b.put32(65535)
            if let resolution { b.put16(9); b.put16(1); b.bytes += [resolution, 0, 0, 0]; b.put16(0); b.put16(0) }
        }
    }

    static func packet(bigEndian: Bool, ticks: UInt64, data: [UInt8], flags: UInt32?) -> [UInt8] {
        block(6, bigEndian: bigEndian) { b in
            b.put32(0); b.put32(UInt32(ticks >> 32)); b.put32(UInt32(ticks & 0xffffffff))
            b.put32(UInt32(data.count)); b.put32(UInt32(data.count))
            b.bytes += data + [UInt8](repeating: 0, count: (4 - data.count % 4) % 4)
            if let flags { b.put16(2); b.put16(4); b.put32(flags); b.put16(0); b.put16(0) }
        }
    }
}

@Suite struct BlockReaderTests {
    func readAll(_ bytes: [UInt8]) throws -> [Block] {
        let reader = BlockReader(source: MemoryByteSource(bytes))
        var blocks: [Block] = []
        while let block = try reader.next() { blocks.append(block) }
        return blocks
    }

    func error(_ bytes: [UInt8]) -> PcapNGError? {
        do { _ = try readAll(bytes); return nil } catch let error as PcapNGError { return error } catch { return nil }
    }

    @Test(arguments: [false, true])
    func bothByteOrders(bigEndian: Bool) throws {
        let bytes = HandBlock.section(bigEndian: bigEndian) + HandBlock.interface(bigEndian: bigEndian, resolution: nil)
            + HandBlock.packet(bigEndian: bigEndian, ticks: 1_764_064_800_000_123, data: [1, 2, 3, 4, 5], flags: 1)
        let blocks = try readAll(bytes)
        #expect(blocks.count == 3)
        guard case .packet(let packet) = blocks[2] else { Issue.record("no packet"); return }
        #expect(packet.timestampNs == 1_764_064_800_000_123_000) // microseconds by default
        #expect(packet.data == [1, 2, 3, 4, 5])
        #expect(packet.direction == .inbound)
    }

    @Test func timestampResolutions() throws {
        for (resolution, ticks, ns) in [(UInt8(9), UInt64(5), UInt64(5)), (3, 7, 7_000_000), (0x80 | 10, 1024, 1_000_000_000)] {
            let bytes = HandBlock.section(bigEndian: false) + HandBlock.interface(bigEndian: false, resolution: resolution)
                + HandBlock.packet(bigEndian: false, ticks: ticks, data: [], flags: nil)
            guard case .packet(let packet) = try readAll(bytes)[2] else { Issue.record("no packet"); return }
            #expect(packet.timestampNs == ns, "if_tsresol \(resolution)")
        }
    }

    @Test func severalSectionsOfDifferentByteOrder() throws {
        let first = HandBlock.section(bigEndian: false) + HandBlock.interface(bigEndian: false, resolution: 9)
            + HandBlock.packet(bigEndian: false, ticks: 1, data: [1], flags: nil)
        let second = HandBlock.section(bigEndian: true) + HandBlock.interface(bigEndian: true, resolution: 9)
            + HandBlock.packet(bigEndian: true, ticks: 2, data: [2], flags: nil)
        let packets = try readAll(first + second).compactMap { block -> EnhancedPacket? in
            if case .packet(let p) = block { return p } else { return nil }
        }
        #expect(packets.map(\.timestampNs) == [1, 2])
        #expect(packets.map(\.data) == [[1], [2]])
    }

    @Test func unknownBlocksAreSkipped() throws {
        let unknown = HandBlock.block(0x0000_0BAD, bigEndian: false) { $0.put32(42) }
        let bytes = HandBlock.section(bigEndian: false) + unknown + HandBlock.interface(bigEndian: false, resolution: 9)
        let blocks = try readAll(bytes)
        #expect(blocks.count == 2)
    }

    @Test func malformedInputNamesTheOffset() {
        let section = HandBlock.section(bigEndian: false)
        let idb = HandBlock.interface(bigEndian: false, resolution: 9)
        let packet = HandBlock.packet(bigEndian: false, ticks: 1, data: [1, 2, 3], flags: nil)
        let base = UInt64(section.count + idb.count)

        // Not PcapNG at all.
        #expect(error(Array("hello, this is not pcapng".utf8))?.offset == 0)
        // Bad byte-order magic.
        var badMagic = section
        badMagic[8] = 0
        #expect(error(badMagic)?.offset == 8)
        // Truncated in the middle of a packet block.
        let truncated = section + idb + Array(packet.dropLast(6))
        #expect(error(truncated)?.offset == base)
        // Length not a multiple of 4.
        var oddLength = section + idb + packet
        oddLength[Int(base) + 4] = 30
        #expect(error(oddLength)?.offset == base + 4)
        // Trailing length differs from the leading one.
        var mismatch = section + idb + packet
        mismatch[mismatch.count - 4] = 0x44
        #expect(error(mismatch)?.offset == UInt64(mismatch.count - 4))
        // A packet of an interface the section never described.
        let orphan = section + packet
        #expect(error(orphan)?.offset == UInt64(section.count + 8))
        // Captured length larger than the block.
        var overlong = section + idb + packet
        overlong[Int(base) + 20] = 200
        #expect(error(overlong)?.offset == base + 28)
        // A torn header at the very end.
        #expect(error(section + [1, 0, 0])?.offset == UInt64(section.count))
    }

    @Test func errorMessageNamesOffset() {
        let message = "\(PcapNGError(offset: 1234, "truncated block"))"
        #expect(message.contains("byte offset 1234"))
    }
}
