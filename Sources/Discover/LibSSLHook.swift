/// Where in a libssl (or a static OpenSSL build) tlstap places its one uprobe, and how the probe reads
/// the arguments there. OpenSSL 1.1.1/3.x hand every derived TLS secret to the internal key-log path:
///
///     ssl_log_secret(ssl, label, secret, secret_len)
///       └─ nss_keylog_int(label, ssl, ssl->s3.client_random, 32, secret, secret_len)
///
/// `nss_keylog_int` receives everything in registers, so hooking it needs no struct layout at all;
/// where the compiler inlined it into `ssl_log_secret`, the client random is read from the SSL object
/// at a per-release offset (`OpenSSLLayout`). Both run a few times per handshake, never per record.
public struct KeyLogHook: Hashable, Sendable {
    public enum Kind: Hashable, Sendable {
        /// Entry of `nss_keylog_int`: all arguments in registers.
        case nssKeylog
        /// Entry of `ssl_log_secret` with `nss_keylog_int` inlined; the client random is at
        /// `clientRandomOffset` in the SSL object (3.x), or in the struct its pointer at
        /// `s3PointerOffset` points to (1.1.1's `ssl->s3->client_random`).
        case logSecret(clientRandomOffset: UInt64, s3PointerOffset: UInt64? = nil)
    }

    public var kind: Kind
    /// The uprobe location: an offset in the file (what `bpf_program__attach_uprobe_opts` takes).
    public var fileOffset: UInt64
    /// How it was found, for `status` and the journal ("symbol nss_keylog_int", …).
    public var foundBy: String
}

/// Why a target gets no hook: shown in `status` and logged as a warning with the file and version.
public struct HookRefusal: Error, Hashable, Sendable {
    public var reason: String
}

enum KeyLogHookFinder {
    /// Locates the hook in `image`; `version` is needed only where `nss_keylog_int` was inlined.
    static func find(in image: ELFImage, version: OpenSSLVersion?) -> Result<KeyLogHook, HookRefusal> {
        if let address = image.functionAddress(named: "nss_keylog_int"), let offset = image.fileOffset(ofAddress: address) {
            return .success(KeyLogHook(kind: .nssKeylog, fileOffset: UInt64(offset), foundBy: "symbol nss_keylog_int"))
        }
        #if arch(x86_64)
        let logSecret: (address: UInt64, foundBy: String)
        if let address = image.functionAddress(named: "ssl_log_secret") {
            logSecret = (address, "symbol ssl_log_secret")
        } else if let address = logSecretByLabelReference(in: image) {
            logSecret = (address, "code passing \"CLIENT_RANDOM\" to ssl_log_secret")
        } else {
            return .failure(HookRefusal(reason: "no OpenSSL key-log function: no nss_keylog_int/ssl_log_secret symbol and no code passing the CLIENT_RANDOM label"))
        }
        guard let entry = image.fileOffset(ofAddress: logSecret.address) else {
            return .failure(HookRefusal(reason: "ssl_log_secret at 0x\(String(logSecret.address, radix: 16)) lies outside the file"))
        }
        if let callee = tailCallToNSSKeylog(in: image, functionAt: entry), let offset = image.fileOffset(ofAddress: callee) {
            return .success(KeyLogHook(kind: .nssKeylog, fileOffset: UInt64(offset), foundBy: logSecret.foundBy + " → nss_keylog_int"))
        }
        guard let version else {
            return .failure(HookRefusal(reason: "nss_keylog_int is inlined and the OpenSSL version is unknown, so the SSL layout is unknown"))
        }
        guard let layout = OpenSSLLayout.row(for: version) else {
            return .failure(HookRefusal(reason: "nss_keylog_int is inlined and \(version.text) has no SSL layout row (OpenSSLLayout)"))
        }
        // The layout row must be what this very code reads: displacements equal to its offsets.
        for offset in [layout.clientRandomOffset] + (layout.s3PointerOffset.map { [$0] } ?? [])
        where !usesDisplacement(offset, in: image, functionAt: entry) {
            return .failure(HookRefusal(reason: "ssl_log_secret of \(version.text) does not use offset 0x\(String(offset, radix: 16)) to reach s3.client_random as its layout row says"))
        }
        let kind = KeyLogHook.Kind.logSecret(clientRandomOffset: layout.clientRandomOffset, s3PointerOffset: layout.s3PointerOffset)
        return .success(KeyLogHook(kind: kind, fileOffset: UInt64(entry),
                                   foundBy: logSecret.foundBy + " (nss_keylog_int inlined)"))
        #else
        return .failure(HookRefusal(reason: "stripped OpenSSL without an nss_keylog_int symbol: code analysis is x86-64 only"))
        #endif
    }

    /// In a stripped libssl the TLS 1.2 master-secret path does `lea CLIENT_RANDOM(%rip),%rsi` and then
    /// calls `ssl_log_secret`. Finds those references and returns the one call target they agree on.
    static func logSecretByLabelReference(in image: ELFImage) -> UInt64? {
        let label = Array("CLIENT_RANDOM".utf8) + [0]
        var labelAddresses: Set<UInt64> = []
        for section in image.sections where section.occupiesFile && !section.isExecutable && section.address != 0 {
            for offset in image.occurrences(of: label, in: section) where offset == 0 || image.bytes[offset - 1] == 0 {
                if let address = image.address(ofFileOffset: offset) { labelAddresses.insert(address) }
            }
        }
        guard !labelAddresses.isEmpty else { return nil }
        var targets: [UInt64: Int] = [:]
        let bytes = image.bytes
        for text in image.sections where text.isExecutable && text.occupiesFile {
            let start = Int(text.offset), end = min(bytes.count, Int(text.offset + text.size)) - 7
            var index = start
            while index < end {
                defer { index += 1 }
                // lea disp32(%rip),%rsi = 48 8d 35 <disp32>
                guard bytes[index] == 0x48, bytes[index + 1] == 0x8d, bytes[index + 2] == 0x35 else { continue }
                let next = text.address + UInt64(index + 7 - start)
                let displacement = Int64(Int32(bitPattern: bytes.loadUnaligned(fromByteOffset: index + 3, as: UInt32.self)))
                guard labelAddresses.contains(UInt64(bitPattern: Int64(bitPattern: next) &+ displacement)) else { continue }
                if let callee = firstCall(in: image, section: text, from: index + 7, within: 32) { targets[callee, default: 0] += 1 }
            }
        }
        return targets.max { $0.value < $1.value }?.key
    }

    /// Target of the first `call rel32` (e8) within `within` bytes, if it lands in executable code.
    private static func firstCall(in image: ELFImage, section: ELFImage.Section, from offset: Int, within: Int) -> UInt64? {
        let bytes = image.bytes
        for at in offset..<min(offset + within, Int(section.offset + section.size) - 5) where bytes[at] == 0xe8 {
            let next = section.address + UInt64(at + 5 - Int(section.offset))
            let target = UInt64(bitPattern: Int64(bitPattern: next) &+ Int64(Int32(bitPattern: bytes.loadUnaligned(fromByteOffset: at + 1, as: UInt32.self))))
            if image.section(containingAddress: target)?.isExecutable == true { return target }
        }
        return nil
    }

    /// A non-inlined `ssl_log_secret` is a short forwarder: it loads SSL3_RANDOM_SIZE (`mov $0x20,%ecx`)
    /// as the fourth argument and jumps or calls to `nss_keylog_int`. Returns that callee's address.
    static func tailCallToNSSKeylog(in image: ELFImage, functionAt entry: Int) -> UInt64? {
        let bytes = image.bytes
        guard let section = image.sections.first(where: { $0.isExecutable && entry >= Int($0.offset) && entry < Int($0.offset + $0.size) })
        else { return nil }
        let limit = min(entry + 48, Int(section.offset + section.size) - 5)
        var sawRandomSize = false
        var at = entry
        while at < limit {
            if bytes[at] == 0xb9, bytes.loadUnaligned(fromByteOffset: at + 1, as: UInt32.self) == 32 {
                sawRandomSize = true
                at += 5
                continue
            }
            if sawRandomSize, bytes[at] == 0xe9 || bytes[at] == 0xe8 {
                let next = section.address + UInt64(at + 5 - Int(section.offset))
                let target = UInt64(bitPattern: Int64(bitPattern: next) &+ Int64(Int32(bitPattern: bytes.loadUnaligned(fromByteOffset: at + 1, as: UInt32.self))))
                if image.section(containingAddress: target)?.isExecutable == true { return target }
            }
            at += 1
        }
        return nil
    }

    /// True if the first 400 bytes of the function hold `value` as a 32-bit displacement.
    static func usesDisplacement(_ value: UInt64, in image: ELFImage, functionAt entry: Int) -> Bool {
        let bytes = image.bytes
        let wanted = UInt32(truncatingIfNeeded: value)
        let end = min(entry + 400, bytes.count - 4)
        return (entry..<end).contains { bytes.loadUnaligned(fromByteOffset: $0, as: UInt32.self) == wanted }
    }
}
