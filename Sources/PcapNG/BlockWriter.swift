// Encodes PcapNG blocks, following draft-ietf-opsawg-pcapng (§3.1 general block structure, §3.5
// options, §4 block types). Every block has this shape, little-endian as tlstap writes it:
//
//     0                   1                   2                   3
//     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//    +---------------------------------------------------------------+
//  0 |                          Block Type                           |
//    +---------------------------------------------------------------+
//  4 |                      Block Total Length                       |
//    +---------------------------------------------------------------+
//  8 /                 fixed body (per block type, padded to 32 bits)/
//    +---------------------------------------------------------------+
//    /  options: { code u16, length u16, value padded to 32 bits }*  /
//    /           then opt_endofopt (0, 0) when there is any option   /
//    +---------------------------------------------------------------+
//    |                      Block Total Length                       |
//    +---------------------------------------------------------------+
//
// A block is sized first (fixed body + the option table), then written header → body → options →
// footer; the option table is built once, so the size and the bytes cannot drift apart.

/// One option as it goes on the wire; the value is unpadded here, padding is the writer's job.
struct EncodedOption {
    var code: UInt16
    var value: [UInt8]

    static func string(_ code: UInt16, _ text: String?) -> EncodedOption? {
        text.map { EncodedOption(code: code, value: Array($0.utf8)) }
    }
    static func u32(_ code: UInt16, _ value: UInt32?) -> EncodedOption? {
        value.map { EncodedOption(code: code, value: ByteWriter.littleEndianBytes($0)) }
    }
    static func u64(_ code: UInt16, _ value: UInt64?) -> EncodedOption? {
        value.map { EncodedOption(code: code, value: ByteWriter.littleEndianBytes($0)) }
    }
    /// A timestamp as EPB/ISB carry it: high 32 bits, then low 32 bits (§4.3, §4.6).
    static func timestamp(_ code: UInt16, _ ns: UInt64?) -> EncodedOption? {
        ns.map { EncodedOption(code: code, value: ByteWriter.littleEndianBytes(UInt32(truncatingIfNeeded: $0 >> 32))
                                               + ByteWriter.littleEndianBytes(UInt32(truncatingIfNeeded: $0))) }
    }
}

/// Appends little-endian fields to a byte array.
struct ByteWriter {
    var bytes: [UInt8]

    static func littleEndianBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }

    mutating func put<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func putPadded(_ data: [UInt8]) {
        bytes.append(contentsOf: data)
        bytes.append(contentsOf: repeatElement(0, count: padded4(data.count) - data.count))
    }
}

/// What one block type contributes: its type code, its fixed body and its option table.
protocol BlockEncoding {
    var blockType: UInt32 { get }
    var fixedBodyLength: Int { get }
    func writeFixedBody(_ writer: inout ByteWriter)
    var options: [EncodedOption] { get }
}

public enum BlockWriter {
    /// Appends the encoding of `block` to `bytes`.
    public static func append(_ block: Block, to bytes: inout [UInt8]) {
        switch block {
        case .section(let b): append(encoding: b, to: &bytes)
        case .interface(let b): append(encoding: b, to: &bytes)
        case .packet(let b): append(encoding: b, to: &bytes)
        case .secrets(let b): append(encoding: b, to: &bytes)
        case .statistics(let b): append(encoding: b, to: &bytes)
        }
    }

    public static func encode(_ block: Block) -> [UInt8] {
        var bytes = [UInt8]()
        append(block, to: &bytes)
        return bytes
    }

    static func append(encoding block: some BlockEncoding, to bytes: inout [UInt8]) {
        let options = block.options
        let optionsLength = options.isEmpty ? 0 : options.reduce(4) { $0 + 4 + padded4($1.value.count) }
        let totalLength = 12 + block.fixedBodyLength + optionsLength
        precondition(totalLength <= Int(UInt32.max), "PcapNG block of \(totalLength) bytes cannot be encoded")

        var writer = ByteWriter(bytes: bytes)
        bytes = []
        let start = writer.bytes.count
        writer.bytes.reserveCapacity(start + totalLength)
        writer.put(block.blockType)
        writer.put(UInt32(totalLength))
        block.writeFixedBody(&writer)
        for option in options {
            writer.put(option.code)
            writer.put(UInt16(option.value.count))
            writer.putPadded(option.value)
        }
        if !options.isEmpty {
            writer.put(OptionCode.endOfOptions)
            writer.put(UInt16(0))
        }
        writer.put(UInt32(totalLength))
        assert(writer.bytes.count - start == totalLength, "block size and bytes drifted apart")
        bytes = writer.bytes
    }
}

extension SectionHeader: BlockEncoding {
    var blockType: UInt32 { BlockType.section }
    var fixedBodyLength: Int { 16 }
    func writeFixedBody(_ writer: inout ByteWriter) {
        writer.put(byteOrderMagic)
        writer.put(UInt16(1))        // major version
        writer.put(UInt16(0))        // minor version
        writer.put(Int64(-1))        // section length: not specified (the writer streams)
    }
    var options: [EncodedOption] {
        [.string(OptionCode.comment, comment), .string(OptionCode.shbHardware, hardware),
         .string(OptionCode.shbOS, os), .string(OptionCode.shbUserApplication, userApplication)].compactMap { $0 }
    }
}

extension InterfaceDescription: BlockEncoding {
    var blockType: UInt32 { BlockType.interface }
    var fixedBodyLength: Int { 8 }
    func writeFixedBody(_ writer: inout ByteWriter) {
        writer.put(linkType)
        writer.put(UInt16(0))        // reserved
        writer.put(snapLength)
    }
    var options: [EncodedOption] {
        [.string(OptionCode.comment, comment), .string(OptionCode.ifName, name),
         .string(OptionCode.ifDescription, description),
         EncodedOption(code: OptionCode.ifTimestampResolution, value: [nanosecondResolution])].compactMap { $0 }
    }
}

extension EnhancedPacket: BlockEncoding {
    var blockType: UInt32 { BlockType.enhancedPacket }
    var fixedBodyLength: Int { 20 + padded4(data.count) }
    func writeFixedBody(_ writer: inout ByteWriter) {
        writer.put(interfaceID)
        writer.put(UInt32(truncatingIfNeeded: timestampNs >> 32))
        writer.put(UInt32(truncatingIfNeeded: timestampNs))
        writer.put(UInt32(data.count))
        writer.put(originalLength)
        writer.putPadded(data)
    }
    var options: [EncodedOption] {
        [.string(OptionCode.comment, comment), .u32(OptionCode.epbFlags, flags)].compactMap { $0 }
    }
}

extension DecryptionSecrets: BlockEncoding {
    var blockType: UInt32 { BlockType.decryptionSecrets }
    var fixedBodyLength: Int { 8 + padded4(data.count) }
    func writeFixedBody(_ writer: inout ByteWriter) {
        writer.put(secretsType)
        writer.put(UInt32(data.count))
        writer.putPadded(data)
    }
    var options: [EncodedOption] {
        [.string(OptionCode.comment, comment)].compactMap { $0 }
    }
}

extension InterfaceStatistics: BlockEncoding {
    var blockType: UInt32 { BlockType.statistics }
    var fixedBodyLength: Int { 12 }
    func writeFixedBody(_ writer: inout ByteWriter) {
        writer.put(interfaceID)
        writer.put(UInt32(truncatingIfNeeded: timestampNs >> 32))
        writer.put(UInt32(truncatingIfNeeded: timestampNs))
    }
    var options: [EncodedOption] {
        [.string(OptionCode.comment, comment), .timestamp(OptionCode.isbStartTime, startNs),
         .timestamp(OptionCode.isbEndTime, endNs), .u64(OptionCode.isbIfRecv, received),
         .u64(OptionCode.isbIfDrop, droppedByInterface), .u64(OptionCode.isbOSDrop, droppedByOS)].compactMap { $0 }
    }
}

extension BlockWriter {
    /// Appends an EPB carrying `epb_flags`, straight from packet bytes: the segment writer's per-packet
    /// path, which builds no `EnhancedPacket`, option table or temporary array. The bytes are exactly
    /// those of `append(.packet(EnhancedPacket(…, flags: flags)))` (a test holds it to that).
    public static func appendEnhancedPacket(interfaceID: UInt32, timestampNs: UInt64, originalLength: UInt32,
                                            flags: UInt32, data: UnsafeRawBufferPointer, to bytes: inout [UInt8]) {
        let padding = padded4(data.count) - data.count
        // header 8 + fixed body 20 + data + padding + epb_flags option 8 + opt_endofopt 4 + footer 4
        let totalLength = UInt32(44 + data.count + padding)
        let head: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) = (
            BlockType.enhancedPacket.littleEndian, totalLength.littleEndian, interfaceID.littleEndian,
            UInt32(truncatingIfNeeded: timestampNs >> 32).littleEndian, UInt32(truncatingIfNeeded: timestampNs).littleEndian,
            UInt32(data.count).littleEndian, originalLength.littleEndian)
        let tail: (UInt16, UInt16, UInt32, UInt16, UInt16, UInt32) = (
            OptionCode.epbFlags.littleEndian, UInt16(4).littleEndian, flags.littleEndian,
            OptionCode.endOfOptions.littleEndian, 0, totalLength.littleEndian)
        withUnsafeBytes(of: head) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: data)
        if padding > 0 { withUnsafeBytes(of: UInt32(0)) { bytes.append(contentsOf: $0.prefix(padding)) } }
        withUnsafeBytes(of: tail) { bytes.append(contentsOf: $0) }
    }
}
