/// Reads PcapNG blocks one at a time from a byte source, so files of any size stream through in
/// constant memory. Accepts both byte orders and several sections; skips block types it does not
/// know; anything malformed throws a `PcapNGError` naming the byte offset.
public final class BlockReader {
    /// Blocks longer than this are taken as garbage rather than allocated (a packet is ≤ 256 KiB).
    public static let maxBlockLength = 64 << 20

    private let source: any ByteSource
    private var buffer: [UInt8] = []
    private var bufferStart = 0
    private var sourceEnded = false

    /// File offset of the next block to read.
    public private(set) var offset: UInt64 = 0
    /// Offset of the block most recently returned.
    public private(set) var lastBlockOffset: UInt64 = 0
    /// Bytes of the block most recently returned, exactly as in the file (for repair and copying).
    public private(set) var lastBlockLength = 0
    /// The interfaces of the current section, in id order.
    public private(set) var interfaces: [InterfaceDescription] = []

    private var bigEndian = false
    private var inSection = false
    private var scales: [TimestampScale] = []

    public init(source: any ByteSource) {
        self.source = source
    }

    /// The next known block, or nil at a clean end of input (between blocks).
    public func next() throws -> Block? {
        while true {
            let blockOffset = offset
            let head = try take(upTo: 8)
            if head.isEmpty { return nil }
            guard head.count == 8 else {
                throw PcapNGError(offset: blockOffset, "truncated block header (\(head.count) of 8 bytes)")
            }
            var block = head
            let type: UInt32
            if head[0..<4] == [0x0A, 0x0D, 0x0D, 0x0A] {
                type = BlockType.section
                let magic = try take(upTo: 4)
                guard magic.count == 4 else { throw PcapNGError(offset: blockOffset + 8, "truncated section header") }
                switch magic {
                case [0x4D, 0x3C, 0x2B, 0x1A]: bigEndian = false
                case [0x1A, 0x2B, 0x3C, 0x4D]: bigEndian = true
                default: throw PcapNGError(offset: blockOffset + 8, "bad byte-order magic \(magic.hexString) in section header")
                }
                block += magic
            } else {
                guard inSection else {
                    throw PcapNGError(offset: blockOffset, "not PcapNG: the input does not start with a Section Header Block")
                }
                var header = FieldReader(bytes: head, bigEndian: bigEndian, baseOffset: blockOffset)
                type = try header.read(UInt32.self, "block type")
            }
            var header = FieldReader(bytes: block, bigEndian: bigEndian, baseOffset: blockOffset, position: 4)
            let totalLength = Int(try header.read(UInt32.self, "block length"))
            let minimum = type == BlockType.section ? 28 : 12
            guard totalLength >= minimum, totalLength % 4 == 0, totalLength <= Self.maxBlockLength else {
                throw PcapNGError(offset: blockOffset + 4, "impossible block length \(totalLength) for block type 0x\(String(type, radix: 16))")
            }
            let rest = try take(upTo: totalLength - block.count)
            block += rest
            guard block.count == totalLength else {
                throw PcapNGError(offset: blockOffset, "truncated block: \(block.count) of \(totalLength) bytes before the end of input")
            }
            var footer = FieldReader(bytes: block, bigEndian: bigEndian, baseOffset: blockOffset, position: totalLength - 4)
            let trailingLength = Int(try footer.read(UInt32.self, "trailing block length"))
            guard trailingLength == totalLength else {
                throw PcapNGError(offset: blockOffset + UInt64(totalLength - 4),
                                  "trailing block length \(trailingLength) differs from leading \(totalLength)")
            }
            offset = blockOffset + UInt64(totalLength)
            lastBlockOffset = blockOffset
            lastBlockLength = totalLength
            var body = FieldReader(bytes: block, bigEndian: bigEndian, baseOffset: blockOffset, position: 8)
            if let parsed = try parse(type: type, body: &body, end: totalLength - 4) { return parsed }
        }
    }

    private func parse(type: UInt32, body: inout FieldReader, end: Int) throws(PcapNGError) -> Block? {
        switch type {
        case BlockType.section:
            body.position += 4 // byte-order magic, already read
            let major = try body.read(UInt16.self, "major version")
            guard major == 1 else { throw PcapNGError(offset: body.offset - 2, "unsupported PcapNG major version \(major)") }
            _ = try body.read(UInt16.self, "minor version")
            _ = try body.read(Int64.self, "section length")
            var section = SectionHeader()
            try body.readOptions(end: end) { code, value, _ throws(PcapNGError) in
                switch code {
                case OptionCode.comment: section.comment = value.optionString
                case OptionCode.shbHardware: section.hardware = value.optionString
                case OptionCode.shbOS: section.os = value.optionString
                case OptionCode.shbUserApplication: section.userApplication = value.optionString
                default: break
                }
            }
            inSection = true
            interfaces = []
            scales = []
            return .section(section)

        case BlockType.interface:
            let linkType = try body.read(UInt16.self, "link type")
            _ = try body.read(UInt16.self, "reserved")
            let snapLength = try body.read(UInt32.self, "snap length")
            var interface = InterfaceDescription(linkType: linkType, snapLength: snapLength)
            var scale = TimestampScale()
            try body.readOptions(end: end) { code, value, at throws(PcapNGError) in
                switch code {
                case OptionCode.comment: interface.comment = value.optionString
                case OptionCode.ifName: interface.name = value.optionString
                case OptionCode.ifDescription: interface.description = value.optionString
                case OptionCode.ifTimestampResolution:
                    guard value.count == 1 else { throw PcapNGError(offset: at.offset, "if_tsresol must be 1 byte, is \(value.count)") }
                    scale.resolution = value[0]
                case OptionCode.ifTimestampOffset:
                    var reader = at
                    scale.offsetSeconds = try reader.read(Int64.self, "if_tsoffset")
                default: break
                }
            }
            guard scale.isUsable else { throw PcapNGError(offset: body.offset, "if_tsresol \(scale.resolution) is out of range") }
            interfaces.append(interface)
            scales.append(scale)
            return .interface(interface)

        case BlockType.enhancedPacket:
            let idOffset = body.offset
            let interfaceID = try body.read(UInt32.self, "interface id")
            let scale = try scaleOf(interfaceID, at: idOffset)
            let high = try body.read(UInt32.self, "timestamp (high)")
            let low = try body.read(UInt32.self, "timestamp (low)")
            let capturedLength = try body.read(UInt32.self, "captured length")
            let originalLength = try body.read(UInt32.self, "original length")
            let data = try body.readBytes(Int(capturedLength), "packet data", limit: end)
            body.position += padded4(data.count) - data.count
            var packet = EnhancedPacket(interfaceID: interfaceID, timestampNs: scale.nanoseconds(UInt64(high) << 32 | UInt64(low)),
                                        originalLength: originalLength, data: data)
            try body.readOptions(end: end) { code, value, at throws(PcapNGError) in
                switch code {
                case OptionCode.comment: packet.comment = value.optionString
                case OptionCode.epbFlags:
                    var reader = at
                    packet.flags = try reader.read(UInt32.self, "epb_flags")
                default: break
                }
            }
            return .packet(packet)

        case BlockType.decryptionSecrets:
            let secretsType = try body.read(UInt32.self, "secrets type")
            let length = try body.read(UInt32.self, "secrets length")
            let data = try body.readBytes(Int(length), "secrets data", limit: end)
            body.position += padded4(data.count) - data.count
            var secrets = DecryptionSecrets(secretsType: secretsType, data: data)
            try body.readOptions(end: end) { code, value, _ throws(PcapNGError) in
                if code == OptionCode.comment { secrets.comment = value.optionString }
            }
            return .secrets(secrets)

        case BlockType.statistics:
            let idOffset = body.offset
            let interfaceID = try body.read(UInt32.self, "interface id")
            let scale = try scaleOf(interfaceID, at: idOffset)
            let high = try body.read(UInt32.self, "timestamp (high)")
            let low = try body.read(UInt32.self, "timestamp (low)")
            var statistics = InterfaceStatistics(interfaceID: interfaceID, timestampNs: scale.nanoseconds(UInt64(high) << 32 | UInt64(low)))
            try body.readOptions(end: end) { code, value, at throws(PcapNGError) in
                var reader = at
                switch code {
                case OptionCode.comment: statistics.comment = value.optionString
                case OptionCode.isbStartTime, OptionCode.isbEndTime:
                    let high = try reader.read(UInt32.self, "isb time (high)")
                    let low = try reader.read(UInt32.self, "isb time (low)")
                    let ns = scale.nanoseconds(UInt64(high) << 32 | UInt64(low))
                    if code == OptionCode.isbStartTime { statistics.startNs = ns } else { statistics.endNs = ns }
                case OptionCode.isbIfRecv: statistics.received = try reader.read(UInt64.self, "isb_ifrecv")
                case OptionCode.isbIfDrop: statistics.droppedByInterface = try reader.read(UInt64.self, "isb_ifdrop")
                case OptionCode.isbOSDrop: statistics.droppedByOS = try reader.read(UInt64.self, "isb_osdrop")
                default: break
                }
            }
            return .statistics(statistics)

        default:
            return nil // a block type tlstap does not use: skipped, as the spec asks of readers
        }
    }

    private func scaleOf(_ interfaceID: UInt32, at offset: UInt64) throws(PcapNGError) -> TimestampScale {
        guard Int(interfaceID) < scales.count else {
            throw PcapNGError(offset: offset, "interface id \(interfaceID) has no Interface Description Block in this section (\(scales.count) defined)")
        }
        return scales[Int(interfaceID)]
    }

    /// Up to `count` bytes from the source; fewer only at its end.
    private func take(upTo count: Int) throws -> [UInt8] {
        while buffer.count - bufferStart < count && !sourceEnded {
            let chunk = try source.read(maxCount: max(65536, count - (buffer.count - bufferStart)))
            if chunk.isEmpty { sourceEnded = true; break }
            if bufferStart > 0 { buffer.removeSubrange(0..<bufferStart); bufferStart = 0 }
            buffer += chunk
        }
        let end = min(buffer.count, bufferStart + count)
        let bytes = Array(buffer[bufferStart..<end])
        bufferStart = end
        offset += UInt64(bytes.count)
        return bytes
    }
}

/// How an interface's timestamp ticks convert to nanoseconds (`if_tsresol`, `if_tsoffset`).
struct TimestampScale {
    /// Bit 7 clear: 10^-n seconds; set: 2^-n seconds. Default 6 (microseconds).
    var resolution: UInt8 = 6
    var offsetSeconds: Int64 = 0

    var isUsable: Bool {
        resolution & 0x80 == 0 ? resolution <= 19 : resolution & 0x7f <= 63
    }

    func nanoseconds(_ ticks: UInt64) -> UInt64 {
        let exponent = Int(resolution & 0x7f)
        var ns: UInt64
        if resolution & 0x80 == 0 {
            if exponent <= 9 {
                var factor: UInt64 = 1
                for _ in exponent..<9 { factor *= 10 }
                ns = ticks &* factor
            } else {
                var divisor: UInt64 = 1
                for _ in 9..<exponent { divisor *= 10 }
                ns = ticks / divisor
            }
        } else {
            let product = ticks.multipliedFullWidth(by: 1_000_000_000)
            ns = exponent == 0 ? product.low : (product.low >> UInt64(exponent)) | (exponent < 64 ? product.high << UInt64(64 - exponent) : 0)
        }
        return UInt64(Int64(bitPattern: ns) &+ offsetSeconds &* 1_000_000_000)
    }
}
