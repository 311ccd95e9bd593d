import FoundationEssentials

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
}
