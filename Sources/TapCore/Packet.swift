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

/// A packet whose bytes live elsewhere — in the ring buffer or the reorder buffer's arena — for the
/// length of one call. The hot path passes these instead of `CapturedPacket` so that no packet gets an
/// allocation of its own between the kernel and the compressor.
public struct PacketView {
    public var interface: InterfaceKey
    public var timestampNs: UInt64
    public var direction: Direction
    public var originalLength: UInt32
    /// Valid only during the call that hands the view over.
    public var bytes: UnsafeRawBufferPointer

    public init(interface: InterfaceKey, timestampNs: UInt64, direction: Direction, originalLength: UInt32,
                bytes: UnsafeRawBufferPointer) {
        self.interface = interface
        self.timestampNs = timestampNs
        self.direction = direction
        self.originalLength = originalLength
        self.bytes = bytes
    }
}

extension CapturedPacket {
    /// Calls `body` with a view of this packet's bytes.
    public func withView<Result>(_ body: (PacketView) throws -> Result) rethrows -> Result {
        try data.withUnsafeBytes { bytes in
            try body(PacketView(interface: interface, timestampNs: timestampNs, direction: direction,
                                originalLength: originalLength, bytes: bytes))
        }
    }

    /// A copy of what `view` shows, for callers that keep packets.
    public init(_ view: PacketView) {
        self.init(interface: view.interface, timestampNs: view.timestampNs, direction: view.direction,
                  originalLength: view.originalLength, data: [UInt8](view.bytes))
    }
}
