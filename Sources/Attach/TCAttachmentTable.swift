import Discover
import Logging
import TapCore

/// What is attached where: the single source of truth, from (netns inode, ifindex) to the
/// `TCAttachment` there. Attaching and detaching go through it; `detachAll()` on stop empties it.
///
/// Owns the attachments (not the program nor the netns thread, which outlive it). Safe to call from
/// several threads; each operation runs its netns work on the shared `NetnsThread`.
public final class TCAttachmentTable: @unchecked Sendable {
    private let program: CaptureProgram
    private let thread: NetnsThread
    private let logger: Logger
    private let lock = PThreadMutexCondition()
    private var attachments: [InterfaceKey: TCAttachment] = [:]

    public init(program: CaptureProgram, netnsThread: NetnsThread, logger: Logger) {
        self.program = program
        self.thread = netnsThread
        self.logger = logger
    }

    deinit {
        assert(attachments.isEmpty, "TCAttachmentTable dropped with \(attachments.count) attachments: call detachAll()")
    }

    public var count: Int { lock.locked { attachments.count } }
    public var keys: [InterfaceKey] { lock.locked { Array(attachments.keys) } }
    public func isAttached(_ key: InterfaceKey) -> Bool { lock.locked { attachments[key] != nil } }

    /// Removes tlstap's stale filters from the interface (left by a tlstap killed with -9), then
    /// attaches the namespace's program instance to it; so the daemon needs no separate cleanup pass at
    /// start. Attaching to an interface already in the table does nothing. Throws with the interface
    /// and namespace named; the caller logs, counts and skips that interface.
    public func attach(netnsPath: String?, netnsCookie: UInt64, key: InterfaceKey, ifname: String,
                       directions: [Direction] = [.inbound, .outbound]) throws {
        if isAttached(key) { return }
        let stale = try TCAttachment.removeStaleFilters(netnsPath: netnsPath, ifindex: key.ifindex, ifname: ifname, using: thread)
        if stale > 0 {
            logger.notice("removed stale tlstap tc filters", metadata: [
                "interface": "\(ifname)", "netns": "\(key.netnsInode)", "count": "\(stale)"])
        }
        let programs = try program.instance(forNetnsCookie: netnsCookie)
        let attachment: TCAttachment
        do {
            attachment = try TCAttachment.attach(programs, directions: directions, netnsPath: netnsPath,
                                                 netnsCookie: netnsCookie, key: key, ifname: ifname, using: thread)
        } catch {
            program.releaseInstance(forNetnsCookie: netnsCookie)
            throw error
        }
        let previous = lock.locked { () -> TCAttachment? in
            defer { attachments[key] = attachment }
            return attachments[key]
        }
        // Two racing attaches to one key: both attached at the same handle, so the filters are the
        // newer one's; the older gives up its claim without removing them.
        if let previous {
            previous.relinquish()
            program.releaseInstance(forNetnsCookie: previous.netnsCookie)
        }
    }

    /// Detaches from one interface; a key not in the table does nothing.
    public func detach(_ key: InterfaceKey) throws {
        guard let attachment = lock.locked({ attachments.removeValue(forKey: key) }) else { return }
        defer { program.releaseInstance(forNetnsCookie: attachment.netnsCookie) }
        try attachment.detach(using: thread)
    }

    /// Detaches every interface of a namespace (it went away or is no longer wanted).
    public func detachNamespace(inode: UInt64) {
        let gone = lock.locked { () -> [TCAttachment] in
            let matching = attachments.filter { $0.key.netnsInode == inode }
            for key in matching.keys { attachments.removeValue(forKey: key) }
            return Array(matching.values)
        }
        for attachment in gone { detachLogging(attachment) }
    }

    /// Detaches everything; failures are logged and the rest still detached. Call on stop.
    public func detachAll() {
        let all = lock.locked { () -> [TCAttachment] in
            defer { attachments.removeAll() }
            return Array(attachments.values)
        }
        for attachment in all { detachLogging(attachment) }
    }

    private func detachLogging(_ attachment: TCAttachment) {
        defer { program.releaseInstance(forNetnsCookie: attachment.netnsCookie) }
        do {
            try attachment.detach(using: thread)
        } catch {
            logger.error("cannot detach tc filters", metadata: [
                "interface": "\(attachment.ifname)", "netns": "\(attachment.key.netnsInode)",
                "error": "\(error)"])
        }
    }
}
