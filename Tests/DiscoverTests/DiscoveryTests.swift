import Foundation
import Logging
import Glibc
import Testing
@testable import Discover
import TapCore

/// Real kernel, real `ip`: run as root. Every discovery test is serialized (nested in this suite)
/// because they count this process's descriptors and share the `dc` namespace prefix.
@Suite(.serialized) struct DiscoverTests {}

extension DiscoverTests {
@Suite struct DiscoveryTests {
    init() {
        // Leftovers from an interrupted run would confuse the assertions.
        sh("for n in $(ip netns list | awk '{print $1}' | grep '^dc-'); do ip netns del $n; done; ip link del dc-lk0 2>/dev/null; true")
    }

    @Test func initialInventoryHasTheHostNamespaceWithItsCookie() throws {
        let (discovery, log) = try startDiscovery()
        defer { discovery.stop() }
        let hostInode = discovery.hostInode
        #expect(hostInode == NamespaceScan.netnsInode("/proc/self/ns/net"))
        let snapshot = discovery.snapshot()
        let host = try #require(snapshot.namespaces.first { $0.inode == hostInode })
        #expect(host.origin == "host")

        // The cookie must be what a socket in this namespace reports (what bpf_get_netns_cookie says).
        let probe = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(probe) }
        var cookie: UInt64 = 0
        var length = socklen_t(8)
        #expect(getsockopt(probe, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &length) == 0)
        #expect(host.cookie == cookie && cookie != 0)

        let lo = try #require(snapshot.interfaces.first { $0.key.netnsInode == hostInode && $0.name == "lo" })
        #expect(lo.key.ifindex == 1 && lo.linkType == .ethernet && lo.description == "host")
        // The inventory was delivered before start() returned, namespace before its interfaces.
        #expect(log.count == snapshot.namespaces.count + snapshot.interfaces.count)
        #expect(log.wait(timeout: .zero) { $0.addedNamespace?.inode == hostInode ? true : nil } != nil)
    }

    @Test func namespacesAndInterfacesComeAndGoLive() throws {
        let (discovery, log) = try startDiscovery()
        defer { discovery.stop() }
        var latencies: [String: (event: Double, command: Double)] = [:]

        func timed<T>(_ what: String, _ command: String, _ match: @escaping (DiscoveryEvent) -> T?) throws -> T {
            let mark = log.count
            let started = ContinuousClock.now
            sh(command)
            let finished = ContinuousClock.now
            let event = try #require(log.wait(after: mark, match), "no event for: \(what)")
            latencies[what] = (milliseconds(event.at - started), milliseconds(finished - started))
            return event.value
        }

        let a = try timed("ip netns add", "ip netns add dc-a") { $0.addedNamespace.flatMap { $0.origin.hasPrefix("ip netns dc-a") ? $0 : nil } }
        #expect(a.inode == netnsInode(named: "dc-a") && a.cookie != 0 && a.path.hasPrefix("/proc/self/fd/"))
        let b = try timed("ip netns add (2nd)", "ip netns add dc-b") { $0.addedNamespace.flatMap { $0.origin.hasPrefix("ip netns dc-b") ? $0 : nil } }
        #expect(b.inode != a.inode && b.cookie != a.cookie)

        // Even a namespace's loopback is reported.
        #expect(log.wait { $0.addedInterface.flatMap { $0.key.netnsInode == b.inode && $0.name == "lo" ? $0 : nil } } != nil)

        let bridge = try timed("bridge added", "ip -n dc-a link add dc-br0 type bridge") {
            $0.addedInterface.flatMap { $0.name == "dc-br0" ? $0 : nil }
        }
        #expect(bridge.key == InterfaceKey(netnsInode: a.inode, ifindex: try #require(ifindex("dc-br0", netns: "dc-a"))))
        #expect(bridge.linkType == .ethernet && bridge.description.hasPrefix("ip netns dc-a"))

        // A veth pair created straight into both namespaces: each side in its own.
        let mark = log.count
        let started = ContinuousClock.now
        sh("ip link add dc-va netns dc-a type veth peer name dc-vb netns dc-b && ip -n dc-a link set dc-va up master dc-br0 && ip -n dc-b link set dc-vb up")
        let va = try #require(log.wait(after: mark) { $0.addedInterface.flatMap { $0.name == "dc-va" ? $0 : nil } })
        let vb = try #require(log.wait(after: mark) { $0.addedInterface.flatMap { $0.name == "dc-vb" ? $0 : nil } })
        latencies["veth pair (both sides)"] = (milliseconds(max(va.at, vb.at) - started), .nan)
        #expect(va.value.key == InterfaceKey(netnsInode: a.inode, ifindex: try #require(ifindex("dc-va", netns: "dc-a"))))
        #expect(vb.value.key == InterfaceKey(netnsInode: b.inode, ifindex: try #require(ifindex("dc-vb", netns: "dc-b"))))
        #expect(vb.value.linkType == .ethernet)

        let tun = try timed("tun added", "ip -n dc-b tuntap add dc-tun0 mode tun") { $0.addedInterface.flatMap { $0.name == "dc-tun0" ? $0 : nil } }
        #expect(tun.linkType == .rawIP && tun.key.netnsInode == b.inode)

        // Rename: the same key is retired and reported again under its new name.
        let renameMark = log.count
        let renamed = try timed("rename", "ip -n dc-a link set dc-va down && ip -n dc-a link set dc-va name dc-va2") {
            $0.addedInterface.flatMap { $0.name == "dc-va2" ? $0 : nil }
        }
        #expect(renamed.key == va.value.key)
        #expect(log.wait(after: renameMark) { $0.removedInterface == va.value.key ? true : nil } != nil)

        let removedBridge = try timed("interface removed", "ip -n dc-a link del dc-br0") { $0.removedInterface == bridge.key ? true : nil }
        #expect(removedBridge)

        // Deleting dc-a removes its interfaces, then itself; the veth peer in dc-b dies with it, which
        // only happens if nothing (including discovery) still holds dc-a.
        let removalMark = log.count
        _ = try timed("ip netns del", "ip netns del dc-a") { $0.removedNamespace == a.inode ? true : nil }
        #expect(log.wait(after: removalMark) { $0.removedInterface == renamed.key ? true : nil } != nil)
        _ = try timed("netns destroyed (peer veth gone)", "true") { $0.removedInterface == vb.value.key ? true : nil }
        _ = try timed("ip netns del (2nd)", "ip netns del dc-b") { $0.removedNamespace == b.inode ? true : nil }

        let snapshot = discovery.snapshot()
        #expect(!snapshot.namespaces.contains { $0.inode == a.inode || $0.inode == b.inode })
        #expect(!snapshot.interfaces.contains { $0.key.netnsInode == a.inode || $0.key.netnsInode == b.inode })
        // The daemon must attach within 100 ms of an interface appearing; discovery may use little of that.
        for what in ["bridge added", "veth pair (both sides)", "tun added", "ip netns add"] {
            #expect(latencies[what]!.event < 100, "\(what) reported after \(latencies[what]!.event) ms")
        }
        for (what, ms) in latencies.sorted(by: { $0.key < $1.key }) {
            print("discover latency: \(what): event \(String(format: "%.2f", ms.event)) ms after the command started "
                  + "(the command itself ran \(String(format: "%.2f", ms.command)) ms)")
        }
    }

    @Test func aReusedIfindexIsReportedAsANewInterface() throws {
        let (discovery, log) = try startDiscovery()
        defer { discovery.stop() }
        sh("ip netns add dc-reuse")
        defer { sh("ip netns del dc-reuse") }
        let inode = try #require(netnsInode(named: "dc-reuse"))
        let key = InterfaceKey(netnsInode: inode, ifindex: 50)
        let mark = log.count
        sh("ip -n dc-reuse link add dc-first index 50 type bridge && ip -n dc-reuse link del dc-first && ip -n dc-reuse link add dc-second index 50 type bridge")
        let first = try #require(log.wait(after: mark) { $0.addedInterface.flatMap { $0.key == key && $0.name == "dc-first" ? $0 : nil } })
        let second = try #require(log.wait(after: mark) { $0.addedInterface.flatMap { $0.key == key && $0.name == "dc-second" ? $0 : nil } })
        let removed = try #require(log.wait(after: mark) { $0.removedInterface == key ? true : nil })
        #expect(first.at <= removed.at && removed.at <= second.at)
        #expect(discovery.snapshot().interfaces.filter { $0.key == key }.map(\.name) == ["dc-second"])
    }

    /// A runtime-style bind mount (any directory) keeps a namespace watched after its last process
    /// exits; unmounting it then removes the namespace.
    @Test func aBindMountOutlivesTheProcessAndItsUnmountRemovesTheNamespace() throws {
        let (discovery, log) = try startDiscovery()
        defer { discovery.stop() }
        let mountPoint = "/run/dc-mnt/ns1"
        sh("mkdir -p /run/dc-mnt && touch \(mountPoint)")
        defer { sh("umount \(mountPoint) 2>/dev/null; rm -rf /run/dc-mnt") }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        process.arguments = ["-n", "sleep", "10"]
        try process.run()
        let pid = process.processIdentifier
        let inode = unsharedNetnsInode(pid: pid, hostInode: discovery.hostInode)
        #expect(log.wait { $0.addedNamespace?.inode == inode ? true : nil } != nil)
        sh("mount --bind /proc/\(pid)/ns/net \(mountPoint)")
        // Found through the process first, then renamed after the mount.
        #expect(log.wait { $0.addedNamespace.flatMap { $0.inode == inode && $0.origin.hasPrefix("netns mount \(mountPoint)") ? $0 : nil } } != nil)

        kill(pid, SIGKILL)
        process.waitUntilExit()
        // The process is gone but the mount still refers to the namespace: it stays.
        #expect(log.wait(timeout: .milliseconds(300)) { $0.removedNamespace == inode ? true : nil } == nil)
        #expect(discovery.snapshot().namespaces.contains { $0.inode == inode })

        let unmounted = ContinuousClock.now
        sh("umount \(mountPoint)")
        let removed = try #require(log.wait { $0.removedNamespace == inode ? true : nil })
        print("discover latency: namespace removed after umount of its last bind mount: \(String(format: "%.2f", milliseconds(removed.at - unmounted))) ms")
    }

    @Test func stopClosesEveryDescriptorAndThread() throws {
        func threads() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? 0 }
        // Warm up what the test helpers open lazily.
        let (warm, _) = try startDiscovery()
        warm.stop()
        let fdsBefore = openDescriptors().count, threadsBefore = threads()
        for _ in 0..<3 {
            let (discovery, _) = try startDiscovery()
            #expect(discovery.snapshot().namespaces.count >= 1)
            #expect(openDescriptors().count > fdsBefore)
            discovery.stop()
            discovery.stop()  // a second stop does nothing
        }
        // No more than before: the concurrency runtime may have closed one of its own meanwhile.
        #expect(openDescriptors().count <= fdsBefore)
        #expect(threads() <= threadsBefore)
    }

    @Test func idleDiscoveryUsesNoCPU() throws {
        let (discovery, _) = try startDiscovery()
        defer { discovery.stop() }
        var before = rusage(), after = rusage()
        getrusage(RUSAGE_SELF.rawValue, &before)
        usleep(1_000_000)
        getrusage(RUSAGE_SELF.rawValue, &after)
        func ms(_ t: timeval) -> Double { Double(t.tv_sec) * 1000 + Double(t.tv_usec) / 1000 }
        let used = ms(after.ru_utime) + ms(after.ru_stime) - ms(before.ru_utime) - ms(before.ru_stime)
        print("discover: CPU used in 1 s idle (proc connector sees the whole host's forks): \(String(format: "%.1f", used)) ms")
        // A mountinfo or epoll fd stuck in a ready state would spin a core: ~1000 ms.
        #expect(used < 300)
    }

    @Test func unshareIsSeenAtExecAndGoneAtExit() throws {
        let (discovery, log) = try startDiscovery()
        defer { discovery.stop() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        process.arguments = ["-n", "sleep", "5"]
        let started = ContinuousClock.now
        try process.run()
        let pid = process.processIdentifier
        // The namespace exists once unshare(2) ran; events are kept, so finding it late is fine.
        let inode = unsharedNetnsInode(pid: pid, hostInode: discovery.hostInode)
        let added = try #require(log.wait { $0.addedNamespace.flatMap { $0.inode == inode ? $0 : nil } },
                                 "namespaces seen: \(discovery.snapshot().namespaces.map(\.origin))")
        // Seen at the exec of sleep, or already at unshare's own fork/exec if the event was read late;
        // then the exec of sleep renames it.
        #expect(added.value.origin.hasPrefix("pid \(pid) (sleep)") || added.value.origin.hasPrefix("pid \(pid) (unshare)"))
        #expect(log.wait { $0.addedNamespace.flatMap { $0.inode == inode && $0.origin.hasPrefix("pid \(pid) (sleep)") ? $0 : nil } } != nil)
        print("discover latency: unshare -n sleep detected: \(String(format: "%.2f", milliseconds(added.at - started))) ms (from spawn)")
        // Its loopback is listed too.
        #expect(log.wait { $0.addedInterface.flatMap { $0.key.netnsInode == inode && $0.name == "lo" ? $0 : nil } } != nil)

        // SIGKILL: the test runner's children may inherit an ignored SIGTERM.
        let killed = ContinuousClock.now
        kill(pid, SIGKILL)
        let removed = try #require(log.wait { $0.removedNamespace == inode ? true : nil })
        print("discover latency: unshare namespace removed: \(String(format: "%.2f", milliseconds(removed.at - killed))) ms (from SIGKILL)")
        process.waitUntilExit()
    }

    @Test func createDeleteCyclesLeakNoDescriptorsAndNoNamespaces() throws {
        let (discovery, log) = try startDiscovery()
        defer { discovery.stop() }

        // One cycle: a namespace with a veth whose peer stays in the host namespace. The peer vanishes
        // only when the namespace is destroyed, so seeing it vanish proves no reference was kept.
        func cycle(_ index: Int) throws -> UInt64 {
            let name = "dc-leak\(index)"
            let mark = log.count
            sh("ip netns add \(name) && ip link add dc-lk0 type veth peer name dc-lk1 netns \(name)")
            let inode = try #require(netnsInode(named: name))
            let inner = try #require(log.wait(after: mark) { $0.addedInterface.flatMap { $0.key.netnsInode == inode && $0.name == "dc-lk1" ? $0 : nil } })
            let outer = try #require(log.wait(after: mark) { $0.addedInterface.flatMap { $0.name == "dc-lk0" ? $0 : nil } })
            sh("ip netns del \(name)")
            #expect(log.wait(after: mark) { $0.removedNamespace == inode ? true : nil } != nil)
            #expect(log.wait(after: mark) { $0.removedInterface == inner.value.key ? true : nil } != nil)
            #expect(log.wait(after: mark) { $0.removedInterface == outer.value.key ? true : nil } != nil,
                    "netns \(inode) was not destroyed: its veth peer in the host is still there")
            return inode
        }

        _ = try cycle(0)  // warm-up: lazily opened descriptors (Foundation, logging) settle here
        let baseline = try stableView(discovery)
        var deleted: [UInt64] = []
        let started = ContinuousClock.now
        for index in 1...50 { deleted.append(try cycle(index)) }
        let elapsed = milliseconds(ContinuousClock.now - started)
        print("discover: 50 netns+veth create/delete cycles in \(String(format: "%.0f", elapsed)) ms")

        // Other engineers' namespaces may come and go meanwhile: each watched one costs two fds
        // (nsfs + rtnetlink). Inode numbers are recycled at once, so "not held" is checked as: the
        // nsfs fds we hold are exactly the namespaces we report, and none of ours is reported.
        let after = try stableView(discovery)
        let watchedChange = after.namespaces.count - baseline.namespaces.count
        // At most (the runtime's own eventfds/timerfds come and go with its worker threads); a leak adds.
        #expect(after.fds.count <= baseline.fds.count + 2 * watchedChange, "fds before: \(baseline.fds) after: \(after.fds)")
        #expect(after.held == Set(after.namespaces.map(\.inode)))
        #expect(!after.namespaces.contains { $0.origin.hasPrefix("ip netns dc-leak") })
        #expect(Set(deleted).count > 1)
    }
}
}

extension DiscoverTests {
@Suite struct DiscoveryStreamTests {
    @Test func streamCarriesTheInventoryAndFinishesOnStop() async throws {
        var logger = Logger(label: "discover-test")
        logger.logLevel = .warning
        let (discovery, stream) = Discovery.stream(logger: logger)
        try discovery.start()
        let hostInode = discovery.hostInode
        sh("ip netns add dc-stream")
        let inode = try #require(netnsInode(named: "dc-stream"))
        for _ in 0..<300 where !discovery.snapshot().namespaces.contains(where: { $0.inode == inode }) { usleep(10_000) }
        sh("ip netns del dc-stream")
        for _ in 0..<300 where discovery.snapshot().namespaces.contains(where: { $0.inode == inode }) { usleep(10_000) }
        discovery.stop()
        var events: [DiscoveryEvent] = []
        for await event in stream { events.append(event) }  // ends because stop() finished it
        #expect(events.first?.addedNamespace?.inode == hostInode)
        #expect(events.contains { $0.addedNamespace?.inode == inode })
        #expect(events.contains { $0.removedNamespace == inode })
    }
}
}

/// The network namespace of `pid` once it has left the host's (unshare -n runs unshare(2) right after
/// exec), polled for up to a second; the host's inode if it never does.
private func unsharedNetnsInode(pid: Int32, hostInode: UInt64) -> UInt64 {
    var inode = hostInode
    for _ in 0..<1000 where inode == hostInode {
        inode = NamespaceScan.netnsInode(pid: pid) ?? hostInode
        usleep(1000)
    }
    return inode
}
