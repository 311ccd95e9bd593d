import Glibc
import Logging
import TapCore

/// How discovery adds namespaces, follows their references, and lets them go.
extension Discovery {
    /// The first inventory: every namespace and its complete link list, delivered before returning.
    func initialScan() throws {
        let processes = NamespaceScan.processes()
        mountedInodes = readMounts()
        let inodes = Set(processes.keys).union(mountedInodes.keys).union([hostInode])
        for inode in inodes.sorted() {
            // An initial namespace that cannot be opened (its only process just exited) is skipped;
            // a failure on the host namespace is a setup failure.
            do {
                try addNamespace(inode, pids: processes[inode] ?? [], waitForDump: true)
            } catch where inode != hostInode {
                logger.debug("skip vanished netns", metadata: ["TLSTAP_NETNS": "\(inode)", "error": "\(error)"])
            }
        }
    }

    /// Backstop: brings the state in line with a full scan of processes and mounts, and re-lists links.
    func rescan() {
        let processes = NamespaceScan.processes()
        mountedInodes = readMounts()
        for (inode, namespace) in namespaces {
            namespace.mountPoints = mountedInodes[inode] ?? []
            if inode != hostInode { namespace.members = Set(processes[inode] ?? []) }
        }
        pidNamespace = [:]
        for (inode, pids) in processes where inode != hostInode {
            for pid in pids { pidNamespace[pid] = inode }
        }
        for inode in Set(processes.keys).union(mountedInodes.keys) where namespaces[inode] == nil {
            try? addNamespace(inode, pids: processes[inode] ?? [], waitForDump: false)
        }
        for inode in namespaces.keys.sorted() where inode != hostInode {
            if processes[inode] == nil && mountedInodes[inode] == nil { removeNamespace(inode, reason: "rescan") }
        }
        for namespace in namespaces.values { try? namespace.requestDump() }
    }

    func handleProcessEvents() {
        guard let events = procConnector?.drain() else {
            logger.warning("proc connector overflowed; rescanning")
            rescan()
            return
        }
        for event in events {
            switch event {
            case .started(let pid):
                processStarted(pid)
            case .exited(let pid):
                if let inode = pidNamespace.removeValue(forKey: pid) { processLeft(pid, namespace: inode) }
            }
        }
    }

    /// A process started, exec'd or joined a cgroup: if it is in a namespace we do not know, watch it.
    func processStarted(_ pid: Int32) {
        processObserver?(pid)
        guard let inode = NamespaceScan.netnsInode(pid: pid), inode != hostInode else {
            if let old = pidNamespace.removeValue(forKey: pid) { processLeft(pid, namespace: old) }
            return
        }
        if let old = pidNamespace[pid], old != inode { processLeft(pid, namespace: old) }
        pidNamespace[pid] = inode
        if let namespace = namespaces[inode] {
            namespace.members.insert(pid)
            if pid == namespace.originPID { refreshOrigin(namespace) }
        } else {
            do {
                try addNamespace(inode, pids: [pid], waitForDump: false)
            } catch {
                logger.debug("new netns vanished before it could be opened",
                             metadata: ["TLSTAP_NETNS": "\(inode)", "TLSTAP_PID": "\(pid)", "error": "\(error)"])
            }
        }
    }

    /// A known member left `inode`; if it was the last reference we know of, confirm and remove.
    private func processLeft(_ pid: Int32, namespace inode: UInt64) {
        guard let namespace = namespaces[inode] else { return }
        namespace.members.remove(pid)
        removeIfUnreferenced(inode)
    }

    func handleMountsChanged() {
        let mounts = readMounts()
        mountedInodes = mounts
        for (inode, points) in mounts.sorted(by: { $0.key < $1.key }) {
            if let namespace = namespaces[inode] {
                let hadName = !namespace.mountPoints.isEmpty
                namespace.mountPoints = points
                if !hadName && inode != hostInode { refreshOrigin(namespace) }
            } else {
                do {
                    try addNamespace(inode, pids: [], waitForDump: false)
                } catch {
                    logger.debug("mounted netns could not be opened", metadata: ["TLSTAP_NETNS": "\(inode)", "error": "\(error)"])
                }
            }
        }
        // Compare with what each namespace last knew, not with the previous read: others
        // (`removeIfUnreferenced`, `rescan`) read the table too, and an unmount must not slip by.
        for (inode, namespace) in namespaces.sorted(by: { $0.key < $1.key })
        where !namespace.mountPoints.isEmpty && mounts[inode] == nil {
            namespace.mountPoints = []
            removeIfUnreferenced(inode)
        }
    }

    /// A namespace is often first seen through a short-lived tool: `ip netns add` unshares before it
    /// mounts, `unshare -n cmd` (or runc) may be seen before it execs the real program. When the mount
    /// appears or that process execs, report the namespace again under the better name.
    func refreshOrigin(_ namespace: WatchedNamespace) {
        let pids = namespace.originPID.map { [$0] } ?? Array(namespace.members)
        let origin = Origin.describe(isHost: false, mountPoints: namespace.mountPoints, pids: pids)
        guard origin != namespace.info.origin else { return }
        namespace.info.origin = origin
        for ifindex in namespace.interfaces.keys { namespace.interfaces[ifindex]?.description = origin }
        emit(.namespaceAdded(namespace.info))
    }

    func handleLinks(inode: UInt64) {
        guard let namespace = namespaces[inode] else { return }
        let batch = namespace.route.drain()
        for event in namespace.apply(batch, linkType: linkTypeLogging) { emit(event) }
        if batch.overflowed {
            logger.warning("rtnetlink overflowed; re-listing links", metadata: ["TLSTAP_NETNS": "\(inode)"])
            try? namespace.requestDump()
        }
    }

    /// Removes `inode` if no mount and no process refers to it. Known members may be stale (a process
    /// can `setns` away without exec), so an empty member set is confirmed with a scan of /proc.
    func removeIfUnreferenced(_ inode: UInt64) {
        guard inode != hostInode, let namespace = namespaces[inode],
              namespace.members.isEmpty, namespace.mountPoints.isEmpty else { return }
        let inside = NamespaceScan.processes()[inode] ?? []
        if !inside.isEmpty {
            namespace.members = Set(inside)
            for pid in inside { pidNamespace[pid] = inode }
            return
        }
        mountedInodes = readMounts()
        if let points = mountedInodes[inode] {
            namespace.mountPoints = points
            return
        }
        removeNamespace(inode, reason: "no process or mount refers to it")
    }

    /// Starts watching `inode`: opens it through a pid inside it or a mount, reports it, lists its links.
    func addNamespace(_ inode: UInt64, pids: [Int32], waitForDump: Bool) throws {
        guard let home, let loop else { return }
        let points = mountedInodes[inode] ?? []
        let candidates = points + pids.sorted().map { "/proc/\($0)/ns/net" }
        let origin = Origin.describe(isHost: inode == hostInode, mountPoints: points, pids: pids)
        var lastError: any Error = SystemError("open netns \(inode): no process or mount refers to it", errno: ENOENT)
        for path in candidates + (inode == hostInode ? ["/proc/self/ns/net"] : []) {
            let namespace: WatchedNamespace
            do {
                namespace = try WatchedNamespace(inode: inode, openPath: path, origin: origin, home: home)
            } catch {
                lastError = error
                continue
            }
            if inode != hostInode {
                namespace.members = Set(pids)
                for pid in pids { pidNamespace[pid] = inode }
            }
            namespace.mountPoints = points
            namespace.originPID = inode == hostInode ? nil : pids.min()
            namespaces[inode] = namespace
            do {
                try loop.add(namespace.route.socket.raw, token: inode)
                try namespace.requestDump()
            } catch {
                namespaces[inode] = nil
                loop.remove(namespace.route.socket.raw)
                namespace.close()
                throw error
            }
            logger.debug("netns added", metadata: ["TLSTAP_NETNS": "\(inode)", "origin": "\(origin)"])
            emit(.namespaceAdded(namespace.info))
            if waitForDump {
                do {
                    let batch = try namespace.route.drainUntilDumpDone()
                    for event in namespace.apply(batch, linkType: linkTypeLogging) { emit(event) }
                } catch {
                    // The dump's answer will still arrive through the event loop.
                    logger.warning("link dump incomplete at start", metadata: ["TLSTAP_NETNS": "\(inode)", "error": "\(error)"])
                }
            } else {
                // Links are usually there already (a veth moved in before the process execs): list them now.
                handleLinks(inode: inode)
            }
            return
        }
        throw lastError
    }

    /// Reports the namespace's interfaces and itself removed, then drops our references to it.
    func removeNamespace(_ inode: UInt64, reason: String) {
        guard let namespace = namespaces.removeValue(forKey: inode) else { return }
        for (pid, owner) in pidNamespace where owner == inode { pidNamespace[pid] = nil }
        logger.debug("netns removed", metadata: ["TLSTAP_NETNS": "\(inode)", "reason": "\(reason)"])
        for event in namespace.removalEvents() { emit(event) }
        loop?.remove(namespace.route.socket.raw)
        namespace.close()
    }

    /// nsfs network-namespace mounts, read through the watched mountinfo fd, rewound. (The kernel
    /// re-arms the change notification in poll, not in read, so reading here loses no event.)
    func readMounts() -> [UInt64: [String]] {
        guard let mountinfo else { return [:] }
        lseek(mountinfo.raw, 0, SEEK_SET)
        return NamespaceScan.mounts(mountinfo: NamespaceScan.readAll(mountinfo.raw))
    }

    func linkTypeLogging(_ arphrd: UInt16) -> LinkType? {
        let type = captureLinkType(arphrd: arphrd)
        if type == nil { logger.debug("interface type has no capture link type; not reported", metadata: ["arphrd": "\(arphrd)"]) }
        return type
    }
}
