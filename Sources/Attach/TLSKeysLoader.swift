// TLS secrets from every OpenSSL user on the host, read by one entry uprobe per libssl file.
//
// Design (measured on this machine, see FIELD-NOTES "TLS libraries and hooks"):
// - Per-record hooks (SSL_read/SSL_write) cost −75% throughput under nginx+wrk; they are not used, and
//   no uretprobe is used at all. Node never calls SSL_do_handshake, and python uses SSL_read_ex, so
//   hooking the public handshake API would also miss programs.
// - Instead the probe sits on OpenSSL's internal key-log path, which 1.1.1 and 3.x call once per
//   derived secret (≈5 times per TLS 1.3 handshake, once for TLS 1.2) whether or not the application
//   set a keylog callback: `nss_keylog_int(label, ssl, client_random, 32, secret, len)` where it is a
//   function of its own (Debian's libssl3) — all arguments in registers, no struct layout at all — or
//   `ssl_log_secret(ssl, label, secret, len)` where the compiler inlined nss_keylog_int into it (node,
//   the OpenSSL 3.5.8 and 1.1.1r bundled in psycopg2-binary wheels); then the client random is read
//   from the SSL object where `OpenSSLLayout` says for that release series (passed as the attach
//   cookie; 1.1.1 goes through the ssl->s3 pointer), after checking the function's code uses those
//   offsets — or the target is refused with the file and version named.
//   `KeyLogHookFinder` (Discover) finds the place by symbol or, in stripped libraries, by the code
//   that passes the "CLIENT_RANDOM" label.
// - The secrets OpenSSL logs are exactly the NSS key-log lines Wireshark wants, produced the moment
//   the secret exists: before the ServerHello leaves (server) or right after it arrives (client), well
//   inside the pipeline's reorder window. Nothing needs deriving.
// - Measured (Tests/TLSKeysTests/OverheadTests, nginx + wrk, same run, 5 alternating pairs, shared 2-core
//   VM): keep-alive median throughput ratio 0.975–0.99, nginx CPU per request unchanged within noise;
//   one TLS 1.3 handshake per request: throughput ratio 0.90–0.92 (five hook hits per handshake).
// - Uprobes are per inode: one attachment covers every process, present and future, in any container,
//   that maps the file. They are perf-event based, so they vanish when tlstap exits, even on kill -9.
import CLibBPF
import Discover
import Glibc
import Logging
import TapCore

/// Loads bpf/tlskeys.bpf.c, attaches it to libssl targets, and exposes its ring buffer.
///
/// Owns: the `bpf_object` (its maps and programs), a copy of the object bytes libbpf reads while
/// opening, and one `bpf_link` per attached target file. `close()` destroys all of them exactly once
/// (links first); `deinit` calls it if the owner did not.
public final class TLSKeysLoader {
    private var object: OpaquePointer?
    private let nssKeylogProgram: OpaquePointer
    private let logSecretProgram: OpaquePointer
    private var links: [LibSSLTarget.FileID: OpaquePointer] = [:]
    private let logger: Logger

    /// The `events` ring buffer map, for the shared consumer (records decode with `TLSKeyEvent.decode`).
    public let eventsMapFD: Int32
    private let dropsMapFD: Int32

    public init(logger: Logger) throws(SystemError) {
        self.logger = logger
        let opened = try EmbeddedBPF.tlskeys.open()
        func fail(_ operation: String, _ code: Int32) -> SystemError {
            bpf_object__close(opened)
            return SystemError(operation, errno: code)
        }
        let loaded = bpf_object__load(opened)
        if loaded < 0 { throw fail("load BPF object tlskeys", -loaded) }
        guard let nss = bpf_object__find_program_by_name(opened, "tlskeys_nss_keylog"),
              let logSecret = bpf_object__find_program_by_name(opened, "tlskeys_log_secret") else {
            throw fail("find the uprobe programs in BPF object tlskeys", ENOENT)
        }
        let events = bpf_object__find_map_fd_by_name(opened, "events")
        let drops = bpf_object__find_map_fd_by_name(opened, "drops")
        guard events >= 0, drops >= 0 else { throw fail("find maps events/drops in BPF object tlskeys", ENOENT) }
        object = opened
        nssKeylogProgram = nss
        logSecretProgram = logSecret
        eventsMapFD = events
        dropsMapFD = drops
    }

    deinit {
        close()
    }

    /// Attaches the target's hook; returns it with state `.attached`, or `.refused` naming the error.
    /// Attaching a file already attached is a no-op.
    public func attach(_ target: LibSSLTarget) -> LibSSLTarget {
        var result = target
        guard object != nil else {
            result.state = .refused(reason: "the TLS key loader is closed")
            return result
        }
        if links[target.id] != nil {
            result.state = .attached
            return result
        }
        guard let hook = target.hook else { return result }
        var options = bpf_uprobe_opts()
        options.sz = MemoryLayout<bpf_uprobe_opts>.size
        let program: OpaquePointer
        switch hook.kind {
        case .nssKeylog:
            program = nssKeylogProgram
        case .logSecret(let clientRandomOffset, let s3PointerOffset):
            // Encoding read by tlskeys_log_secret: high half 1 + s3 pointer offset (0: s3 embedded).
            program = logSecretProgram
            options.bpf_cookie = (s3PointerOffset.map { $0 + 1 } ?? 0) << 32 | clientRandomOffset
        }
        // pid -1: every process that maps this inode, now and later.
        guard let link = bpf_program__attach_uprobe_opts(program, -1, target.path, Int(hook.fileOffset), &options) else {
            let error = SystemError("attach uprobe to \(target.displayPath) at file offset 0x\(String(hook.fileOffset, radix: 16))", errno: errno)
            logger.warning("\(error)", metadata: ["library": "\(target.displayPath)"])
            result.state = .refused(reason: error.description)
            return result
        }
        links[target.id] = link
        result.state = .attached
        logger.info("attached TLS key uprobe to \(target.displayPath) (\(target.version?.text ?? "unknown OpenSSL"), \(hook.foundBy))",
                    metadata: ["library": "\(target.displayPath)"])
        return result
    }

    /// Removes the uprobe of one target file, if attached.
    public func detach(_ id: LibSSLTarget.FileID) {
        if let link = links.removeValue(forKey: id) { bpf_link__destroy(link) }
    }

    public var attachedCount: Int { links.count }

    /// Records lost because the ring buffer was full.
    public var droppedEvents: UInt64 {
        var key: UInt32 = 0
        var value: UInt64 = 0
        guard bpf_map_lookup_elem(dropsMapFD, &key, &value) == 0 else { return 0 }
        return value
    }

    /// Detaches every uprobe, then frees the BPF object. Idempotent; the map fds are invalid afterwards.
    public func close() {
        for link in links.values { bpf_link__destroy(link) }
        links.removeAll()
        if let object { bpf_object__close(object) }
        object = nil
    }
}
