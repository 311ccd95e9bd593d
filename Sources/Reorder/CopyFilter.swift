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
/// released from *another* interface within `windowNs`. A repeat on the same interface (a real retransmission) is never a copy.
/// Works on packets in time order (after the reorder buffer). Not thread-safe: the pipeline owns it.
public struct CopyFilter {
    private struct Seen {
        var timeNs: UInt64
        var interface: InterfaceKey
    }

    public let windowNs: UInt64
    private var recent: [Int: Seen] = [:]
    private var order: [(timeNs: UInt64, fingerprint: Int)] = []
    private var orderStart = 0

    public init(windowNs: UInt64 = 50_000_000) {
        self.windowNs = windowNs
    }

    /// True if `packet` is a copy of one seen on another interface within the window. `networkOffset`
    /// is where the IP header starts (14 after an Ethernet header, 0 on raw-IP devices).
    public mutating func isCopy(_ packet: CapturedPacket, networkOffset: Int) -> Bool {
        expire(before: packet.timestampNs >= windowNs ? packet.timestampNs - windowNs : 0)
        guard packet.data.count > networkOffset else { return false }
        let fingerprint = Self.fingerprint(packet, networkOffset: networkOffset)
        if let seen = recent[fingerprint], seen.interface != packet.interface {
            return true
        }
        recent[fingerprint] = Seen(timeNs: packet.timestampNs, interface: packet.interface)
        order.append((packet.timestampNs, fingerprint))
        return false
    }

    private mutating func expire(before oldestNs: UInt64) {
        while orderStart < order.count, order[orderStart].timeNs < oldestNs {
            let entry = order[orderStart]
            if let seen = recent[entry.fingerprint], seen.timeNs == entry.timeNs { recent[entry.fingerprint] = nil }
            orderStart += 1
        }
        if orderStart > 4096 && orderStart * 2 > order.count {
            order.removeFirst(orderStart)
            orderStart = 0
        }
    }

    /// Bytes hashed from the network header on: the IP and TCP/UDP headers (addresses, ports, IP ID,
    /// sequence and acknowledgement numbers) and the start of the payload already tell two packets
    /// apart within the window; hashing whole 64 KB GSO packets cost a third of the daemon's CPU.
    static let fingerprintBytes = 128

    static func fingerprint(_ packet: CapturedPacket, networkOffset: Int) -> Int {
        var hasher = Hasher()
        hasher.combine(packet.originalLength)
        packet.data.withUnsafeBytes { bytes in
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
        }
        return hasher.finalize()
    }
}
