import CLibBPF
import Discover
import Glibc
import TapCore

/// The capture programs attached to one interface in one network namespace, ingress and egress.
///
/// **Classic clsact filters, not TCX.** On kernel 6.6+ a TCX `bpf_link` would detach by itself when
/// the process dies, but Debian's libbpf 1.1 has no TCX API and bookworm's uapi headers lack the TCX
/// attach types, and older kernels have no TCX at all. So tlstap uses clsact `cls_bpf` filters in
/// direct-action mode, which outlive the process, and makes that safe: its filters sit at one fixed
/// handle and priority (`TCAttachment.handle`/`.priority`) carrying programs named `tlstap_ingress` /
/// `tlstap_egress`, so a restart after kill -9 finds its own leftovers (`removeStaleFilters`, or
/// `BPF_TC_F_REPLACE` when attaching over them). `BPF_TC_F_REPLACE` is used only over a filter
/// verified to be tlstap's: a foreign filter at that place is never replaced nor removed.
///
/// Owns: the two filters, and the clsact qdisc only if it created it. `detach(using:)` removes them,
/// once; an attachment dropped while attached asserts in debug builds (the filters would stay).
public final class TCAttachment: @unchecked Sendable {
    /// tc filter handle of tlstap's filters ("tlst" in ASCII): unlikely to be anyone else's.
    public static let handle: UInt32 = 0x746c_7374
    /// tc priority of tlstap's filters: low, so tlstap sees packets before most other filters act on
    /// them (it returns TC_ACT_UNSPEC, so the filters after it still run), yet not 1 (Cilium's) nor
    /// tc's automatic 49152.
    public static let priority: UInt32 = 17

    public let key: InterfaceKey
    public let ifname: String
    public let netnsPath: String?
    /// The namespace's cookie: which per-namespace program instance the filters run.
    public let netnsCookie: UInt64
    public let directions: [Direction]
    /// Whether attaching created the clsact qdisc (then detaching removes it again).
    public let createdHook: Bool
    private var attached = true
    /// False once detached (or handed over to a newer attachment at the same place).
    public var isAttached: Bool { attached }

    private init(key: InterfaceKey, ifname: String, netnsPath: String?, netnsCookie: UInt64, directions: [Direction],
                 createdHook: Bool) {
        self.key = key
        self.ifname = ifname
        self.netnsPath = netnsPath
        self.netnsCookie = netnsCookie
        self.directions = directions
        self.createdHook = createdHook
    }

    deinit {
        assert(!attached, "TCAttachment on \(ifname) in netns \(key.netnsInode) dropped while attached: its tc filters would stay")
    }

    /// Attaches `program` to ingress and egress of `ifindex` inside the namespace at `netnsPath`
    /// (nil: the thread's home namespace). Replaces tlstap's own stale filters; refuses to replace a
    /// filter of another tool that happens to sit at tlstap's handle and priority.
    public static func attach(_ programs: CaptureInstance, directions: [Direction], netnsPath: String?, netnsCookie: UInt64,
                              key: InterfaceKey, ifname: String, using thread: NetnsThread) throws -> TCAttachment {
        let ifindex = Int32(bitPattern: key.ifindex)
        let place = "\(ifname) in netns \(key.netnsInode)"
        let created = try thread.run(in: netnsPath) { () throws -> Bool in
            var hook = tlstap_tc_hook(ifindex, bpf_tc_attach_point(BPF_TC_INGRESS.rawValue | BPF_TC_EGRESS.rawValue))
            let rc = bpf_tc_hook_create(&hook)
            guard rc == 0 || rc == -EEXIST else { throw SystemError("create the clsact qdisc on \(place)", errno: -rc) }
            let created = rc == 0
            var attached: [Direction] = []
            do {
                for direction in directions {
                    let fd = direction == .inbound ? programs.ingressFD : programs.egressFD
                    let operation = "attach tc \(direction.tcName) to \(place)"
                    var opts = tlstap_tc_opts(handle, priority, fd)
                    if let occupant = try occupant(ifindex: ifindex, direction: direction, operation: operation) {
                        guard isTLSTapProgram(occupant) else {
                            throw SystemError("\(operation): another tool's filter (program \(occupant)) holds tlstap's handle and priority", errno: EEXIST)
                        }
                        opts.flags = UInt32(BPF_TC_F_REPLACE.rawValue) // tlstap's own leftover: take its place
                    }
                    // Without REPLACE the kernel refuses (EEXIST) if any filter, even one the query cannot
                    // describe such as classic BPF, holds the place: tlstap never displaces another tool.
                    var hook = tlstap_tc_hook(ifindex, direction.attachPoint)
                    let rc = bpf_tc_attach(&hook, &opts)
                    if rc == -EEXIST {
                        throw SystemError("\(operation): another tool's filter holds tlstap's handle and priority", errno: EEXIST)
                    }
                    try libbpfCall(operation) { rc }
                    attached.append(direction)
                }
            } catch {
                for direction in attached { _ = detachFilter(ifindex: ifindex, direction: direction) }
                if created { destroyHook(ifindex: ifindex) }
                throw error
            }
            return created
        }
        return TCAttachment(key: key, ifname: ifname, netnsPath: netnsPath, netnsCookie: netnsCookie,
                            directions: directions, createdHook: created)
    }

    /// Removes both filters (and the clsact qdisc if this attachment created it). An interface or
    /// namespace that is gone is not an error: the kernel removed the filters with it. Call once.
    public func detach(using thread: NetnsThread) throws {
        precondition(attached, "TCAttachment on \(ifname) detached twice")
        attached = false
        let ifindex = Int32(bitPattern: key.ifindex)
        let place = "\(ifname) in netns \(key.netnsInode)"
        let createdHook = createdHook
        do {
            try thread.run(in: netnsPath) { () throws in
                for direction in [Direction.inbound, .outbound] {
                    let rc = Self.detachFilter(ifindex: ifindex, direction: direction)
                    guard rc == 0 || Self.isGone(-rc) else {
                        throw SystemError("detach tc \(direction.tcName) from \(place)", errno: -rc)
                    }
                }
                if createdHook { Self.destroyHook(ifindex: ifindex) }
            }
        } catch let error as SystemError where Self.isGone(error.errno) {
            // The namespace path is gone (ENOENT on open): the namespace went, and its interfaces and
            // their filters with it. (A namespace kept alive by something else while its path vanished
            // cannot be re-entered; discovery should hand over a path that lives as long as it does.)
            return
        }
    }

    /// Gives up ownership without removing the filters: a newer attachment at the same place owns them.
    func relinquish() { attached = false }

    /// Finds filters at tlstap's handle and priority on `ifindex` whose program is tlstap's (left by a
    /// process that died without detaching, e.g. after kill -9) and removes them. Returns how many.
    /// Call at start on every interface before attaching.
    @discardableResult
    public static func removeStaleFilters(netnsPath: String?, ifindex: UInt32, ifname: String, using thread: NetnsThread) throws -> Int {
        let index = Int32(bitPattern: ifindex)
        return try thread.run(in: netnsPath) { () throws -> Int in
            var removed = 0
            for direction in [Direction.inbound, .outbound] {
                let operation = "remove a stale tlstap filter from tc \(direction.tcName) of \(ifname)"
                guard let name = try occupant(ifindex: index, direction: direction, operation: operation),
                      isTLSTapProgram(name) else { continue }
                let rc = detachFilter(ifindex: index, direction: direction)
                guard rc == 0 || isGone(-rc) else { throw SystemError(operation, errno: -rc) }
                if rc == 0 { removed += 1 }
            }
            return removed
        }
    }

    /// The program name of the filter at tlstap's handle and priority, or nil if there is none.
    /// Runs inside the interface's namespace.
    static func occupant(ifindex: Int32, direction: Direction, operation: String) throws(SystemError) -> String? {
        var hook = tlstap_tc_hook(ifindex, direction.attachPoint)
        var opts = tlstap_tc_opts(handle, priority, 0)
        let rc = bpf_tc_query(&hook, &opts)
        // ENOENT: no such filter; EINVAL: no clsact qdisc on the interface at all.
        if rc == -ENOENT || rc == -EINVAL || rc == -ENODEV { return nil }
        try libbpfCall("\(operation): query") { rc }
        let fd = bpf_prog_get_fd_by_id(opts.prog_id)
        if fd < 0 { return errno == ENOENT ? nil : "<id \(opts.prog_id)>" }
        defer { Glibc.close(fd) }
        var info = bpf_prog_info()
        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
        try libbpfCall("\(operation): read program \(opts.prog_id)") { bpf_obj_get_info_by_fd(fd, &info, &length) }
        return withUnsafeBytes(of: info.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    static func isTLSTapProgram(_ name: String) -> Bool {
        name == CaptureProgram.ingressProgramName || name == CaptureProgram.egressProgramName
    }

    /// Removes the filter at tlstap's handle and priority; returns libbpf's result (0 or -errno).
    static func detachFilter(ifindex: Int32, direction: Direction) -> Int32 {
        var hook = tlstap_tc_hook(ifindex, direction.attachPoint)
        // bpf_tc_detach insists that prog_fd, prog_id and flags are zero.
        var opts = tlstap_tc_opts(handle, priority, 0)
        return bpf_tc_detach(&hook, &opts)
    }

    static func destroyHook(ifindex: Int32) {
        var hook = tlstap_tc_hook(ifindex, bpf_tc_attach_point(BPF_TC_INGRESS.rawValue | BPF_TC_EGRESS.rawValue))
        _ = bpf_tc_hook_destroy(&hook)
    }

    /// Errors that mean the interface, its filter or its namespace no longer exists.
    static func isGone(_ code: Int32) -> Bool { code == ENOENT || code == ENODEV || code == ENXIO }
}

extension Direction {
    var attachPoint: bpf_tc_attach_point { self == .inbound ? BPF_TC_INGRESS : BPF_TC_EGRESS }
    var tcName: String { self == .inbound ? "ingress" : "egress" }
}
