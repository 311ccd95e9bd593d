import CLibBPF
import Discover
import Glibc
import Logging
import TapCore

/// Routes libbpf's own messages (normally printed to stderr) to a `Logger`, at debug level: every
/// libbpf call tlstap makes is checked and a failure becomes a `SystemError` naming its target, so
/// libbpf's text is detail for debugging — and much of it is expected noise, such as the kernel's
/// "Parent Qdisc doesn't exists" when tlstap looks for stale filters on an interface without clsact.
/// libbpf has one process-wide print hook, so this is process-wide too; call once at start.
public enum LibBPFLog {
    private static let lock = PThreadMutexCondition()
    nonisolated(unsafe) private static var logger: Logger?

    public static func route(to logger: Logger) {
        lock.locked { Self.logger = logger }
        libbpf_set_print { _, format, arguments in
            guard let format, let arguments, let logger = LibBPFLog.lock.locked({ LibBPFLog.logger }) else { return 0 }
            var line = [CChar](repeating: 0, count: 1024)
            let written = vsnprintf(&line, line.count, format, arguments)
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            logger.debug("libbpf: \(text.hasSuffix("\n") ? String(text.dropLast()) : text)")
            return written
        }
    }
}
