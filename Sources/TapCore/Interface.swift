/// One interface in one network namespace: the unit a tc attachment, an IDB and a counter belong to.
public struct InterfaceKey: Hashable, Sendable, CustomStringConvertible {
    /// Inode of the network namespace (`stat /proc/PID/ns/net`), stable for the namespace's life.
    public var netnsInode: UInt64
    public var ifindex: UInt32

    public init(netnsInode: UInt64, ifindex: UInt32) {
        self.netnsInode = netnsInode
        self.ifindex = ifindex
    }

    public var description: String { "netns:\(netnsInode)/if\(ifindex)" }
}

/// PcapNG link types (https://www.tcpdump.org/linktypes.html) for what tc hands a program.
public enum LinkType: UInt16, Sendable {
    /// Ethernet and loopback: skb data starts at a 14-byte Ethernet header (zeros on lo).
    case ethernet = 1
    /// Devices without a link-layer header (tun, wireguard): data starts at the IP header.
    case rawIP = 101
}

/// What the IDB says about an interface.
public struct InterfaceInfo: Hashable, Sendable {
    public var key: InterfaceKey
    /// The kernel name inside its namespace, e.g. `eth0`.
    public var name: String
    public var linkType: LinkType
    /// Human description: namespace origin, container/cgroup when known.
    public var description: String
    /// A loopback device: every packet passes its egress and then its ingress hook.
    public var isLoopback: Bool

    public init(key: InterfaceKey, name: String, linkType: LinkType, description: String, isLoopback: Bool = false) {
        self.key = key
        self.name = name
        self.linkType = linkType
        self.description = description
        self.isLoopback = isLoopback
    }

    /// The IDB `if_name`: unique across namespaces and readable, e.g. `netns:4026532301/eth0`.
    public var qualifiedName: String { "netns:\(key.netnsInode)/\(name)" }
}
