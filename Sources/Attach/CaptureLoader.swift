import CLibBPF
import Glibc
import TapCore

/// The loaded capture programs of `bpf/capture.bpf.c`: the loader paired with that file.
///
/// Goes open → configure (`cfg_snaplen`, the `events` ring size) → load in `init`; the programs are
/// then attached by `TCAttachmentTable` and the ring is read by a `RingBufferConsumer` over
/// `eventsMapFD`. Owns the `bpf_object` (and with it every program and map fd): `close()` destroys it,
/// exactly once; a program dropped without `close()` is a leak and asserts in debug builds.
///
/// Kernel needs: BPF ring buffers (5.8), BTF at /sys/kernel/btf/vmlinux and the
/// `bpf_cast_to_kern_ctx` kfunc (6.2), through which the program reads each packet's device
/// namespace (see bpf/capture.bpf.c); `tlstap check` loads this object to tell.
public final class CaptureProgram: @unchecked Sendable {
    public struct Configuration: Sendable, Equatable {
        /// Bytes of each packet copied into the ring; clamped to `CaptureProgram.maxSnaplen`.
        public var snaplen: UInt32
        /// Size of the `events` ring in bytes: a power of two, at least one page.
        public var ringBytes: UInt32
        /// The consumer is woken only once this many bytes wait in the ring (0: on every record, the
        /// kernel's default). Batching wakeups saves a scheduler wakeup per packet; a consumer using it
        /// must poll with a timeout (records that did not wake it are read when `poll` times out), and
        /// that timeout bounds the added latency. Default 256 KiB, a few hundred packets.
        public var wakeupBytes: UInt32

        public init(snaplen: UInt32 = 262_144, ringBytes: UInt32 = 64 << 20, wakeupBytes: UInt32 = 256 << 10) {
            self.snaplen = snaplen
            self.ringBytes = ringBytes
            self.wakeupBytes = wakeupBytes
        }
    }

    /// The largest snaplen the BPF program can honour (its biggest ring reservation).
    public static let maxSnaplen = UInt32(CAPTURE_MAX_SNAPLEN)
    /// Kernel names of the two programs; stale-filter cleanup recognises tlstap's filters by them.
    public static let ingressProgramName = "tlstap_ingress"
    public static let egressProgramName = "tlstap_egress"

    public let configuration: Configuration
    public let ingressFD: Int32
    public let egressFD: Int32
    public let eventsMapFD: Int32
    public let dropsMapFD: Int32

    private var object: OpaquePointer?

    public init(configuration: Configuration = Configuration()) throws(SystemError) {
        var configuration = configuration
        configuration.snaplen = min(max(configuration.snaplen, 1), Self.maxSnaplen)
        let pageSize = UInt32(sysconf(Int32(_SC_PAGESIZE)))
        guard configuration.ringBytes >= pageSize, configuration.ringBytes & (configuration.ringBytes - 1) == 0 else {
            throw SystemError("capture ring size \(configuration.ringBytes) is not a power of two of at least \(pageSize) bytes", errno: EINVAL)
        }
        self.configuration = configuration

        let bytes = EmbeddedBPF.capture.objectBytes
        let opened: OpaquePointer? = "tlstap_capture".withCString { name in
            var opts = tlstap_object_open_opts(name)
            return bytes.withUnsafeBytes { bpf_object__open_mem($0.baseAddress, $0.count, &opts) }
        }
        // libbpf 1.x returns NULL and sets errno on failure.
        guard let opened else { throw SystemError("open the embedded capture BPF object", errno: errno) }

        do {
            try Self.setReadOnly("cfg_snaplen", to: configuration.snaplen, in: opened)
            try Self.setReadOnly("cfg_wakeup_bytes", to: min(configuration.wakeupBytes, configuration.ringBytes / 2), in: opened)
            let events = try Self.map(named: "events", in: opened)
            try libbpfCall("resize the capture ring to \(configuration.ringBytes) bytes") {
                bpf_map__set_max_entries(events, configuration.ringBytes)
            }
            try libbpfCall("load the capture BPF programs") { bpf_object__load(opened) }
            ingressFD = try Self.programFD(named: Self.ingressProgramName, in: opened)
            egressFD = try Self.programFD(named: Self.egressProgramName, in: opened)
            eventsMapFD = bpf_map__fd(events)
            dropsMapFD = bpf_map__fd(try Self.map(named: "drops", in: opened))
        } catch {
            bpf_object__close(opened)
            throw error
        }
        object = opened
    }

    deinit {
        assert(object == nil, "CaptureProgram dropped without close(): its BPF object leaked")
        if let object { bpf_object__close(object) }
    }

    /// Destroys the BPF object (programs and maps; attached filters keep their program alive until
    /// detached). Calling it again does nothing.
    public func close() {
        guard let object else { return }
        bpf_object__close(object)
        self.object = nil
    }

    /// Packets the program could not put in the ring (it was full), per interface since load, summed
    /// over CPUs and both directions.
    public func readDrops() throws(SystemError) -> [CaptureInterfaceID: UInt64] {
        let cpus = Int(libbpf_num_possible_cpus())
        guard cpus > 0 else { throw SystemError("count possible CPUs", errno: -Int32(cpus)) }
        var totals: [CaptureInterfaceID: UInt64] = [:]
        var values = [UInt64](repeating: 0, count: cpus)
        var key = capture_iface()
        var next = capture_iface()
        var havePrevious = false
        while true {
            let rc = havePrevious ? bpf_map_get_next_key(dropsMapFD, &key, &next) : bpf_map_get_next_key(dropsMapFD, nil, &next)
            if rc != 0 {
                if errno == ENOENT { break }
                throw SystemError("walk the capture drop counters", errno: errno)
            }
            key = next
            havePrevious = true
            if bpf_map_lookup_elem(dropsMapFD, &key, &values) != 0 {
                if errno == ENOENT { continue } // removed between the walk and the lookup
                throw SystemError("read the capture drop counters", errno: errno)
            }
            let id = CaptureInterfaceID(netnsCookie: key.netns_cookie, ifindex: key.ifindex)
            totals[id, default: 0] += values.reduce(0, &+)
        }
        return totals
    }

    private static func map(named name: String, in object: OpaquePointer) throws(SystemError) -> OpaquePointer {
        guard let map = bpf_object__find_map_by_name(object, name) else {
            throw SystemError("find map \(name) in the capture BPF object", errno: ENOENT)
        }
        return map
    }

    private static func programFD(named name: String, in object: OpaquePointer) throws(SystemError) -> Int32 {
        guard let program = bpf_object__find_program_by_name(object, name) else {
            throw SystemError("find program \(name) in the capture BPF object", errno: ENOENT)
        }
        return try libbpfCall("get the fd of program \(name)") { bpf_program__fd(program) }
    }

    /// Writes a `cfg_` knob into the object's read-only data before load. Its place in `.rodata` comes
    /// from the object's BTF, so adding or reordering knobs cannot shift it silently.
    private static func setReadOnly(_ name: String, to value: UInt32, in object: OpaquePointer) throws(SystemError) {
        let what = "set \(name) in the capture BPF object"
        guard let rodata = bpf_object__find_map_by_name(object, ".rodata"),
              let btf = bpf_object__btf(object) else { throw SystemError(what, errno: ENOENT) }
        let sectionID = btf__find_by_name(btf, ".rodata")
        guard sectionID > 0, let section = btf__type_by_id(btf, UInt32(sectionID)), btf_is_datasec(section) else {
            throw SystemError(what, errno: ENOENT)
        }
        let variables = btf_var_secinfos(section)!
        var offset: Int?
        for index in 0..<Int(btf_vlen(section)) {
            let variable = variables[index]
            guard let type = btf__type_by_id(btf, variable.type),
                  String(cString: btf__name_by_offset(btf, type.pointee.name_off)) == name else { continue }
            guard variable.size == UInt32(MemoryLayout<UInt32>.size) else { throw SystemError(what, errno: EINVAL) }
            offset = Int(variable.offset)
        }
        var size = 0
        guard let offset, let initial = bpf_map__initial_value(rodata, &size), offset + 4 <= size else {
            throw SystemError(what, errno: ENOENT)
        }
        // BPF runs in host byte order, so the value is written natively.
        var data = [UInt8](UnsafeRawBufferPointer(start: initial, count: size))
        withUnsafeBytes(of: value) { data.replaceSubrange(offset..<offset + 4, with: $0) }
        try libbpfCall(what) { data.withUnsafeBytes { bpf_map__set_initial_value(rodata, $0.baseAddress, $0.count) } }
    }
}

/// An interface as the BPF program names it: the cookie of the device's namespace (which user space
/// reads as `SO_NETNS_COOKIE` of a socket in it) and the ifindex inside that namespace.
public struct CaptureInterfaceID: Hashable, Sendable, CustomStringConvertible {
    public var netnsCookie: UInt64
    public var ifindex: UInt32

    public init(netnsCookie: UInt64, ifindex: UInt32) {
        self.netnsCookie = netnsCookie
        self.ifindex = ifindex
    }

    public var description: String { "netns cookie \(netnsCookie)/if\(ifindex)" }
}
