import TapCore

/// The PcapNG blocks tlstap writes and reads, as values. Timestamps are nanoseconds since the Unix
/// epoch whatever resolution the file used: the writer always writes `if_tsresol` = 9 and the reader
/// converts from the interface's resolution.
public enum Block: Equatable, Sendable {
    case section(SectionHeader)
    case interface(InterfaceDescription)
    case packet(EnhancedPacket)
    case secrets(DecryptionSecrets)
    case statistics(InterfaceStatistics)
}

/// Section Header Block (spec §4.1).
public struct SectionHeader: Equatable, Sendable {
    public var hardware: String?
    public var os: String?
    public var userApplication: String?
    public var comment: String?

    public init(hardware: String? = nil, os: String? = nil, userApplication: String? = nil, comment: String? = nil) {
        self.hardware = hardware
        self.os = os
        self.userApplication = userApplication
        self.comment = comment
    }
}

/// Interface Description Block (spec §4.2). The interface id is its position in the section.
public struct InterfaceDescription: Equatable, Sendable {
    /// A LINKTYPE_ value; tlstap writes those of `TapCore.LinkType`, the reader keeps any.
    public var linkType: UInt16
    public var snapLength: UInt32
    public var name: String?
    public var description: String?
    public var comment: String?

    public init(linkType: UInt16, snapLength: UInt32, name: String? = nil, description: String? = nil, comment: String? = nil) {
        self.linkType = linkType
        self.snapLength = snapLength
        self.name = name
        self.description = description
        self.comment = comment
    }
}

/// Enhanced Packet Block (spec §4.3).
public struct EnhancedPacket: Equatable, Sendable {
    public var interfaceID: UInt32
    public var timestampNs: UInt64
    public var originalLength: UInt32
    public var data: [UInt8]
    /// `epb_flags`; bits 0–1 are the direction (1 inbound, 2 outbound).
    public var flags: UInt32?
    public var comment: String?

    public init(interfaceID: UInt32, timestampNs: UInt64, originalLength: UInt32, data: [UInt8],
                flags: UInt32? = nil, comment: String? = nil) {
        self.interfaceID = interfaceID
        self.timestampNs = timestampNs
        self.originalLength = originalLength
        self.data = data
        self.flags = flags
        self.comment = comment
    }

    public init(interfaceID: UInt32, timestampNs: UInt64, originalLength: UInt32, data: [UInt8], direction: Direction) {
        self.init(interfaceID: interfaceID, timestampNs: timestampNs, originalLength: originalLength, data: data,
                  flags: UInt32(direction.rawValue))
    }

    public var direction: Direction? {
        flags.flatMap { Direction(rawValue: UInt8($0 & 0b11)) }
    }
}

/// Decryption Secrets Block (spec §4.7).
public struct DecryptionSecrets: Equatable, Sendable {
    /// Secrets type for a TLS key log (NSS SSLKEYLOGFILE text), 'TLSK'.
    public static let tlsKeyLog: UInt32 = 0x544c_534b

    public var secretsType: UInt32
    public var data: [UInt8]
    public var comment: String?

    public init(secretsType: UInt32, data: [UInt8], comment: String? = nil) {
        self.secretsType = secretsType
        self.data = data
        self.comment = comment
    }

    /// A TLS key-log DSB holding these lines, one per text line.
    public init(keyLog lines: [KeyLogLine]) {
        let text = lines.map { $0.text + "\n" }.joined()
        self.init(secretsType: Self.tlsKeyLog, data: Array(text.utf8))
    }

    /// The key-log lines of a TLS key-log DSB; empty for other secrets types.
    public var keyLogLines: [KeyLogLine] {
        guard secretsType == Self.tlsKeyLog else { return [] }
        return KeyLogLine.parse(String(decoding: data, as: UTF8.self))
    }
}

/// Interface Statistics Block (spec §4.6).
public struct InterfaceStatistics: Equatable, Sendable {
    public var interfaceID: UInt32
    public var timestampNs: UInt64
    public var startNs: UInt64?
    public var endNs: UInt64?
    /// `isb_ifrecv`
    public var received: UInt64?
    /// `isb_ifdrop`
    public var droppedByInterface: UInt64?
    /// `isb_osdrop`
    public var droppedByOS: UInt64?
    public var comment: String?

    public init(interfaceID: UInt32, timestampNs: UInt64, startNs: UInt64? = nil, endNs: UInt64? = nil,
                received: UInt64? = nil, droppedByInterface: UInt64? = nil, droppedByOS: UInt64? = nil,
                comment: String? = nil) {
        self.interfaceID = interfaceID
        self.timestampNs = timestampNs
        self.startNs = startNs
        self.endNs = endNs
        self.received = received
        self.droppedByInterface = droppedByInterface
        self.droppedByOS = droppedByOS
        self.comment = comment
    }
}
