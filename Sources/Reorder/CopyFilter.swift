import TapCore

/// Recognises the copies of one packet seen on several interfaces — a veth pair's two ends, a
/// bridge's ports — so a segment can hold each packet once, on the first interface it crossed.
///
/// Wireshark treats a later copy as a TCP retransmission; TLS over TCP survives that, but dissectors
/// that switch to TLS in-band keep per-conversation state that copies corrupt (MySQL's does: a copied
/// Server Greeting is parsed as a Response and its TLS is never found). See ARCHITECTURE.md.
///
/// A copy is a packet of the same length whose first 128 bytes from the network header on — with the
/// IPv4 TTL and checksum and the IPv6 hop limit masked, which routing changes — equal those of a packet
/// released from *another* interface within `windowNs`. A repeat on the same interface (a real
/// retransmission) is never a copy. Works on packets in time order (after the reorder buffer).
///
/// What was seen lives in `RecentPackets` (one cache line per packet). Not thread-safe: the pipeline
/// owns it.
public struct CopyFilter {
    public let windowNs: UInt64
    private var recent: RecentPackets

    public init(windowNs: UInt64 = 50_000_000) {
        self.windowNs = windowNs
        recent = RecentPackets(windowNs: windowNs)
    }

    /// True if `packet` is a copy of one seen on another interface within the window. `networkOffset`
    /// is where the IP header starts (14 after an Ethernet header, 0 on raw-IP devices).
    public mutating func isCopy(_ packet: PacketView, networkOffset: Int) -> Bool {
        guard packet.bytes.count > networkOffset else { return false }
        return recent.isCopy(Self.fingerprint(packet, networkOffset: networkOffset), timeNs: packet.timestampNs,
                             interface: packet.interface)
    }

    /// Bytes hashed from the network header on: the IP and TCP/UDP headers (addresses, ports, IP ID,
    /// sequence and acknowledgement numbers) and the start of the payload already tell two packets
    /// apart within the window; hashing whole 64 KB GSO packets cost a third of the daemon's CPU.
    static let fingerprintBytes = 128

    /// SipHash (Swift's per-process seeded `Hasher`), so packets cannot be crafted to collide with
    /// another and get it dropped as a copy.
    static func fingerprint(_ packet: PacketView, networkOffset: Int) -> UInt64 {
        var hasher = Hasher()
        hasher.combine(packet.originalLength)
        let bytes = packet.bytes
        let end = min(bytes.count, networkOffset + fingerprintBytes)
        let ip = UnsafeRawBufferPointer(rebasing: bytes[networkOffset..<end])
        func add(_ range: Range<Int>) {
            let clamped = range.clamped(to: 0..<ip.count)
            if !clamped.isEmpty { hasher.combine(bytes: UnsafeRawBufferPointer(rebasing: ip[clamped])) }
        }
        switch ip.first.map({ $0 >> 4 }) {
        case 4: // skip TTL (8) and header checksum (10–11)
            add(0..<8)
            add(9..<10)
            add(12..<ip.count)
        case 6: // skip hop limit (7)
            add(0..<7)
            add(8..<ip.count)
        default:
            add(0..<ip.count)
        }
        return UInt64(bitPattern: Int64(hasher.finalize()))
    }
}
