/// Block types and option codes from draft-ietf-opsawg-pcapng (sections named at each value).
enum BlockType {
    static let section: UInt32 = 0x0A0D_0D0A          // §4.1
    static let interface: UInt32 = 0x0000_0001        // §4.2
    static let statistics: UInt32 = 0x0000_0005       // §4.6
    static let enhancedPacket: UInt32 = 0x0000_0006   // §4.3
    static let decryptionSecrets: UInt32 = 0x0000_000A // §4.7
}

enum OptionCode {
    static let endOfOptions: UInt16 = 0
    static let comment: UInt16 = 1

    static let shbHardware: UInt16 = 2
    static let shbOS: UInt16 = 3
    static let shbUserApplication: UInt16 = 4

    static let ifName: UInt16 = 2
    static let ifDescription: UInt16 = 3
    static let ifTimestampResolution: UInt16 = 9
    static let ifTimestampOffset: UInt16 = 14

    static let epbFlags: UInt16 = 2

    static let isbStartTime: UInt16 = 2
    static let isbEndTime: UInt16 = 3
    static let isbIfRecv: UInt16 = 4
    static let isbIfDrop: UInt16 = 5
    static let isbOSDrop: UInt16 = 7
}

/// The byte-order magic of the SHB, as it reads in the file's own order.
let byteOrderMagic: UInt32 = 0x1A2B_3C4D

/// `if_tsresol` value tlstap writes: 10^-9 s, nanoseconds.
let nanosecondResolution: UInt8 = 9

/// Every block is padded to 32 bits.
@inline(__always) func padded4(_ length: Int) -> Int { (length + 3) & ~3 }
