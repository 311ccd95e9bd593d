import Attach
import Discover
import Foundation
import Glibc
import Logging
import RingBuffer
import TapCore
import Testing

/// Measures how fast the capture path runs on this machine: a UDP flood over a veth pair, both ends
/// attached, default settings (64 MiB ring, snaplen 256 KiB), one consumer polling and copying each
/// packet out of the ring as the pipeline does. The claim it checks: zero drops at that rate.
/// Part of the serialized kernel suite so nothing else competes for the CPU while it measures.
extension CaptureKernelTests {
    @Test func floodAtDefaultSettingsHasNoDrops() throws {
        let pair = try VethPair.make(thread: thread)
        defer { pair.delete() }
        let program = try CaptureProgram()
        defer { program.close() }
        let table = TCAttachmentTable(program: program, netnsThread: thread, logger: logger)
        defer { table.detachAll() }
        for end in [pair.a, pair.b] { try table.attach(netnsPath: end.netnsPath, key: end.key, ifname: end.ifname) }

        var packets = 0, bytes = 0
        let consumer = RingBufferConsumer()
        defer { consumer.close() }
        try consumer.add(mapFD: program.eventsMapFD, name: "events") { raw in
            guard let record = CaptureEventDecoder.decode(raw) else { return }
            let copy = [UInt8](record.bytes) // what the pipeline does with every packet
            packets += 1
            bytes += copy.count
        }
        let sender = Process()
        sender.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        sender.arguments = ["ip", "netns", "exec", pair.a.netns, "python3", "-c", """
            import socket, time
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            payload = b"x" * 1000
            end = time.monotonic() + 2.0
            while time.monotonic() < end:
                for _ in range(100):
                    s.sendto(payload, ("10.86.0.2", 18601))
            """]
        let start = MonotonicToWall.monotonicNowNs()
        try sender.run()
        while sender.isRunning { try consumer.poll(timeoutMs: 100) }
        while try consumer.poll(timeoutMs: 100) > 0 {}
        let seconds = Double(MonotonicToWall.monotonicNowNs() - start) / 1e9
        let drops = try program.readDrops().values.reduce(0, +)
        let rate = Double(packets) / seconds, megabytes = Double(bytes) / seconds / 1e6
        print("capture rate: \(packets) packets in \(String(format: "%.2f", seconds)) s = \(Int(rate)) packets/s, \(String(format: "%.1f", megabytes)) MB/s, \(drops) dropped")
        #expect(packets > 10_000, "the flood produced too few packets to measure")
        #expect(drops == 0)
    }
}
