import Attach
import Discover
import Logging
import TapCore

/// Turns discovery events into tc attachments: the only place that decides what gets attached.
///
/// Runs on discovery's thread (its handler is synchronous): a namespace is registered before any of
/// its interfaces; an interface is registered before its programs are attached and unregistered
/// after they are detached, so the pipeline can always resolve what the kernel delivers.
/// Per-interface failures are logged, counted and skipped — one vanished interface must not stop
/// the capture of the others.
final class Attacher: @unchecked Sendable {
    private let table: TCAttachmentTable
    private let registry: InterfaceRegistry
    private let logger: Logger
    private let lock = PThreadMutexCondition()
    private var config: TapConfig
    private var namespaces: [UInt64: NetnsInfo] = [:]
    private(set) var failures: UInt64 = 0
    /// Set on stop: no new attachments, so `detachAll` leaves nothing behind.
    private var closed = false
    /// Serialises an attachment with `detachAll`, so none can slip in after it.
    private let serial = PThreadMutexCondition()

    init(table: TCAttachmentTable, registry: InterfaceRegistry, config: TapConfig, logger: Logger) {
        self.table = table
        self.registry = registry
        self.config = config
        self.logger = logger
    }

    func handle(_ event: DiscoveryEvent) {
        switch event {
        case .namespaceAdded(let netns):
            lock.locked { namespaces[netns.inode] = netns }
            registry.addNamespace(netns)
            logger.info("watching network namespace", metadata: [
                "netns": "\(netns.inode)", "origin": "\(netns.origin)"])
        case .namespaceRemoved(let inode):
            table.detachNamespace(inode: inode)
            registry.removeNamespace(inode: inode)
            lock.locked { namespaces[inode] = nil }
            logger.info("network namespace gone", metadata: ["netns": "\(inode)"])
        case .interfaceAdded(let info, let netns):
            attach(info, in: netns)
        case .interfaceRemoved(let key):
            detach(key, reason: "interface removed")
        }
    }

    /// Detaches every interface while discovery still holds the namespaces open (their paths are
    /// valid only until discovery stops), and refuses attachments from then on.
    func detachAll() {
        serial.locked {
            lock.locked { closed = true }
            table.detachAll()
        }
    }

    private func attach(_ info: InterfaceInfo, in netns: NetnsInfo) {
        serial.locked { attachSerially(info, in: netns) }
    }

    private func attachSerially(_ info: InterfaceInfo, in netns: NetnsInfo) {
        let (wanted, closed) = lock.locked { (config.captures(info), self.closed) }
        guard !closed else { return }
        guard wanted else {
            logger.debug("interface excluded by configuration", metadata: metadata(info))
            return
        }
        registry.addInterface(info)
        do {
            try table.attach(netnsPath: netns.path, netnsCookie: netns.cookie, key: info.key, ifname: info.name,
                             directions: Self.directions(for: info))
            logger.info("attached", metadata: metadata(info))
        } catch {
            registry.removeInterface(info.key)
            lock.locked { failures += 1 }
            logger.warning("cannot attach: \(error)", metadata: metadata(info))
        }
    }

    private func detach(_ key: InterfaceKey, reason: String) {
        guard table.isAttached(key) else { return }
        do {
            try table.detach(key)
        } catch {
            logger.warning("cannot detach: \(error)", metadata: ["netns": "\(key.netnsInode)", "ifindex": "\(key.ifindex)"])
        }
        registry.removeInterface(key)
        logger.info("detached: \(reason)", metadata: ["netns": "\(key.netnsInode)", "ifindex": "\(key.ifindex)"])
    }

    /// Applies new interface filters on reload: attaches what is now wanted, detaches what is not.
    func apply(_ newConfig: TapConfig, current interfaces: [InterfaceInfo]) {
        lock.locked { config = newConfig }
        for info in interfaces {
            let wanted = newConfig.captures(info)
            let attached = table.isAttached(info.key)
            if wanted && !attached, let netns = lock.locked({ namespaces[info.key.netnsInode] }) {
                attach(info, in: netns)
            } else if !wanted && attached {
                detach(info.key, reason: "excluded by configuration")
            }
        }
    }

    /// Duplicate policy (ARCHITECTURE.md): every packet on a loopback device passes its egress and
    /// then its ingress hook; recording both would store each packet twice in one interface, so
    /// loopback is captured on ingress only — once, as tcpdump shows it. Every other interface is
    /// captured in both directions, each as its own IDB.
    static func directions(for info: InterfaceInfo) -> [Direction] {
        info.isLoopback ? [.inbound] : [.inbound, .outbound]
    }

    private func metadata(_ info: InterfaceInfo) -> Logger.Metadata {
        ["interface": "\(info.qualifiedName)", "netns": "\(info.key.netnsInode)"]
    }
}
