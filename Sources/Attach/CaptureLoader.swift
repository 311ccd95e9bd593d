import CLibBPF
import Glibc
import TapCore

/// The loaded capture programs of `bpf/capture.bpf.c`: the loader paired with that file.
///
/// Goes open → configure (`cfg_snaplen`, ring sizes) → load in `init`, which creates the maps
/// (`events`, an array of per-CPU rings, and `drops`), then creates one ring per possible CPU and puts
/// it in `events`; a `RingBufferConsumer` reads them over `eventsMapFDs`, merging them by time.
/// A tc program cannot tell which namespace it runs in, so each namespace gets its own instance of
/// the programs (`instance(forNetnsCookie:)`), loaded with `cfg_netns_cookie` set and the maps of
/// the first object reused (`bpf_map__reuse_fd`); `TCAttachmentTable` takes one when it attaches in a
/// namespace and gives it back when the namespace's last interface is detached.
///
/// Kernel needs: BPF ring buffers (5.8) and clsact; no BTF (the program reads no kernel structs).
///
/// Owns every `bpf_object` (and with them every program and map fd): `close()` destroys them, exactly
/// once; a program dropped without `close()` is a leak and asserts in debug builds.
public final class CaptureProgram: @unchecked Sendable {
    public struct Configuration: Sendable, Equatable {
        /// Bytes of each packet copied into the ring; clamped to `CaptureProgram.maxSnaplen`.
        public var snaplen: UInt32
        /// Bytes of ring in all, shared out over one ring per possible CPU (`ringBytesPerCPU`): a power
        /// of two, at least one page.
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
    /// One ring per possible CPU, index = CPU id; owned here, closed by `close()`.
    public private(set) var eventsMapFDs: [Int32] = []
    public let dropsMapFD: Int32
    /// The `events` array of rings (owned by the first object).
    private let ringsMapFD: Int32
    private let rings: (count: UInt32, bytesEach: UInt32)

    /// Where an object's maps come from: made at its load (the first object) or the first object's.
    private enum MapSource {
        case create(ringTemplate: Int32, count: UInt32)
        case share(events: Int32, drops: Int32)
    }

    private var object: OpaquePointer?
    private let lock = PThreadMutexCondition()
    /// Per-namespace instances: netns cookie → (object, users).
    private var instances: [UInt64: (object: OpaquePointer, programs: CaptureInstance, users: Int)] = [:]

    public init(configuration: Configuration = Configuration()) throws(SystemError) {
        var configuration = configuration
        configuration.snaplen = min(max(configuration.snaplen, 1), Self.maxSnaplen)
        let pageSize = UInt32(sysconf(Int32(_SC_PAGESIZE)))
        guard configuration.ringBytes >= pageSize, configuration.ringBytes & (configuration.ringBytes - 1) == 0 else {
            throw SystemError("capture ring size \(configuration.ringBytes) is not a power of two of at least \(pageSize) bytes", errno: EINVAL)
        }
        self.configuration = configuration

        let cpus = Int(libbpf_num_possible_cpus())
        guard cpus > 0 else { throw SystemError("count possible CPUs", errno: -Int32(cpus)) }
        let perCPU = Self.ringBytesPerCPU(total: configuration.ringBytes, cpus: UInt32(cpus), pageSize: pageSize)
        rings = (UInt32(cpus), perCPU)
        var ringFDs: [Int32] = []
        var opened: OpaquePointer?
        do throws(SystemError) {
            // The rings exist before the object: the first one is also the template `events` is
            // created from (libbpf 1.1 cannot resize an inner map definition).
            for cpu in 0..<cpus {
                ringFDs.append(try libbpfCall("create the capture ring of CPU \(cpu)") {
                    bpf_map_create(BPF_MAP_TYPE_RINGBUF, "tlstap_cpu_ring", 0, 0, perCPU, nil)
                })
            }
            let loaded = try Self.load(configuration: configuration, netnsCookie: 0,
                                       maps: .create(ringTemplate: ringFDs[0], count: rings.count), ringBytesEach: perCPU)
            opened = loaded
            ingressFD = try Self.programFD(named: Self.ingressProgramName, in: loaded)
            egressFD = try Self.programFD(named: Self.egressProgramName, in: loaded)
            ringsMapFD = bpf_map__fd(try Self.map(named: "events", in: loaded))
            dropsMapFD = bpf_map__fd(try Self.map(named: "drops", in: loaded))
            for (cpu, ring) in ringFDs.enumerated() {
                var key = UInt32(cpu)
                var value = ring
                try libbpfCall("put the ring of CPU \(cpu) in the capture rings") {
                    bpf_map_update_elem(ringsMapFD, &key, &value, UInt64(BPF_ANY))
                }
            }
        } catch {
            for ring in ringFDs { Glibc.close(ring) }
            if let opened { bpf_object__close(opened) }
            throw error
        }
        eventsMapFDs = ringFDs
        object = opened
    }

    /// Each CPU's share of `total`, rounded down to a power of two, but at least `minimumPerCPU` (or
    /// all of `total` if that is less) and a page: a burst that one CPU handles alone (one fast flow)
    /// fills only that CPU's ring, so a share of 64 MiB over 64 CPUs would be too small. Hosts with
    /// many CPUs therefore use more than `total`. (A record larger than its ring counts as dropped.)
    public static func ringBytesPerCPU(total: UInt32, cpus: UInt32, pageSize: UInt32) -> UInt32 {
        let share = max(total / max(cpus, 1), 1)
        let powerOfTwo = UInt32(1) << (31 - share.leadingZeroBitCount)
        return max(powerOfTwo, min(total, minimumPerCPU), pageSize)
    }

    /// The smallest ring a CPU gets unless the whole configured size is smaller.
    public static let minimumPerCPU: UInt32 = 4 << 20

    /// The programs to attach in the namespace with this `SO_NETNS_COOKIE`, loaded on first use.
    /// Pair every call with `releaseInstance(forNetnsCookie:)`.
    public func instance(forNetnsCookie cookie: UInt64) throws -> CaptureInstance {
        try lock.locked { () throws -> CaptureInstance in
            if let existing = instances[cookie] {
                instances[cookie]!.users += 1
                return existing.programs
            }
            let loaded = try Self.load(configuration: configuration, netnsCookie: cookie,
                                       maps: .share(events: ringsMapFD, drops: dropsMapFD), ringBytesEach: rings.bytesEach)
            do {
                let programs = CaptureInstance(
                    ingressFD: try Self.programFD(named: Self.ingressProgramName, in: loaded),
                    egressFD: try Self.programFD(named: Self.egressProgramName, in: loaded))
                instances[cookie] = (loaded, programs, 1)
                return programs
            } catch {
                bpf_object__close(loaded)
                throw error
            }
        }
    }

    /// Gives back an instance; the last user's release unloads it (attached filters keep their
    /// programs alive in the kernel until they are detached).
    public func releaseInstance(forNetnsCookie cookie: UInt64) {
        let unload = lock.locked { () -> OpaquePointer? in
            guard let entry = instances[cookie] else { return nil }
            if entry.users > 1 {
                instances[cookie]!.users -= 1
                return nil
            }
            instances[cookie] = nil
            return entry.object
        }
        if let unload { bpf_object__close(unload) }
    }

    /// How many per-namespace instances are loaded (for leak tests).
    public var instanceCount: Int { lock.locked { instances.count } }

    /// open → configure → load of one object, its maps made or shared as `maps` says.
    private static func load(configuration: Configuration, netnsCookie: UInt64, maps: MapSource,
                             ringBytesEach: UInt32) throws(SystemError) -> OpaquePointer {
        let opened = try EmbeddedBPF.capture.open()
        do throws(SystemError) {
            try setReadOnly("cfg_snaplen", to: configuration.snaplen, in: opened)
            try setReadOnly("cfg_netns_cookie", to: netnsCookie, in: opened)
            try setReadOnly("cfg_wakeup_bytes", to: min(configuration.wakeupBytes, ringBytesEach / 2), in: opened)
            let events = try map(named: "events", in: opened)
            switch maps {
            case .create(let ringTemplate, let count):
                try libbpfCall("size the capture rings array for \(count) CPUs") { bpf_map__set_max_entries(events, count) }
                try libbpfCall("set the capture ring template") { bpf_map__set_inner_map_fd(events, ringTemplate) }
            case .share(let shared, let drops):
                try libbpfCall("share the capture rings") { bpf_map__reuse_fd(events, shared) }
                let dropsMap = try map(named: "drops", in: opened)
                try libbpfCall("share the capture drop counters") { bpf_map__reuse_fd(dropsMap, drops) }
            }
            try libbpfCall("load the capture BPF programs for netns cookie \(netnsCookie)") { bpf_object__load(opened) }
            return opened
        } catch {
            bpf_object__close(opened)
            throw error
        }
    }

    deinit {
        assert(object == nil, "CaptureProgram dropped without close(): its BPF object leaked")
        if let object { bpf_object__close(object) }
    }

    /// Destroys the BPF object (programs and maps; attached filters keep their program alive until
    /// detached). Calling it again does nothing.
    public func close() {
        guard let object else { return }
        let loaded = lock.locked { () -> [OpaquePointer] in
            defer { instances.removeAll() }
            return instances.values.map(\.object)
        }
        for instance in loaded { bpf_object__close(instance) }
        bpf_object__close(object)
        for ring in eventsMapFDs { Glibc.close(ring) }
        eventsMapFDs = []
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

    /// Writes a `cfg_` variable into the object's read-only data before load. Its place in `.rodata`
    /// comes from the object's BTF, so adding more knobs cannot shift it silently.
    private static func setReadOnly<Value: FixedWidthInteger>(_ name: String, to value: Value, in object: OpaquePointer) throws(SystemError) {
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
            guard variable.size == UInt32(MemoryLayout<Value>.size) else { throw SystemError(what, errno: EINVAL) }
            offset = Int(variable.offset)
        }
        let width = MemoryLayout<Value>.size
        var size = 0
        guard let offset, let initial = bpf_map__initial_value(rodata, &size), offset + width <= size else {
            throw SystemError(what, errno: ENOENT)
        }
        // BPF runs in host byte order, so the value is written natively.
        var data = [UInt8](UnsafeRawBufferPointer(start: initial, count: size))
        withUnsafeBytes(of: value) { data.replaceSubrange(offset..<offset + width, with: $0) }
        try libbpfCall(what) { data.withUnsafeBytes { bpf_map__set_initial_value(rodata, $0.baseAddress, $0.count) } }
    }
}

/// The two programs of one per-namespace instance.
public struct CaptureInstance: Sendable {
    public var ingressFD: Int32
    public var egressFD: Int32
}

/// An interface as the BPF program names it: the namespace's cookie (`bpf_get_netns_cookie`, which
/// user space reads as `SO_NETNS_COOKIE`) and the ifindex inside that namespace.
public struct CaptureInterfaceID: Hashable, Sendable, CustomStringConvertible {
    public var netnsCookie: UInt64
    public var ifindex: UInt32

    public init(netnsCookie: UInt64, ifindex: UInt32) {
        self.netnsCookie = netnsCookie
        self.ifindex = ifindex
    }

    public var description: String { "netns cookie \(netnsCookie)/if\(ifindex)" }
}
