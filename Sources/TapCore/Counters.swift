/// Per-interface counters as ISBs and `tlstap status` report them.
public struct InterfaceCounters: Sendable, Equatable {
    /// Packets the BPF program saw (delivered + dropped): ISB `isb_ifrecv`.
    public var received: UInt64 = 0
    /// Packets lost because the ring buffer was full: ISB `isb_ifdrop`.
    public var droppedByRing: UInt64 = 0
    /// Packets that arrived later than the reorder window allowed, or could not be written
    /// (full disk): ISB `isb_osdrop`.
    public var droppedByTapper: UInt64 = 0

    public init(received: UInt64 = 0, droppedByRing: UInt64 = 0, droppedByTapper: UInt64 = 0) {
        self.received = received
        self.droppedByRing = droppedByRing
        self.droppedByTapper = droppedByTapper
    }
}

/// Where the segment writer gets the secrets of sessions still live, to write at the head of each new
/// segment (contract guarantee 3). Implemented by the TLS session table; unit tests use a double.
public protocol LiveSecretsProvider: AnyObject {
    func liveSecrets(nowWallNs: UInt64) -> [KeyLogLine]
}
