import Attach
import Discover
import Foundation
import Glibc
import Logging
import RingBuffer
import TapCore
import Testing

/// Measures how fast the capture path runs on this machine: a UDP flood (1000-byte datagrams) over a
/// veth pair with both ends attached at default settings (64 MiB ring, snaplen 256 KiB), one consumer
/// copying each packet out of the ring as the pipeline does. Every datagram is two packets (egress on
/// one end, ingress on the other). Part of the serialized kernel suite so nothing else here competes
/// for the CPU while it measures.
extension CaptureKernelTests {
    /// A counting consumer over a freshly attached pair.
    final class RateRig {
        let pair: VethPair
        let program: CaptureProgram
        let table: TCAttachmentTable
        let consumer = RingBufferConsumer()
        var packets = 0, bytes = 0

        init(thread: NetnsThread, logger: Logger) throws {
            pair = try VethPair.make(thread: thread)
            program = try CaptureProgram()
            table = TCAttachmentTable(program: program, netnsThread: thread, logger: logger)
            for end in [pair.a, pair.b] { try table.attach(netnsPath: end.netnsPath, key: end.key, ifname: end.ifname) }
            try consumer.add(mapFD: program.eventsMapFD, name: "events") { [unowned self] raw in
                guard let record = CaptureEventDecoder.decode(raw) else { return }
                let copy = [UInt8](record.bytes) // what the pipeline does with every packet
                packets += 1
                bytes += copy.count
            }
        }

        /// Starts a sender in namespace A: `seconds` of flooding, or `count` datagrams.
        func sender(seconds: Double = 0, count: Int = 0) throws -> Process {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["ip", "netns", "exec", pair.a.netns, "python3", "-c", """
                import socket, time
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                payload, target = b"x" * 1000, ("10.86.0.2", 18601)
                if \(count) > 0:
                    for _ in range(\(count)): s.sendto(payload, target)
                else:
                    end = time.monotonic() + \(seconds)
                    while time.monotonic() < end:
                        for _ in range(100): s.sendto(payload, target)
                """]
            try process.run()
            return process
        }

        func drops() throws -> UInt64 { try program.readDrops().values.reduce(0, +) }

        func close() {
            consumer.close()
            table.detachAll()
            program.close()
            pair.delete()
        }
    }

    @Test func floodAtDefaultSettingsHasNoDrops() throws {
        let rig = try RateRig(thread: thread, logger: logger)
        defer { rig.close() }
        let start = MonotonicToWall.monotonicNowNs()
        let sender = try rig.sender(seconds: 2)
        while sender.isRunning { try rig.consumer.poll(timeoutMs: 100) }
        while try rig.consumer.poll(timeoutMs: 100) > 0 {}
        let seconds = Double(MonotonicToWall.monotonicNowNs() - start) / 1e9 - 0.1
        let drops = try rig.drops()
        print("capture rate, live: \(rig.packets) packets in \(String(format: "%.2f", seconds)) s = \(Int(Double(rig.packets) / seconds)) packets/s, \(String(format: "%.1f", Double(rig.bytes) / seconds / 1e6)) MB/s, \(drops) dropped")
        #expect(rig.packets > 10_000, "the flood produced too few packets to measure")
        #expect(drops == 0)
    }

    /// How fast the consumer alone empties the ring: fill it without reading (20 000 datagrams =
    /// 40 000 records of ~1 KiB, inside 64 MiB), then time the drain.
    @Test func consumerDrainRate() throws {
        let rig = try RateRig(thread: thread, logger: logger)
        defer { rig.close() }
        let sender = try rig.sender(count: 20_000)
        sender.waitUntilExit()
        let start = MonotonicToWall.monotonicNowNs()
        while try rig.consumer.consume() > 0 {}
        let seconds = Double(MonotonicToWall.monotonicNowNs() - start) / 1e9
        let drops = try rig.drops()
        print("capture rate, consumer alone: \(rig.packets) packets in \(String(format: "%.3f", seconds)) s = \(Int(Double(rig.packets) / seconds)) packets/s, \(String(format: "%.1f", Double(rig.bytes) / seconds / 1e6)) MB/s, \(drops) dropped")
        #expect(rig.packets >= 40_000)
        #expect(drops == 0)
    }
}
