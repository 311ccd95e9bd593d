/// Packet direction relative to the interface, as PcapNG `epb_flags` bits 0–1 encode it.
public enum Direction: UInt8, Sendable {
    case inbound = 1
    case outbound = 2
}

/// A packet as the pipeline carries it from the ring buffer to the segment writer.
public struct CapturedPacket: Sendable, Equatable {
    public var interface: InterfaceKey
    /// Wall-clock time, nanoseconds since the Unix epoch (converted from kernel monotonic time).
    public var timestampNs: UInt64
    public var direction: Direction
    /// Length on the wire; `data` may be shorter (snaplen).
    public var originalLength: UInt32
    public var data: [UInt8]

    public init(interface: InterfaceKey, timestampNs: UInt64, direction: Direction, originalLength: UInt32, data: [UInt8]) {
        self.interface = interface
        self.timestampNs = timestampNs
        self.direction = direction
        self.originalLength = originalLength
        self.data = data
    }
}
