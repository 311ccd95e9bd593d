import Discover
import TapCore

/// What tlstap knows about the namespaces and interfaces it attached to, shared between the
/// attacher (discovery's thread) and the pipeline thread, which resolves every ring record's
/// (netns cookie, ifindex) to an interface here.
///
/// Entries are added *before* the tc programs are attached and removed *after* they are detached,
/// so every packet the kernel delivers names an interface the registry knows.
public final class InterfaceRegistry: @unchecked Sendable {
    private let lock = PThreadMutexCondition()
    private var namespacesByCookie: [UInt64: NetnsInfo] = [:]
    private var interfaces: [InterfaceKey: InterfaceInfo] = [:]
    /// Bumped on every change so the pipeline can cache lookups and notice when to refresh.
    public private(set) var generation: UInt64 = 0

    public init() {}

    public func addNamespace(_ netns: NetnsInfo) {
        lock.locked {
            namespacesByCookie[netns.cookie] = netns
            generation &+= 1
        }
    }

    public func removeNamespace(inode: UInt64) {
        lock.locked {
            namespacesByCookie = namespacesByCookie.filter { $0.value.inode != inode }
            interfaces = interfaces.filter { $0.key.netnsInode != inode }
            generation &+= 1
        }
    }

    public func addInterface(_ info: InterfaceInfo) {
        lock.locked {
            interfaces[info.key] = info
            generation &+= 1
        }
    }

    public func removeInterface(_ key: InterfaceKey) {
        lock.locked {
            interfaces[key] = nil
            generation &+= 1
        }
    }

    /// The interface a BPF record names, or nil if it is not (or no longer) attached.
    public func resolve(cookie: UInt64, ifindex: UInt32) -> InterfaceInfo? {
        lock.locked {
            guard let netns = namespacesByCookie[cookie] else { return nil }
            return interfaces[InterfaceKey(netnsInode: netns.inode, ifindex: ifindex)]
        }
    }

    public func currentGeneration() -> UInt64 { lock.locked { generation } }

    public func snapshot() -> (namespaces: [NetnsInfo], interfaces: [InterfaceInfo]) {
        lock.locked {
            (Array(namespacesByCookie.values).sorted { $0.inode < $1.inode },
             interfaces.values.sorted { ($0.key.netnsInode, $0.key.ifindex) < ($1.key.netnsInode, $1.key.ifindex) })
        }
    }
}
