/// Reads fixed-width fields from one block's bytes in the section's byte order, failing with the
/// absolute file offset of the field that does not fit.
struct FieldReader {
    let bytes: [UInt8]
    let bigEndian: Bool
    /// File offset of `bytes[0]`.
    let baseOffset: UInt64
    var position: Int

    init(bytes: [UInt8], bigEndian: Bool, baseOffset: UInt64, position: Int = 0) {
        self.bytes = bytes
        self.bigEndian = bigEndian
        self.baseOffset = baseOffset
        self.position = position
    }

    var offset: UInt64 { baseOffset + UInt64(position) }

    mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: String, limit: Int? = nil) throws(PcapNGError) -> T {
        let size = MemoryLayout<T>.size
        guard position + size <= (limit ?? bytes.count) else {
            throw PcapNGError(offset: offset, "\(what) runs past the end of its block")
        }
        var value: T = 0
        for index in 0..<size {
            let byte = T(bytes[position + index])
            value |= bigEndian ? byte << (8 * (size - 1 - index)) : byte << (8 * index)
        }
        position += size
        return value
    }

    mutating func readBytes(_ count: Int, _ what: String, limit: Int? = nil) throws(PcapNGError) -> [UInt8] {
        guard count >= 0, position + count <= (limit ?? bytes.count) else {
            throw PcapNGError(offset: offset, "\(what) of \(count) bytes runs past the end of its block")
        }
        defer { position += count }
        return Array(bytes[position..<position + count])
    }

    /// Parses the option list that runs from the current position to `end`, calling `handle` with
    /// each option's code, value and value offset. Stops at opt_endofopt or at `end`.
    mutating func readOptions(end: Int, _ handle: (UInt16, [UInt8], FieldReader) throws(PcapNGError) -> Void) throws(PcapNGError) {
        while position + 4 <= end {
            let code = try read(UInt16.self, "option code", limit: end)
            let length = Int(try read(UInt16.self, "option length", limit: end))
            if code == OptionCode.endOfOptions { return }
            let valueReader = FieldReader(bytes: bytes, bigEndian: bigEndian, baseOffset: baseOffset, position: position)
            let value = try readBytes(length, "option \(code) value", limit: end)
            position += padded4(length) - length
            try handle(code, value, valueReader)
        }
        guard position == end || position + 4 > end else {
            throw PcapNGError(offset: offset, "option list does not end at the block's end")
        }
    }
}

extension [UInt8] {
    /// Option values that are text: UTF-8, sometimes NUL-terminated by other writers.
    var optionString: String {
        String(decoding: prefix { $0 != 0 }, as: UTF8.self)
    }
}
