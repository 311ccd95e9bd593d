import Glibc
import TapCore
import CLibBPF

/// One network namespace discovery is watching, with the references that keep it open.
///
/// Owns: an nsfs fd (`/proc/self/fd/N` is `info.path`: it opens this exact namespace for as long as
/// discovery reports it, whatever happens to the pid or mount it was found through) and the
/// rtnetlink socket created inside it. Both pin the namespace, so `close()` must run as soon as
/// nothing outside tlstap refers to it any more; `Discovery` decides when.
final class WatchedNamespace {
    let inode: UInt64
    /// What was last reported; the origin can improve once (a mount name appears after its process).
    var info: NetnsInfo
    private let namespaceFD: OwnedFD
    let route: RouteSocket
    /// Interfaces reported so far, by ifindex.
    var interfaces: [UInt32: InterfaceInfo] = [:]
    /// Processes known to be inside (not kept for the host namespace, which never goes away).
    var members: Set<Int32> = []
    /// nsfs mount points referring to it.
    var mountPoints: [String] = []
    /// The process the origin text describes, if any: its exec may give the origin a better name.
    var originPID: Int32?
    /// Ifindexes seen since the last dump request; nil when no dump is running.
    private var dumpSeen: Set<UInt32>?

    /// Opens `openPath` (a `/proc/PID/ns/net` or an nsfs mount), checks it is still namespace `inode`
    /// (the pid may have exited and been reused), and opens the rtnetlink socket inside it.
    init(inode: UInt64, openPath: String, origin: String, home: HomeNamespace) throws {
        let fd = try OwnedFD.open(openPath, what: "netns \(inode)")
        do {
            var status = stat()
            try syscall("stat \(openPath)") { fstat(fd.raw, &status) }
            guard UInt64(status.st_ino) == inode else {
                throw SystemError("open netns \(inode) via \(openPath): now a different namespace", errno: ESRCH)
            }
            let path = "/proc/self/fd/\(fd.raw)"
            route = try home.run(inside: fd.raw, what: "netns \(inode)") { try RouteSocket() }
            do {
                let cookie = try route.netnsCookie()
                info = NetnsInfo(inode: inode, cookie: cookie, path: path, origin: origin)
            } catch {
                route.close()
                throw error
            }
        } catch {
            fd.close()
            throw error
        }
        self.inode = inode
        self.namespaceFD = fd
    }

    /// Starts a full link dump; its answers come through `apply`. Does nothing while one is running
    /// (the kernel would refuse a second with EBUSY, and that one will reconcile anyway).
    func requestDump() throws(SystemError) {
        guard dumpSeen == nil else { return }
        try route.requestDump()
        dumpSeen = []
    }

    /// Applies link messages to the interface table and returns the events they mean, in order.
    /// A rename or a reused ifindex with a different type becomes removed + added, so consumers keyed by
    /// `InterfaceKey` never see two different interfaces under one key at once.
    func apply(_ batch: RouteSocket.Batch, linkType: (UInt16) -> LinkType?) -> [DiscoveryEvent] {
        var events: [DiscoveryEvent] = []
        for link in batch.links {
            let key = InterfaceKey(netnsInode: inode, ifindex: link.ifindex)
            let known = interfaces[link.ifindex]
            switch link.kind {
            case .removed:
                dumpSeen?.remove(link.ifindex)
                if known != nil {
                    interfaces[link.ifindex] = nil
                    events.append(.interfaceRemoved(key))
                }
            case .added:
                dumpSeen?.insert(link.ifindex)
                let type = linkType(link.arphrd)
                let name = link.name.isEmpty ? (known?.name ?? "if\(link.ifindex)") : link.name
                if let known, known.name == name, known.linkType == type { continue }
                if known != nil {
                    interfaces[link.ifindex] = nil
                    events.append(.interfaceRemoved(key))
                }
                guard let type else { continue }
                let interface = InterfaceInfo(key: key, name: name, linkType: type, description: info.origin,
                                              isLoopback: Int32(link.arphrd) == ARPHRD_LOOPBACK)
                interfaces[link.ifindex] = interface
                events.append(.interfaceAdded(interface, netns: info))
            }
        }
        if batch.dumpDone, let seen = dumpSeen {
            // The dump is the complete list: anything not in it went away while we were not listening.
            for ifindex in interfaces.keys.sorted() where !seen.contains(ifindex) {
                interfaces[ifindex] = nil
                events.append(.interfaceRemoved(InterfaceKey(netnsInode: inode, ifindex: ifindex)))
            }
            dumpSeen = nil
        }
        return events
    }

    /// Events that retire everything reported for this namespace, interfaces first.
    func removalEvents() -> [DiscoveryEvent] {
        interfaces.keys.sorted().map { .interfaceRemoved(InterfaceKey(netnsInode: inode, ifindex: $0)) }
            + [.namespaceRemoved(inode: inode)]
    }

    /// Releases both references; afterwards the kernel may destroy the namespace.
    func close() {
        route.close()
        namespaceFD.close()
    }
}

/// The PcapNG link type for what a tc program sees on a device of type ARPHRD_*: devices with an
/// Ethernet header (and loopback, whose header is zeros) are Ethernet; L3 devices (tun, wireguard,
/// ip tunnels, ppp) hand over bare IP. Anything else (CAN, InfiniBand, …) has no link type we can
/// write truthfully, so it is not reported.
func captureLinkType(arphrd: UInt16) -> LinkType? {
    switch Int32(arphrd) {
    case ARPHRD_ETHER, ARPHRD_LOOPBACK, ARPHRD_IEEE802:
        return .ethernet
    case ARPHRD_NONE, ARPHRD_RAWIP, ARPHRD_PPP, ARPHRD_TUNNEL, ARPHRD_TUNNEL6, ARPHRD_SIT, ARPHRD_IPGRE, ARPHRD_IP6GRE:
        return .rawIP
    default:
        return nil
    }
}
