import Foundation
import Glibc
import Testing
@testable import Discover
import TapCore
import CLibBPF

/// The cgroup watch on its own: a process that enters a new namespace with `unshare()` and never
/// execs is invisible to the proc connector; moving it into a new cgroup must reveal it.
extension DiscoverTests {
@Suite struct CgroupWatchTests {
    @Test func aProcessMovedIntoANewCgroupIsChecked() throws {
        let mountinfo = try #require(NamespaceScan.readProcFile("/proc/self/mountinfo"))
        let cgroup2 = try #require(CgroupWatch.hierarchies(mountinfo: mountinfo).first { root in
            mountinfo.split(separator: "\n").contains { $0.contains(" \(root) ") && $0.contains(" - cgroup2 ") }
        }, "no cgroup2 hierarchy mounted")
        let cgroup = cgroup2 + "/dc-cgtest"
        rmdir(cgroup)

        // A long rescan interval, so only an event can find it within the test.
        let (discovery, log) = try startDiscovery(rescan: .seconds(60))
        defer { discovery.stop() }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", "import ctypes, time; time.sleep(0.5); assert ctypes.CDLL(None).unshare(\(tlstap_clone_newnet)) == 0; print('ok', flush=True); time.sleep(10)"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let pid = process.processIdentifier
        defer {
            kill(pid, SIGKILL)
            process.waitUntilExit()
            rmdir(cgroup)
        }
        #expect(String(decoding: output.fileHandleForReading.availableData, as: UTF8.self).hasPrefix("ok"))
        let inode = try #require(NamespaceScan.netnsInode(pid: pid))

        // unshare without exec (half a second after python's exec was seen): no proc connector event
        // says anything about it.
        #expect(log.wait(timeout: .milliseconds(200)) { $0.addedNamespace?.inode == inode ? true : nil } == nil)

        #expect(mkdir(cgroup, 0o755) == 0)
        let moved = ContinuousClock.now
        try "\(pid)\n".write(toFile: cgroup + "/cgroup.procs", atomically: false, encoding: .utf8)
        let written = ContinuousClock.now
        let added = try #require(log.wait { $0.addedNamespace.flatMap { $0.inode == inode ? $0 : nil } })
        #expect(added.value.origin.contains("pid \(pid) (python3)") && added.value.origin.contains("dc-cgtest"))
        print("discover latency: process moved into new cgroup detected: \(String(format: "%.2f", milliseconds(added.at - moved))) ms "
              + "from the write to cgroup.procs, \(String(format: "%.2f", milliseconds(added.at - written))) ms after it returned")
    }

    @Test func containerIDsAreReadFromCgroupPaths() {
        let id = String(repeating: "ab12", count: 16)
        #expect(Origin.containerID(cgroupPath: "/system.slice/docker-\(id).scope")! == ("docker", id))
        #expect(Origin.containerID(cgroupPath: "/kubepods.slice/kubepods-besteffort.slice/cri-containerd-\(id).scope")! == ("containerd", id))
        #expect(Origin.containerID(cgroupPath: "/machine.slice/libpod-\(id).scope/container")! == ("podman", id))
        #expect(Origin.containerID(cgroupPath: "/docker/\(id)")! == ("docker", id))
        #expect(Origin.containerID(cgroupPath: "/system.slice/nginx.service") == nil)
        // v2, hybrid (v2 line is "/"; the container path is in name=systemd), and pure v1.
        #expect(Origin.cgroupPath("0::/system.slice/x.service\n") == "/system.slice/x.service")
        #expect(Origin.cgroupPath("1:name=systemd:/docker/\(id)\n0::/\n") == "/docker/\(id)")
        #expect(Origin.cgroupPath("2:cpu:/\n1:name=systemd:/user.slice\n") == "/user.slice")
    }

    @Test func nsfsMountsAreParsedFromMountinfo() {
        let text = """
        36 25 0:4 net:[4026532301] /run/netns/dc\\040x rw,nosuid - nsfs nsfs rw
        37 25 0:4 mnt:[4026532302] /run/other rw - nsfs nsfs rw
        38 25 0:4 net:[4026532303] /run/docker/netns/abc rw shared:5 - nsfs nsfs rw
        22 1 0:20 / /proc rw - proc proc rw
        """
        let mounts = NamespaceScan.mounts(mountinfo: text)
        #expect(mounts == [4026532301: ["/run/netns/dc x"], 4026532303: ["/run/docker/netns/abc"]])
        #expect(Origin.describeMount("/run/netns/dc x") == "ip netns dc x")
        #expect(Origin.describeMount("/run/docker/netns/abc") == "docker netns abc")
    }
}
}
