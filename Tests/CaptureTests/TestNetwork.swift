import Discover
import Foundation
import Glibc
import TapCore

/// Runs a command and returns its stdout; throws with its stderr when it fails.
@discardableResult
func sh(_ args: String..., allowFailure: Bool = false) throws -> String {
    try sh(args, allowFailure: allowFailure)
}

@discardableResult
func sh(_ args: [String], allowFailure: Bool = false) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = args
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let output = out.fileHandleForReading.readDataToEndOfFile()
    let errors = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    if process.terminationStatus != 0 && !allowFailure {
        throw TestFailure("\(args.joined(separator: " ")) exited \(process.terminationStatus): \(String(decoding: errors, as: UTF8.self))")
    }
    return String(decoding: output, as: UTF8.self)
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// One end of a veth pair, in its own namespace made with `ip netns add`.
struct VethEnd {
    var netns: String
    var ifname: String
    var address: String
    var netnsPath: String { "/run/netns/\(netns)" }
    var ifindex: UInt32
    var netnsInode: UInt64
    var netnsCookie: UInt64
    var key: InterfaceKey { InterfaceKey(netnsInode: netnsInode, ifindex: ifindex) }

    @discardableResult
    func exec(_ args: String...) throws -> String {
        try sh(["ip", "netns", "exec", netns] + args)
    }

    /// Whether `tc filter show` lists a tlstap program on this interface (either direction).
    func hasTLSTapFilter() throws -> Bool {
        let ingress = try sh("tc", "-n", netns, "filter", "show", "dev", ifname, "ingress")
        let egress = try sh("tc", "-n", netns, "filter", "show", "dev", ifname, "egress")
        return (ingress + egress).contains("tlstap")
    }

    /// rx + tx packet counters of the interface.
    func packetCount() throws -> UInt64 {
        let rx = try exec("cat", "/sys/class/net/\(ifname)/statistics/rx_packets")
        let tx = try exec("cat", "/sys/class/net/\(ifname)/statistics/tx_packets")
        return UInt64(rx.filter(\.isNumber))! + UInt64(tx.filter(\.isNumber))!
    }
}

/// Two namespaces joined by a veth pair, IPv4 only (no IPv6 autoconfiguration noise), names with the
/// `cp` prefix reserved for these tests. `delete()` removes both namespaces.
struct VethPair {
    var a: VethEnd
    var b: VethEnd

    static func make(thread: NetnsThread) throws -> VethPair {
        let tag = String(UInt32.random(in: 0..<UInt32.max), radix: 16)
        let nsA = "cp\(tag)a", nsB = "cp\(tag)b"
        let ifA = "cpa\(tag)", ifB = "cpb\(tag)"
        for ns in [nsA, nsB] {
            try sh("ip", "netns", "add", ns)
            try sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
            try sh("ip", "-n", ns, "link", "set", "lo", "up")
        }
        try sh("ip", "link", "add", ifA, "netns", nsA, "type", "veth", "peer", "name", ifB, "netns", nsB)
        try sh("ip", "-n", nsA, "addr", "add", "10.86.0.1/24", "dev", ifA)
        try sh("ip", "-n", nsB, "addr", "add", "10.86.0.2/24", "dev", ifB)
        try sh("ip", "-n", nsA, "link", "set", ifA, "up")
        try sh("ip", "-n", nsB, "link", "set", ifB, "up")
        return VethPair(a: try end(nsA, ifA, "10.86.0.1", thread), b: try end(nsB, ifB, "10.86.0.2", thread))
    }

    func delete() {
        for ns in [a.netns, b.netns] { _ = try? sh("ip", "netns", "del", ns, allowFailure: true) }
    }

    private static func end(_ netns: String, _ ifname: String, _ address: String, _ thread: NetnsThread) throws -> VethEnd {
        let path = "/run/netns/\(netns)"
        let index = try sh("ip", "netns", "exec", netns, "cat", "/sys/class/net/\(ifname)/ifindex")
        var info = stat()
        guard stat(path, &info) == 0 else { throw TestFailure("stat \(path)") }
        let cookie = try netnsCookie(path: path, thread: thread)
        return VethEnd(netns: netns, ifname: ifname, address: address, ifindex: UInt32(index.filter(\.isNumber))!,
                       netnsInode: UInt64(info.st_ino), netnsCookie: cookie)
    }
}

/// The namespace's cookie, as `bpf_get_netns_cookie` reports it: `SO_NETNS_COOKIE` of a socket in it.
func netnsCookie(path: String?, thread: NetnsThread) throws -> UInt64 {
    try thread.run(in: path) { () throws -> UInt64 in
        let fd = try syscall("socket") { socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0) }
        defer { close(fd) }
        var cookie: UInt64 = 0
        var length = socklen_t(MemoryLayout<UInt64>.size)
        try syscall("getsockopt SO_NETNS_COOKIE") { getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &length) }
        return cookie
    }
}

/// A `tcpdump -w` on one interface, nanosecond timestamps; `stop()` ends it and returns its packets.
final class TCPDump {
    struct Packet { var wallNs: UInt64; var originalLength: UInt32; var bytes: [UInt8] }

    private let process = Process()
    private let file: String

    init(on end: VethEnd) throws {
        file = "/tmp/\(end.ifname)-\(getpid()).pcap"
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // Foundation's Process passes on the spawning thread's signal mask, which blocks SIGINT and
        // SIGTERM on the test's threads; unblock them so tcpdump can be stopped cleanly.
        process.arguments = ["python3", "-c", "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execvp(sys.argv[1], sys.argv[1:])",
                             "ip", "netns", "exec", end.netns, "tcpdump", "-i", end.ifname, "-n", "-U", "--immediate-mode",
                             "--time-stamp-precision=nano", "-w", file]
        let err = Pipe()
        process.standardError = err
        try process.run()
        // tcpdump says "listening on" once its capture is open.
        var seen = Data()
        while !String(decoding: seen, as: UTF8.self).contains("listening on") {
            let chunk = err.fileHandleForReading.availableData
            if chunk.isEmpty { throw TestFailure("tcpdump on \(end.ifname) did not start: \(String(decoding: seen, as: UTF8.self))") }
            seen += chunk
        }
    }

    func stop() throws -> [Packet] {
        process.interrupt()
        process.waitUntilExit()
        defer { unlink(file) }
        return try Self.parse([UInt8](Data(contentsOf: URL(fileURLWithPath: file))))
    }

    /// Reads a little-endian nanosecond pcap file (magic a1b23c4d).
    static func parse(_ bytes: [UInt8]) throws -> [Packet] {
        func u32(_ at: Int) -> UInt32 { bytes[at..<at + 4].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
        guard bytes.count >= 24, u32(0) == 0xa1b2_3c4d else { throw TestFailure("not a nanosecond pcap file") }
        var packets: [Packet] = []
        var at = 24
        while at + 16 <= bytes.count {
            let seconds = UInt64(u32(at)), nanos = UInt64(u32(at + 4)), captured = Int(u32(at + 8))
            packets.append(Packet(wallNs: seconds * 1_000_000_000 + nanos, originalLength: u32(at + 12),
                                  bytes: Array(bytes[at + 16..<at + 16 + captured])))
            at += 16 + captured
        }
        return packets
    }
}

/// What the open file descriptors of this process point at, leaving out the pipes, /dev/null and unix
/// sockets that Foundation's Process opens for the helper commands and closes on its own schedule:
/// what remains includes everything the code under test opens (BPF objects, netns and netlink fds).
func openFDs() -> [String] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    return entries.compactMap { entry -> String? in
        guard let target = try? readLink("/proc/self/fd/\(entry)") else { return nil }
        let text = String(decoding: target, as: UTF8.self)
        if text.hasPrefix("socket:"), let fd = Int32(entry) {
            var domain: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length)
            return domain == AF_UNIX ? nil : "\(text) domain \(domain)" // unix sockets: Foundation's, not ours
        }
        return text.hasPrefix("pipe:") || text == "/dev/null" ? nil : text
    }.sorted()
}
