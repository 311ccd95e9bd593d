import CLibBPF
import FoundationEssentials
import Glibc
import TapCore

/// A BPF object compiled from `bpf/NAME.bpf.c` at build time and carried inside the binary
/// (the EmbedBPF plugin generates one `EmbeddedBPF+NAME.swift` per program).
struct EmbeddedBPF: Sendable {
    let name: String
    let base64: String

    /// The ELF object bytes, for `bpf_object__open_mem`.
    var objectBytes: [UInt8] {
        guard let data = Data(base64Encoded: base64) else {
            preconditionFailure("embedded BPF object \(name) is not valid base64: the build is broken")
        }
        return [UInt8](data)
    }

    /// Opens the object with libbpf as `tlstap_NAME`. `bpf_object__open_mem` parses and copies what
    /// it keeps before it returns, so the bytes need not outlive the call. The caller owns the result
    /// and closes it with `bpf_object__close`.
    func open() throws(SystemError) -> OpaquePointer {
        let bytes = objectBytes
        let opened: OpaquePointer? = "tlstap_\(name)".withCString { objectName in
            var opts = tlstap_object_open_opts(objectName)
            return bytes.withUnsafeBytes { bpf_object__open_mem($0.baseAddress, $0.count, &opts) }
        }
        // libbpf 1.x returns NULL and sets errno on failure.
        guard let opened else { throw SystemError("open the embedded \(name) BPF object", errno: errno) }
        return opened
    }
}
