import CLibBPF
import Glibc
import TapCore

/// The kernel checks behind `tlstap check`: each one really does what tlstap will do (load the
/// embedded capture programs, create a clsact qdisc and attach to it, …) rather than guess from
/// versions, and says in plain words what it found.
public enum CaptureCheck {
    public struct Result: Sendable {
        public var name: String
        public var passed: Bool
        /// Whether tlstap cannot run without it.
        public var required: Bool
        public var detail: String
    }

    public static func runAll() -> [Result] {
        var results = [kernelVersion(), btf(), netns(), uprobes()]
        let ringBuffer = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nil)
        results.append(Result(name: "ring buffer", passed: ringBuffer == 1, required: true,
                              detail: ringBuffer == 1 ? "BPF ring buffer maps are supported"
                                  : "BPF ring buffer maps are not supported (kernel 5.8 or later needed)"))
        do {
            let program = try CaptureProgram(configuration: .init(snaplen: 128, ringBytes: 1 << 20))
            defer { program.close() }
            results.append(Result(name: "BPF", passed: true, required: true,
                                  detail: "loaded the capture programs (tc classifiers writing to a ring buffer)"))
            results.append(clsact(program))
        } catch {
            results.append(Result(name: "BPF", passed: false, required: true, detail: "cannot load the capture programs: \(error)"))
            results.append(Result(name: "tc clsact", passed: false, required: true, detail: "not tried: the capture programs did not load"))
        }
        return results
    }

    static func kernelVersion() -> Result {
        var name = utsname()
        uname(&name)
        let release = withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return Result(name: "kernel", passed: true, required: false, detail: "Linux \(release)")
    }

    static func btf() -> Result {
        let present = access("/sys/kernel/btf/vmlinux", R_OK) == 0
        return Result(name: "BTF", passed: present, required: false,
                      detail: present ? "kernel type information at /sys/kernel/btf/vmlinux"
                          : "no /sys/kernel/btf/vmlinux (not needed: the programs read no kernel structures)")
    }

    static func netns() -> Result {
        let present = access("/proc/self/ns/net", R_OK) == 0
        return Result(name: "netns", passed: present, required: true,
                      detail: present ? "network namespaces are available" : "no /proc/self/ns/net: network namespaces are off")
    }

    static func uprobes() -> Result {
        let path = "/sys/bus/event_source/devices/uprobe/type"
        guard let file = fopen(path, "r") else {
            return Result(name: "uprobes", passed: false, required: true, detail: "no \(path): the kernel has no perf uprobes")
        }
        defer { fclose(file) }
        var type: Int32 = -1
        let found = withUnsafeMutablePointer(to: &type) { readInteger(from: file, into: $0) }
        return Result(name: "uprobes", passed: found, required: true,
                      detail: found ? "perf uprobes are available (event type \(type))" : "cannot read \(path)")
    }

    /// Creates a clsact qdisc on `lo` of a throwaway namespace, attaches the ingress program, then
    /// removes both; the namespace goes away with the thread that made it.
    static func clsact(_ program: CaptureProgram) -> Result {
        let outcome: String? = onThrowawayNamespace {
            var hook = tlstap_tc_hook(1, bpf_tc_attach_point(BPF_TC_INGRESS.rawValue | BPF_TC_EGRESS.rawValue))
            var rc = bpf_tc_hook_create(&hook)
            guard rc == 0 else { return "cannot create a clsact qdisc: \(String(cString: strerror(-rc)))" }
            defer { _ = bpf_tc_hook_destroy(&hook) }
            var ingress = tlstap_tc_hook(1, BPF_TC_INGRESS)
            var opts = tlstap_tc_opts(TCAttachment.handle, TCAttachment.priority, program.ingressFD)
            rc = bpf_tc_attach(&ingress, &opts)
            guard rc == 0 else { return "cannot attach a tc program: \(String(cString: strerror(-rc)))" }
            var detach = tlstap_tc_opts(TCAttachment.handle, TCAttachment.priority, 0)
            rc = bpf_tc_detach(&ingress, &detach)
            guard rc == 0 else { return "cannot detach a tc program: \(String(cString: strerror(-rc)))" }
            return nil
        }
        return Result(name: "tc clsact", passed: outcome == nil, required: true,
                      detail: outcome ?? "created a clsact qdisc and attached a tc program in a scratch namespace")
    }

    /// Runs `body` on a new thread that first moves into a new, empty network namespace; returns an
    /// error text if that fails.
    private static func onThrowawayNamespace(_ body: @escaping () -> String?) -> String? {
        final class Job {
            let body: () -> String?
            var outcome: String?
            init(_ body: @escaping () -> String?) { self.body = body }
        }
        let job = Unmanaged.passRetained(Job(body))
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { arg in
            let job = Unmanaged<Job>.fromOpaque(arg!).takeUnretainedValue()
            if tlstap_unshare(tlstap_clone_newnet) != 0 {
                job.outcome = "cannot create a network namespace: \(String(cString: strerror(errno)))"
            } else {
                job.outcome = job.body()
            }
            return nil
        }, job.toOpaque())
        guard rc == 0 else {
            job.release()
            return "cannot start a thread: \(String(cString: strerror(rc)))"
        }
        pthread_join(thread, nil)
        return job.takeRetainedValue().outcome
    }

    private static func readInteger(from file: UnsafeMutablePointer<FILE>, into value: UnsafeMutablePointer<Int32>) -> Bool {
        var line = [CChar](repeating: 0, count: 32)
        guard fgets(&line, 32, file) != nil else { return false }
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let number = Int32(text.filter { !$0.isWhitespace }) else { return false }
        value.pointee = number
        return true
    }
}
