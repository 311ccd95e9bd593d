import PcapNG
import TapCore
import Testing

@Suite struct BlockWriterTests {
    func u32(_ bytes: [UInt8], _ at: Int) -> UInt32 {
        UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
    }

    @Test func sectionHeaderLayout() {
        let bytes = BlockWriter.encode(.section(SectionHeader(os: "Linux", userApplication: "tlstap")))
        // 28 fixed + shb_os (4 + 8) + shb_userappl (4 + 8) + endofopt 4
        #expect(bytes.count == 28 + 12 + 12 + 4)
        #expect(Array(bytes[0..<4]) == [0x0A, 0x0D, 0x0D, 0x0A])
        #expect(u32(bytes, 4) == UInt32(bytes.count))
        #expect(u32(bytes, bytes.count - 4) == UInt32(bytes.count))
        #expect(Array(bytes[8..<12]) == [0x4D, 0x3C, 0x2B, 0x1A])
        #expect(Array(bytes[16..<24]) == [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
        // shb_os: code 3, length 5, "Linux" + 3 bytes of padding
        #expect(Array(bytes[24..<36]) == [3, 0, 5, 0] + Array("Linux".utf8) + [0, 0, 0])
    }

    @Test func blockWithoutOptionsHasNoEndOfOptions() {
        let bytes = BlockWriter.encode(.secrets(DecryptionSecrets(secretsType: DecryptionSecrets.tlsKeyLog, data: [1, 2, 3, 4, 5])))
        #expect(bytes.count == 12 + 8 + 8)
        #expect(u32(bytes, 8) == 0x544c534b)
        #expect(u32(bytes, 12) == 5)
        #expect(Array(bytes[16..<24]) == [1, 2, 3, 4, 5, 0, 0, 0])
    }

    @Test func enhancedPacketLayout() {
        let ts: UInt64 = 0x0000_0001_0000_0002
        let packet = EnhancedPacket(interfaceID: 3, timestampNs: ts, originalLength: 1500, data: [9, 9, 9], direction: .inbound)
        let bytes = BlockWriter.encode(.packet(packet))
        // 12 + 20 + 4 (data padded) + epb_flags 8 + endofopt 4
        #expect(bytes.count == 48)
        #expect(u32(bytes, 0) == 6)
        #expect(u32(bytes, 8) == 3)
        #expect(u32(bytes, 12) == 1)
        #expect(u32(bytes, 16) == 2)
        #expect(u32(bytes, 20) == 3)
        #expect(u32(bytes, 24) == 1500)
        #expect(Array(bytes[32..<40]) == [2, 0, 4, 0, 1, 0, 0, 0])
    }

    @Test func interfaceWritesNanosecondResolution() {
        let bytes = BlockWriter.encode(.interface(InterfaceDescription(linkType: 101, snapLength: 65535, name: "eth0")))
        #expect(u32(bytes, 0) == 1)
        #expect(bytes[8] == 101)
        // if_name (4 + 4), then if_tsresol: code 9, length 1, value 9
        #expect(Array(bytes[16..<24]) == [2, 0, 4, 0] + Array("eth0".utf8))
        #expect(Array(bytes[24..<32]) == [9, 0, 1, 0, 9, 0, 0, 0])
    }

    @Test func everyBlockRoundTrips() throws {
        let blocks: [Block] = [
            .section(SectionHeader(hardware: "x86_64", os: "Linux 6.18", userApplication: "tlstap 0.1.0", comment: "a comment")),
            .interface(InterfaceDescription(linkType: 1, snapLength: 262_144, name: "netns:1/eth0", description: "host", comment: "c")),
            .interface(InterfaceDescription(linkType: 101, snapLength: 100, name: "netns:2/wg0")),
            .secrets(DecryptionSecrets(keyLog: [KeyLogLine(label: "CLIENT_RANDOM", clientRandom: [UInt8](repeating: 1, count: 32),
                                                           secret: [UInt8](repeating: 2, count: 48))])),
            .packet(EnhancedPacket(interfaceID: 1, timestampNs: 1_764_064_800_123_456_789, originalLength: 70,
                                   data: Array(0..<61), flags: 2, comment: "out")),
            .packet(EnhancedPacket(interfaceID: 0, timestampNs: 1_764_064_800_123_456_790, originalLength: 4, data: [1, 2, 3, 4])),
            .statistics(InterfaceStatistics(interfaceID: 1, timestampNs: 1_764_064_805_000_000_000, startNs: 1_764_064_800_000_000_000,
                                            endNs: 1_764_064_805_000_000_000, received: 10, droppedByInterface: 1, droppedByOS: 2)),
        ]
        var bytes: [UInt8] = []
        for block in blocks { BlockWriter.append(block, to: &bytes) }
        let reader = BlockReader(source: MemoryByteSource(bytes))
        var read: [Block] = []
        while let block = try reader.next() { read.append(block) }
        #expect(read == blocks)
        #expect(reader.offset == UInt64(bytes.count))
    }

    /// The per-packet encoder writes exactly what the general one writes, for every padding length.
    @Test(arguments: [0, 1, 2, 3, 4, 5, 60, 1514])
    func fastEnhancedPacketMatchesTheGeneralEncoder(length: Int) {
        let data = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        for direction in [Direction.inbound, .outbound] {
            let general = BlockWriter.encode(.packet(EnhancedPacket(
                interfaceID: 3, timestampNs: 1_764_000_000_123_456_789, originalLength: UInt32(length + 40),
                data: data, direction: direction)))
            var fast: [UInt8] = [9, 9] // appends after what is there
            data.withUnsafeBytes {
                BlockWriter.appendEnhancedPacket(interfaceID: 3, timestampNs: 1_764_000_000_123_456_789,
                                                 originalLength: UInt32(length + 40), flags: UInt32(direction.rawValue),
                                                 data: $0, to: &fast)
            }
            #expect(fast == [9, 9] + general)
        }
    }
}

