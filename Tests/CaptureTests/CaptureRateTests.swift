import CLibBPF
import Attach
import Discover
import Foundation
import Glibc
import Logging
import RingBuffer
import TapCore
import Testing

/// Measures how fast the capture path runs on this machine: a UDP flood (1000-byte datagrams, as fast
/// as the kernel takes them) over a veth pair with both ends attached at default settings (64 MiB
/// ring, snaplen 256 KiB, wakeups batched per 256 KiB), one consumer copying each packet out of the
/// ring as the pipeline does. Every datagram is two packets (egress on one end, ingress on the other).
/// Part of the serialized kernel suite so nothing else here competes for the CPU while it measures.
extension CaptureKernelTests {
    /// A counting consumer over a freshly attached pair.
    final class RateRig {
        let pair: VethPair
        let program: CaptureProgram
        let table: TCAttachmentTable
        let consumer = RingBufferConsumer()
        var packets = 0, bytes = 0

        init(thread: NetnsThread, logger: Logger, configuration: CaptureProgram.Configuration = .init()) throws {
            pair = try VethPair.make(thread: thread)
            program = try CaptureProgram(configuration: configuration)
            table = TCAttachmentTable(program: program, netnsThread: thread, logger: logger)
            for end in [pair.a, pair.b] { try table.attach(netnsPath: end.netnsPath, netnsCookie: end.netnsCookie, key: end.key, ifname: end.ifname) }
            for ring in program.eventsMapFDs {
                try consumer.add(mapFD: ring, name: "events") { [unowned self] raw in
                    guard let record = CaptureEventDecoder.decode(raw) else { return }
                    let copy = [UInt8](record.bytes) // what the pipeline does with every packet
                    packets += 1
                    bytes += copy.count
                }
            }
        }

        /// Starts the C flood sender in namespace A: `seconds` of 1000-byte datagrams at `rate` per second
        /// (0: as fast as the kernel takes them).
        func flood(seconds: Double, rate: Int) throws -> Process {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["ip", "netns", "exec", pair.a.netns, try floodSender(), "\(seconds)", "1000", "\(rate)"]
            process.standardOutput = Pipe()
            try process.run()
            return process
        }

        func drops() throws -> UInt64 { try program.readDrops().values.reduce(0, +) }

        func close() {
            unlink(floodSenderPath)
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
        let sender = try rig.flood(seconds: 2, rate: 0)
        while sender.isRunning { try rig.consumer.poll(timeoutMs: 100) }
        while try rig.consumer.poll(timeoutMs: 100) > 0 {}
        let seconds = Double(MonotonicToWall.monotonicNowNs() - start) / 1e9 - 0.1
        let drops = try rig.drops()
        print("capture rate, live: \(rig.packets) packets in \(String(format: "%.2f", seconds)) s = \(Int(Double(rig.packets) / seconds)) packets/s, \(String(format: "%.1f", Double(rig.bytes) / seconds / 1e6)) MB/s, \(drops) dropped")
        #expect(rig.packets > 10_000, "the flood produced too few packets to measure")
        #expect(drops == 0)
    }

    /// How fast the consumer alone empties the rings: fill them without reading (20 000 datagrams =
    /// 40 000 records of ~1.5 KiB, which may all come from one CPU, so each CPU's ring gets 64 MiB),
    /// then time the drain.
    @Test func consumerDrainRate() throws {
        let cpus = UInt64(libbpf_num_possible_cpus())
        let rig = try RateRig(thread: thread, logger: logger, configuration: .init(ringBytes: UInt32(min((64 << 20) * cpus, 1 << 30))))
        defer { rig.close() }
        let sender = try rig.flood(seconds: 1, rate: 20_000)
        sender.waitUntilExit()
        let start = MonotonicToWall.monotonicNowNs()
        while try rig.consumer.consume() > 0 {}
        let seconds = Double(MonotonicToWall.monotonicNowNs() - start) / 1e9
        let drops = try rig.drops()
        print("capture rate, consumer alone: \(rig.packets) packets in \(String(format: "%.3f", seconds)) s = \(Int(Double(rig.packets) / seconds)) packets/s, \(String(format: "%.1f", Double(rig.bytes) / seconds / 1e6)) MB/s, \(drops) dropped")
        #expect(rig.packets >= 39_000)
        #expect(drops == 0)
    }
}

/// A small C flood sender (sendmmsg, optional pacing), compiled once per test run with the BPF compiler
/// the build already needs; Python alone cannot send fast enough to find the capture path's limit.
let floodSenderPath = "/tmp/tlstap-capture-flood-\(getpid())"

func floodSender() throws -> String {
    let binary = floodSenderPath
    if access(binary, X_OK) == 0 { return binary }
    let source = binary + ".c"
    try Data(floodSource.utf8).write(to: URL(fileURLWithPath: source))
    defer { unlink(source) }
    try sh("clang-14", "-O2", "-o", binary, source)
    return binary
}

private let floodSource = """
    #define _GNU_SOURCE
    #include <arpa/inet.h>
    #include <netinet/in.h>
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include <sys/socket.h>
    #include <time.h>
    #include <unistd.h>
    /* flood SECONDS SIZE RATE: UDP datagrams of SIZE bytes to 10.86.0.2:18601, RATE per second (0: max). */
    int main(int argc, char **argv) {
        double seconds = atof(argv[1]);
        int size = atoi(argv[2]);
        long rate = atol(argv[3]);
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(18601)};
        inet_pton(AF_INET, "10.86.0.2", &to.sin_addr);
        static char buf[65536];
        memset(buf, 'x', sizeof buf);
        struct mmsghdr msgs[32];
        struct iovec iov[32];
        memset(msgs, 0, sizeof msgs);
        for (int i = 0; i < 32; i++) {
            iov[i].iov_base = buf; iov[i].iov_len = size;
            msgs[i].msg_hdr.msg_name = &to; msgs[i].msg_hdr.msg_namelen = sizeof to;
            msgs[i].msg_hdr.msg_iov = &iov[i]; msgs[i].msg_hdr.msg_iovlen = 1;
        }
        struct timespec t0, t;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        long sent = 0;
        double elapsed;
        do {
            clock_gettime(CLOCK_MONOTONIC, &t);
            elapsed = (t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9;
            if (rate && sent > elapsed * rate) { usleep(100); continue; }
            int n = sendmmsg(s, msgs, 32, 0);
            if (n > 0) sent += n;
        } while (elapsed < seconds);
        printf("%ld\\n", sent);
        return 0;
    }
    """
