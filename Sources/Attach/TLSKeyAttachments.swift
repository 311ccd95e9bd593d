import Discover
import Logging

/// The TLS key stage as the daemon drives it: the scanner says which files carry OpenSSL, the loader
/// puts one uprobe on each, and this type keeps the scanner's record of each target's state (what
/// `tlstap status` lists) in step with what is attached. Not thread-safe: one owner calls it (the
/// daemon's discovery task); the ring buffer (`eventsMapFD`) is consumed elsewhere.
///
/// Owns: the loader (and through it the BPF object and every uprobe link); `close()` releases them.
public final class TLSKeyAttachments {
    public let scanner: LibSSLScanner
    public let loader: TLSKeysLoader

    public init(logger: Logger) throws {
        scanner = LibSSLScanner(logger: logger)
        loader = try TLSKeysLoader(logger: logger)
    }

    /// The start-up scan and attach; call before READY=1. Returns the targets found, with their state.
    @discardableResult
    public func attachInitial() -> [LibSSLTarget] {
        attach(scanner.initialScan())
    }

    /// On a process exec (or any hint that a process mapped new code): examines only these processes'
    /// mappings and attaches what is new. Files already known cost one `stat` each.
    @discardableResult
    public func attachNew(inProcesses pids: [Int32]) -> [LibSSLTarget] {
        attach(scanner.rescan(pids: pids))
    }

    /// Every target known, attached or refused with the reason (for `status`; holds no key material).
    public var targets: [LibSSLTarget] { scanner.allTargets }

    /// The ring buffer map for the shared consumer; records decode with `TLSKeyEvent.decode`.
    public var eventsMapFD: Int32 { loader.eventsMapFD }

    public func close() { loader.close() }

    private func attach(_ found: [LibSSLTarget]) -> [LibSSLTarget] {
        found.map { target in
            guard target.hook != nil else { return target }
            let result = loader.attach(target)
            scanner.update(result)
            return result
        }
    }
}
