import Glibc

/// The human text for where a namespace came from: what an IDB's `if_description` says.
enum Origin {
    /// A namespace's origin from its mounts (preferred: they carry the name users typed) and
    /// the lowest live pid inside it (usually the container's init).
    static func describe(isHost: Bool, mountPoints: [String], pids: [Int32]) -> String {
        if isHost { return "host" }
        var parts: [String] = mountPoints.sorted().prefix(1).map(describeMount)
        // A plain loop, not `lazy.compactMap(…).first`: that calls the closure twice per element, and a
        // process that exits in between made the second call nil and crashed the daemon.
        for pid in pids.sorted() {
            if let process = describeProcess(pid) {
                parts.append(process)
                break
            }
        }
        return parts.isEmpty ? "unknown" : parts.joined(separator: ", ")
    }

    static func describeMount(_ path: String) -> String {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        for prefix in ["/run/netns/", "/var/run/netns/"] where path.hasPrefix(prefix) {
            return "ip netns \(name)"
        }
        for prefix in ["/run/docker/netns/", "/var/run/docker/netns/"] where path.hasPrefix(prefix) {
            return "docker netns \(name)"
        }
        return "netns mount \(path)"
    }

    /// `pid 1234 (nginx) container docker 0123456789ab` or `pid 1234 (nginx) cgroup /system.slice/x.service`.
    /// Nil if the process is gone.
    static func describeProcess(_ pid: Int32) -> String? {
        guard let comm = NamespaceScan.readProcFile("/proc/\(pid)/comm")?.trimmingNewline else { return nil }
        var text = "pid \(pid) (\(comm))"
        if let cgroup = NamespaceScan.readProcFile("/proc/\(pid)/cgroup").flatMap(cgroupPath) {
            if let container = containerID(cgroupPath: cgroup) {
                text += " container \(container.runtime) \(container.id.prefix(12))"
            } else {
                text += " cgroup \(cgroup)"
            }
        }
        return text
    }

    /// The cgroup path from /proc/PID/cgroup, on v2 (`0::/path`), hybrid (v2 line plus v1 lines) and
    /// v1 (no `0::` line: take the `name=systemd` hierarchy, else the first one with a path).
    static func cgroupPath(_ text: String) -> String? {
        var v1: [(controllers: Substring, path: Substring)] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            if fields[0] == "0" && fields[1].isEmpty && fields[2] != "/" { return String(fields[2]) }
            v1.append((fields[1], fields[2]))
        }
        // On a hybrid host the v2 line may be "/" while a v1 hierarchy holds the container's path.
        if let systemd = v1.first(where: { $0.controllers == "name=systemd" && $0.path != "/" }) { return String(systemd.path) }
        if let any = v1.first(where: { $0.path != "/" }) { return String(any.path) }
        return text.isEmpty ? nil : "/"
    }

    /// Container runtimes name cgroups after the container: `docker-<id>.scope`, `cri-containerd-<id>.scope`,
    /// `crio-<id>.scope`, `libpod-<id>.scope`, or a bare 64-hex directory (`/docker/<id>`, kubepods cgroupfs).
    static func containerID(cgroupPath: String) -> (runtime: String, id: String)? {
        let prefixes = [("docker-", "docker"), ("cri-containerd-", "containerd"), ("crio-", "cri-o"), ("libpod-", "podman")]
        for component in cgroupPath.split(separator: "/").reversed() {
            var name = Substring(component)
            if name.hasSuffix(".scope") { name = name.dropLast(6) }
            for (prefix, runtime) in prefixes where name.hasPrefix(prefix) {
                let id = name.dropFirst(prefix.count)
                if isHexID(id) { return (runtime, String(id)) }
            }
            if isHexID(name) {
                let runtime = cgroupPath.contains("kubepods") ? "kubernetes" : (cgroupPath.contains("docker") ? "docker" : "container")
                return (runtime, String(name))
            }
        }
        return nil
    }

    private static func isHexID(_ text: Substring) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }
}

extension String {
    var trimmingNewline: String { hasSuffix("\n") ? String(dropLast()) : self }
}
