import CLibBPF
import Attach
import Discover
import Foundation
import Glibc
import Logging
import RingBuffer
import TapCore
import Testing

/// A captured packet copied out of the ring.
struct Captured {
    var interface: CaptureInterfaceID
    var monotonicNs: UInt64
    var direction: Direction
    var originalLength: UInt32
    var bytes: [UInt8]
}

/// Collects every record of the `events` ring; undecodable records are counted, never silently lost.
final class Collector {
    var packets: [Captured] = []
    var undecodable = 0
    let consumer = RingBufferConsumer()

    init(_ program: CaptureProgram) throws {
        for (cpu, ring) in program.eventsMapFDs.enumerated() {
            try consumer.add(mapFD: ring, name: "events of CPU \(cpu)") { [unowned self] raw in
                guard let record = CaptureEventDecoder.decode(raw) else { undecodable += 1; return }
                packets.append(Captured(interface: record.interface, monotonicNs: record.monotonicNs, direction: record.direction,
                                        originalLength: record.originalLength, bytes: [UInt8](record.bytes)))
            }
        }
    }

    /// Polls until the ring stays empty for `idleMs`.
    func drain(idleMs: Int32 = 200) throws {
        while try consumer.poll(timeoutMs: idleMs) > 0 {}
    }

    func close() { consumer.close() }
}

/// Real kernel, real interfaces, tcpdump as the judge. Runs as root; serialized because the tests
/// share the CPU and measure time.
@Suite(.serialized) final class CaptureKernelTests {
    let thread: NetnsThread
    let logger = Logger(label: "capture-tests")

    init() throws {
        thread = try NetnsThread(name: "capture-tests")
        LibBPFLog.route(to: logger)
    }
    deinit { thread.shutdown() }

    @Test func capturesExactlyWhatTcpdumpSees() throws {
        let pair = try VethPair.make(thread: thread)
        defer { pair.delete() }
        let program = try CaptureProgram(configuration: .init(ringBytes: 4 << 20))
        defer { program.close() }
        let table = TCAttachmentTable(program: program, netnsThread: thread, logger: logger)
        defer { table.detachAll() }
        let collector = try Collector(program)
        defer { collector.close() }
        for end in [pair.a, pair.b] { try table.attach(netnsPath: end.netnsPath, netnsCookie: end.netnsCookie, key: end.key, ifname: end.ifname) }
        #expect(table.count == 2)
        #expect(try pair.a.hasTLSTapFilter() && pair.b.hasTLSTapFilter())
        let dumps = [try TCPDump(on: pair.a), try TCPDump(on: pair.b)]

        try pair.a.exec("ping", "-c", "3", "-i", "0.2", "10.86.0.2")
        try pair.a.exec("ping", "-c", "2", "-i", "0.2", "-s", "1400", "10.86.0.2")
        // UDP of several sizes (3000 bytes is fragmented) to a closed port in the range reserved for
        // these tests: B answers with ICMP port unreachable.
        try pair.a.exec("bash", "-c", "for n in 10 1000 3000; do head -c $n /dev/zero | tr '\\0' x > /dev/udp/10.86.0.2/18600; sleep 0.05; done")
        usleep(300_000)
        let seen = [try dumps[0].stop(), try dumps[1].stop()]
        try collector.drain()
        table.detachAll()
        #expect(table.count == 0)
        #expect(try !pair.a.hasTLSTapFilter() && !pair.b.hasTLSTapFilter(), "tc filter show still lists tlstap after detach")
        for end in [pair.a, pair.b] { // tlstap created these clsact qdiscs, so it removed them again
            #expect(try !sh("tc", "-n", end.netns, "qdisc", "show", "dev", end.ifname).contains("clsact"))
        }
        #expect(collector.undecodable == 0)

        let clock = MonotonicToWall()
        var worstSkewNs: Int64 = 0
        for (end, dump) in zip([pair.a, pair.b], seen) {
            let id = CaptureInterfaceID(netnsCookie: end.netnsCookie, ifindex: end.ifindex)
            var ours = collector.packets.filter { $0.interface == id }
            #expect(dump.count >= 14, "tcpdump on \(end.ifname) saw too little traffic: \(dump.count)")
            #expect(ours.count == dump.count, "\(end.ifname): tlstap captured \(ours.count) packets, tcpdump \(dump.count)")
            #expect(Set(ours.map(\.direction)) == [.inbound, .outbound])
            for packet in dump {
                let match = ours.firstIndex { mine in
                    mine.bytes == packet.bytes && abs(Int64(clock.wallNs(fromMonotonic: mine.monotonicNs)) - Int64(packet.wallNs)) < 1_000_000
                }
                guard let match else {
                    Issue.record("\(end.ifname): no captured packet with the bytes of tcpdump's \(packet.bytes.count)-byte packet within 1 ms")
                    continue
                }
                let mine = ours.remove(at: match)
                worstSkewNs = max(worstSkewNs, abs(Int64(clock.wallNs(fromMonotonic: mine.monotonicNs)) - Int64(packet.wallNs)))
                #expect(mine.originalLength == packet.originalLength)
                #expect(mine.direction == Self.direction(of: mine.bytes, localAddress: end.address), "\(end.ifname): wrong direction")
            }
            let firstSeen = dump.first?.wallNs ?? 0
            #expect(ours.count == 0, "\(end.ifname): captured but not seen by tcpdump: \(ours.map { "\($0.direction) \($0.bytes.count) bytes at \((Int64(clock.wallNs(fromMonotonic: $0.monotonicNs)) - Int64(firstSeen)) / 1000) µs" })")
        }
        print("capture vs tcpdump: worst timestamp difference \(worstSkewNs) ns")
    }

    @Test func snaplenCutsThePacketButKeepsItsLength() throws {
        let pair = try VethPair.make(thread: thread)
        defer { pair.delete() }
        let program = try CaptureProgram(configuration: .init(snaplen: 100, ringBytes: 1 << 20))
        defer { program.close() }
        let table = TCAttachmentTable(program: program, netnsThread: thread, logger: logger)
        defer { table.detachAll() }
        let collector = try Collector(program)
        defer { collector.close() }
        try table.attach(netnsPath: pair.a.netnsPath, netnsCookie: pair.a.netnsCookie, key: pair.a.key, ifname: pair.a.ifname)
        try pair.a.exec("ping", "-c", "1", "-s", "1000", "10.86.0.2")
        try collector.drain()
        let large = collector.packets.filter { $0.originalLength == 14 + 20 + 8 + 1000 }
        #expect(large.count == 2) // the echo request out, the reply in
        #expect(large.allSatisfy { $0.bytes.count == 100 })
    }

    @Test func noLeaksOver50NamespaceLifetimes() throws {
        let program = try CaptureProgram(configuration: .init(ringBytes: 1 << 16))
        defer { program.close() }
        let table = TCAttachmentTable(program: program, netnsThread: thread, logger: logger)
        defer { table.detachAll() }
        let tag = String(UInt16.random(in: 0..<UInt16.max), radix: 16)
        func cycle(_ index: Int) throws {
            let netns = "cp\(tag)l\(index)", path = "/run/netns/cp\(tag)l\(index)"
            try sh("ip", "netns", "add", netns)
            try sh("ip", "link", "add", "cpl\(tag)a", "netns", netns, "type", "veth", "peer", "name", "cpl\(tag)b", "netns", netns)
            var info = stat()
            stat(path, &info)
            var keys: [InterfaceKey] = []
            for name in ["cpl\(tag)a", "cpl\(tag)b"] {
                let ifindex = UInt32(try sh("ip", "netns", "exec", netns, "cat", "/sys/class/net/\(name)/ifindex").filter(\.isNumber))!
                let key = InterfaceKey(netnsInode: UInt64(info.st_ino), ifindex: ifindex)
                try table.attach(netnsPath: path, netnsCookie: try netnsCookie(path: path, thread: thread), key: key, ifname: name)
                keys.append(key)
            }
            #expect(try sh("tc", "-n", netns, "filter", "show", "dev", "cpl\(tag)a", "ingress").contains("tlstap_ingress"))
            if index % 2 == 0 {
                for key in keys { try table.detach(key) } // detach, then the namespace goes
                try sh("ip", "netns", "del", netns)
            } else {
                try sh("ip", "netns", "del", netns) // the namespace goes first: detaching finds it gone
                table.detachNamespace(inode: UInt64(info.st_ino))
            }
        }
        try cycle(1000) // warm-up: lazily opened fds (Foundation, libbpf) are not leaks
        let baseline = openFDs()
        for index in 0..<50 { try cycle(index) }
        #expect(table.count == 0)
        let after = openFDs()
        // A leak is an fd that was not there before. The concurrency runtime's own eventfds, epoll and
        // timerfds come and go with its worker threads, so fewer of those afterwards is not a finding.
        var leftover = after
        for fd in baseline { if let index = leftover.firstIndex(of: fd) { leftover.remove(at: index) } }
        #expect(leftover.isEmpty, "\(baseline.count) fds before, \(after.count) after 50 cycles; new: \(leftover)")
        #expect(program.instanceCount == 0, "per-namespace program instances left loaded")
    }

    /// Runs capture-probe (the production attach code in another process) and kills it with -9.
    func leaveStaleFilters(on end: VethEnd) throws {
        let probe = URL(fileURLWithPath: try String(decoding: readLink("/proc/self/exe"), as: UTF8.self))
            .deletingLastPathComponent().appendingPathComponent("capture-probe")
        let process = Process()
        process.executableURL = probe
        process.arguments = [end.netnsPath, "\(end.ifindex)", end.ifname]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let said = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        #expect(said.contains("attached"), "capture-probe did not attach: \(said)")
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(try end.hasTLSTapFilter(), "kill -9 should leave the classic tc filters behind")
    }

    @Test func staleFiltersOfAKilledProcessAreRemoved() throws {
        let pair = try VethPair.make(thread: thread)
        defer { pair.delete() }
        try leaveStaleFilters(on: pair.a)
        let removed = try TCAttachment.removeStaleFilters(netnsPath: pair.a.netnsPath, ifindex: pair.a.ifindex,
                                                          ifname: pair.a.ifname, using: thread)
        #expect(removed == 2)
        #expect(try !pair.a.hasTLSTapFilter())
        #expect(try TCAttachment.removeStaleFilters(netnsPath: pair.a.netnsPath, ifindex: pair.a.ifindex,
                                                    ifname: pair.a.ifname, using: thread) == 0)
    }

    @Test func attachingOverStaleFiltersTakesTheirPlace() throws {
        let pair = try VethPair.make(thread: thread)
        defer { pair.delete() }
        try leaveStaleFilters(on: pair.a)
        let program = try CaptureProgram(configuration: .init(ringBytes: 1 << 16))
        defer { program.close() }
        let attachment = try TCAttachment.attach(try program.instance(forNetnsCookie: pair.a.netnsCookie),
                                                 directions: [.inbound, .outbound], netnsPath: pair.a.netnsPath,
                                                 netnsCookie: pair.a.netnsCookie, key: pair.a.key,
                                                 ifname: pair.a.ifname, using: thread)
        defer { if attachment.isAttached { try? attachment.detach(using: thread) } }
        let collector = try Collector(program)
        defer { collector.close() }
        try pair.a.exec("ping", "-c", "1", "10.86.0.2")
        try collector.drain(idleMs: 50)
        #expect(collector.packets.count >= 2, "the new programs are not the ones attached")
        try attachment.detach(using: thread)
        #expect(try !pair.a.hasTLSTapFilter())
    }

    @Test func aFloodLargerThanTheRingIsCountedAsDrops() throws {
        let pair = try VethPair.make(thread: thread)
        defer { pair.delete() }
        let program = try CaptureProgram(configuration: .init(ringBytes: 1 << 16))
        defer { program.close() }
        let table = TCAttachmentTable(program: program, netnsThread: thread, logger: logger)
        defer { table.detachAll() }
        let collector = try Collector(program)
        defer { collector.close() }
        try table.attach(netnsPath: pair.a.netnsPath, netnsCookie: pair.a.netnsCookie, key: pair.a.key, ifname: pair.a.ifname)
        let before = try pair.a.packetCount()
        // Nobody reads the ring during the flood: 4000 records of 160 bytes cannot fit in 64 KiB.
        try pair.a.exec("ping", "-f", "-q", "-c", "2000", "10.86.0.2")
        let after = try pair.a.packetCount()
        try collector.drain(idleMs: 50)
        let id = CaptureInterfaceID(netnsCookie: pair.a.netnsCookie, ifindex: pair.a.ifindex)
        let drops = try program.readDrops()[id] ?? 0
        let delivered = UInt64(collector.packets.filter { $0.interface == id }.count)
        #expect(drops > 0)
        #expect(delivered + drops == after - before, "delivered \(delivered) + dropped \(drops) ≠ \(after - before) packets on the interface")
        print("flood into a 64 KiB ring: \(after - before) packets, \(delivered) delivered, \(drops) dropped")
    }

    static func direction(of frame: [UInt8], localAddress: String) -> Direction? {
        let local = localAddress.split(separator: ".").map { UInt8($0)! }
        switch (frame[12], frame[13]) {
        case (0x08, 0x00): return Array(frame[26..<30]) == local ? .outbound : .inbound // IPv4 source
        case (0x08, 0x06): return Array(frame[28..<32]) == local ? .outbound : .inbound // ARP sender
        default: return nil
        }
    }
}

func readLink(_ path: String) throws -> [UInt8] {
    var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX))
    let length = readlink(path, &buffer, buffer.count)
    guard length > 0 else { throw TestFailure("readlink \(path)") }
    return Array(buffer[0..<length])
}

extension CaptureKernelTests {
    @Test func aForeignFilterAtTLSTapsPlaceIsNeverReplacedNorRemoved() throws {
        let pair = try VethPair.make(thread: thread)
        defer { pair.delete() }
        // Another tool's (classic BPF) filter that happens to use tlstap's handle and priority.
        try sh("tc", "-n", pair.a.netns, "qdisc", "add", "dev", pair.a.ifname, "clsact")
        try sh("tc", "-n", pair.a.netns, "filter", "add", "dev", pair.a.ifname, "ingress", "protocol", "all",
               "prio", "\(TCAttachment.priority)", "handle", "0x\(String(TCAttachment.handle, radix: 16))",
               "bpf", "bytecode", "1,6 0 0 4294967295,")
        let program = try CaptureProgram(configuration: .init(ringBytes: 1 << 16))
        defer { program.close() }
        let table = TCAttachmentTable(program: program, netnsThread: thread, logger: logger)
        defer { table.detachAll() }

        #expect(try TCAttachment.removeStaleFilters(netnsPath: pair.a.netnsPath, ifindex: pair.a.ifindex,
                                                    ifname: pair.a.ifname, using: thread) == 0)
        #expect(throws: (any Error).self) {
            try table.attach(netnsPath: pair.a.netnsPath, netnsCookie: pair.a.netnsCookie, key: pair.a.key, ifname: pair.a.ifname)
        }
        #expect(table.count == 0)
        let ingress = try sh("tc", "-n", pair.a.netns, "filter", "show", "dev", pair.a.ifname, "ingress")
        #expect(ingress.contains("bytecode") || ingress.contains("ops"), "the foreign filter is gone: \(ingress)")
        #expect(!ingress.contains("tlstap"))
        #expect(try sh("tc", "-n", pair.a.netns, "filter", "show", "dev", pair.a.ifname, "egress").isEmpty,
                "a failed attach must not leave the egress filter behind")
        #expect(try sh("tc", "-n", pair.a.netns, "qdisc", "show", "dev", pair.a.ifname).contains("clsact"),
                "the clsact qdisc tlstap did not create must stay")
    }
}

extension CaptureKernelTests {
    @Test func oneConsumerReadsSeveralRingsEachWithItsOwnHandler() throws {
        let pair = try VethPair.make(thread: thread)
        defer { pair.delete() }
        let first = try CaptureProgram(configuration: .init(ringBytes: 1 << 20))
        defer { first.close() }
        let second = try CaptureProgram(configuration: .init(ringBytes: 1 << 20))
        defer { second.close() }
        let tableA = TCAttachmentTable(program: first, netnsThread: thread, logger: logger)
        defer { tableA.detachAll() }
        let tableB = TCAttachmentTable(program: second, netnsThread: thread, logger: logger)
        defer { tableB.detachAll() }
        try tableA.attach(netnsPath: pair.a.netnsPath, netnsCookie: pair.a.netnsCookie, key: pair.a.key, ifname: pair.a.ifname)
        try tableB.attach(netnsPath: pair.b.netnsPath, netnsCookie: pair.b.netnsCookie, key: pair.b.key, ifname: pair.b.ifname)

        var seenByFirst: [CaptureInterfaceID] = [], seenBySecond: [CaptureInterfaceID] = []
        let consumer = RingBufferConsumer()
        defer { consumer.close() }
        for ring in first.eventsMapFDs {
            try consumer.add(mapFD: ring, name: "first") { raw in
                if let record = CaptureEventDecoder.decode(raw) { seenByFirst.append(record.interface) }
            }
        }
        for ring in second.eventsMapFDs {
            try consumer.add(mapFD: ring, name: "second") { raw in
                if let record = CaptureEventDecoder.decode(raw) { seenBySecond.append(record.interface) }
            }
        }
        try pair.a.exec("ping", "-c", "2", "-i", "0.2", "10.86.0.2")
        while try consumer.poll(timeoutMs: 100) > 0 {}
        let a = CaptureInterfaceID(netnsCookie: pair.a.netnsCookie, ifindex: pair.a.ifindex)
        let b = CaptureInterfaceID(netnsCookie: pair.b.netnsCookie, ifindex: pair.b.ifindex)
        #expect(seenByFirst.count >= 4 && seenByFirst.allSatisfy { $0 == a })
        #expect(seenBySecond.count >= 4 && seenBySecond.allSatisfy { $0 == b })
    }
}

extension CaptureKernelTests {
    /// Each possible CPU has a ring of its own, and a packet sent from a CPU is recorded in that CPU's
    /// ring: its egress on the sender and its ingress on the veth peer both run there.
    @Test func aPacketIsRecordedInTheRingOfTheCPUItCrossed() throws {
        let cpus = Int(libbpf_num_possible_cpus())
        let pair = try VethPair.make(thread: thread)
        defer { pair.delete() }
        let program = try CaptureProgram(configuration: .init(ringBytes: 1 << 20))
        defer { program.close() }
        #expect(program.eventsMapFDs.count == cpus)
        #expect(Set(program.eventsMapFDs).count == cpus)
        let table = TCAttachmentTable(program: program, netnsThread: thread, logger: logger)
        defer { table.detachAll() }
        for end in [pair.a, pair.b] {
            try table.attach(netnsPath: end.netnsPath, netnsCookie: end.netnsCookie, key: end.key, ifname: end.ifname)
        }
        var recordsByRing = [Int](repeating: 0, count: cpus)
        let consumer = RingBufferConsumer()
        defer { consumer.close() }
        for (cpu, ring) in program.eventsMapFDs.enumerated() {
            try consumer.add(mapFD: ring, name: "CPU \(cpu)") { raw in
                if CaptureEventDecoder.decode(raw) != nil { recordsByRing[cpu] += 1 }
            }
        }
        let onlineCPUs = Set(try String(contentsOfFile: "/sys/devices/system/cpu/online", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",").flatMap { range -> [Int] in
                let bounds = range.split(separator: "-").compactMap { Int($0) }
                return bounds.count == 2 ? Array(bounds[0]...bounds[1]) : bounds
            })
        for cpu in [0, cpus - 1] where onlineCPUs.contains(cpu) {
            recordsByRing = [Int](repeating: 0, count: cpus)
            _ = try pair.a.exec("taskset", "-c", "\(cpu)", "ping", "-c", "3", "-i", "0.2", "10.86.0.2")
            while try consumer.poll(timeoutMs: 100) > 0 {}
            // 3 requests and 3 replies, each on both ends: all on the pinned CPU.
            #expect(recordsByRing[cpu] >= 12, "CPU \(cpu): \(recordsByRing)")
            #expect(recordsByRing.enumerated().allSatisfy { $0.offset == cpu || $0.element == 0 }, "CPU \(cpu): \(recordsByRing)")
        }
    }

    @Test func theRingSizeIsSharedOutOverCPUs() {
        #expect(CaptureProgram.ringBytesPerCPU(total: 64 << 20, cpus: 2, pageSize: 4096) == 32 << 20)
        #expect(CaptureProgram.ringBytesPerCPU(total: 64 << 20, cpus: 3, pageSize: 4096) == 16 << 20)
        // Never below 4 MiB a CPU (so 64 CPUs take 256 MiB), unless less was configured in all.
        #expect(CaptureProgram.ringBytesPerCPU(total: 64 << 20, cpus: 64, pageSize: 4096) == 4 << 20)
        #expect(CaptureProgram.ringBytesPerCPU(total: 64 << 10, cpus: 64, pageSize: 4096) == 64 << 10)
        #expect(CaptureProgram.ringBytesPerCPU(total: 4096, cpus: 4, pageSize: 4096) == 4096)
        #expect(CaptureProgram.ringBytesPerCPU(total: 1 << 30, cpus: 1, pageSize: 4096) == 1 << 30)
    }
}
