import TapCore

/// A network namespace tlstap watches. Deduplicated by `inode`; `path` is any path that opens it
/// (`/proc/PID/ns/net`, `/run/netns/NAME`, a container runtime's bind mount).
public struct NetnsInfo: Hashable, Sendable {
    public var inode: UInt64
    /// `SO_NETNS_COOKIE` of the namespace: what the BPF programs report (`bpf_get_netns_cookie`).
    public var cookie: UInt64
    public var path: String
    /// Where it came from, for the IDB description: "host", "ip netns foo", "pid 1234 (nginx), cgroup …".
    public var origin: String

    public init(inode: UInt64, cookie: UInt64, path: String, origin: String) {
        self.inode = inode
        self.cookie = cookie
        self.path = path
        self.origin = origin
    }
}

/// What discovery reports, in the order things happen.
public enum DiscoveryEvent: Sendable {
    /// Also sent again for an inode already reported when its origin improves (an `ip netns` name
    /// that appears just after the namespace was found through a process, or that process exec'ing
    /// its real program); same cookie and path. Interface descriptions follow the latest origin.
    case namespaceAdded(NetnsInfo)
    case namespaceRemoved(inode: UInt64)
    case interfaceAdded(InterfaceInfo, netns: NetnsInfo)
    case interfaceRemoved(InterfaceKey)
}
