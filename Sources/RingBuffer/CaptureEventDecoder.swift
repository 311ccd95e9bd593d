import Attach
import CLibBPF
import TapCore

/// One packet as the capture program put it into the ring (`struct capture_event` of bpf/capture.h).
/// `bytes` points into the ring: valid only inside the ring buffer handler.
public struct CaptureRecord {
    public var interface: CaptureInterfaceID
    /// Kernel CLOCK_MONOTONIC nanoseconds (`bpf_ktime_get_ns`).
    public var monotonicNs: UInt64
    public var direction: Direction
    /// Length on the wire; `bytes` may be shorter (snaplen).
    public var originalLength: UInt32
    public var bytes: UnsafeRawBufferPointer

    /// The pipeline's packet, its time converted to wall clock; the bytes are still the ring's.
    public func view(interface key: InterfaceKey, clock: MonotonicToWall) -> PacketView {
        PacketView(interface: key, timestampNs: clock.wallNs(fromMonotonic: monotonicNs), direction: direction,
                   originalLength: originalLength, bytes: bytes)
    }
}

/// Decodes raw ring records. The layout is the C struct itself (imported from bpf/capture.h through
/// the CLibBPF shim), so there is one definition of the ABI; the tests pin its size and offsets.
public enum CaptureEventDecoder {
    public static let headerSize = MemoryLayout<capture_event>.size

    /// nil for a record too short for its header or its declared data, or with an unknown direction.
    public static func decode(_ raw: UnsafeRawBufferPointer) -> CaptureRecord? {
        guard raw.count >= headerSize else { return nil }
        let event = raw.loadUnaligned(as: capture_event.self)
        let direction: Direction
        switch event.direction {
        case UInt32(CAPTURE_INBOUND.rawValue): direction = .inbound
        case UInt32(CAPTURE_OUTBOUND.rawValue): direction = .outbound
        default: return nil
        }
        let length = Int(event.cap_len)
        guard raw.count - headerSize >= length else { return nil }
        return CaptureRecord(
            interface: CaptureInterfaceID(netnsCookie: event.netns_cookie, ifindex: event.ifindex),
            monotonicNs: event.ts_ns, direction: direction, originalLength: event.orig_len,
            bytes: UnsafeRawBufferPointer(rebasing: raw[headerSize..<headerSize + length]))
    }
}
