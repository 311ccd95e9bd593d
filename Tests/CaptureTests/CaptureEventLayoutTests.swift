import Attach
import CLibBPF
import RingBuffer
import TapCore
import Testing

/// Pins the ring record ABI of bpf/capture.h: the kernel writes exactly this layout.
@Suite struct CaptureEventLayoutTests {
    @Test func captureEventLayoutIsPinned() {
        #expect(MemoryLayout<capture_event>.size == 32)
        #expect(MemoryLayout<capture_event>.offset(of: \.ts_ns) == 0)
        #expect(MemoryLayout<capture_event>.offset(of: \.netns_cookie) == 8)
        #expect(MemoryLayout<capture_event>.offset(of: \.ifindex) == 16)
        #expect(MemoryLayout<capture_event>.offset(of: \.orig_len) == 20)
        #expect(MemoryLayout<capture_event>.offset(of: \.cap_len) == 24)
        #expect(MemoryLayout<capture_event>.offset(of: \.direction) == 28)
        #expect(MemoryLayout<capture_iface>.size == 16)
        #expect(CaptureEventDecoder.headerSize == 32)
    }

    @Test func decodesARecordAndRejectsBrokenOnes() {
        var event = capture_event()
        event.ts_ns = 123_456_789
        event.netns_cookie = 4096
        event.ifindex = 7
        event.orig_len = 1500
        event.cap_len = 3
        event.direction = UInt32(CAPTURE_OUTBOUND.rawValue)
        // A ring record: header, data, then the unused tail of the reservation bucket.
        let record = withUnsafeBytes(of: event) { [UInt8]($0) } + [0xaa, 0xbb, 0xcc] + [UInt8](repeating: 0, count: 13)
        record.withUnsafeBytes { raw in
            let decoded = CaptureEventDecoder.decode(raw)
            #expect(decoded?.interface == CaptureInterfaceID(netnsCookie: 4096, ifindex: 7))
            #expect(decoded?.monotonicNs == 123_456_789)
            #expect(decoded?.direction == .outbound)
            #expect(decoded?.originalLength == 1500)
            #expect(decoded.map { [UInt8]($0.bytes) } == [0xaa, 0xbb, 0xcc])
            #expect(CaptureEventDecoder.decode(UnsafeRawBufferPointer(rebasing: raw[0..<34])) == nil) // data cut short
            #expect(CaptureEventDecoder.decode(UnsafeRawBufferPointer(rebasing: raw[0..<20])) == nil) // header cut short
        }
        var bad = event
        bad.direction = 9
        withUnsafeBytes(of: bad) { #expect(CaptureEventDecoder.decode($0) == nil) }
    }
}
