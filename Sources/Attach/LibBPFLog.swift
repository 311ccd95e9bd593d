import CLibBPF
import Glibc
import Logging

/// Routes libbpf's own messages into the logger instead of raw stderr. libbpf reports expected
/// conditions as kernel "errors" ("Parent Qdisc doesn't exists" when probing for a clsact hook), so
/// its warnings go to debug, where they help a developer and do not alarm an operator.
public enum LibBPFLog {
    nonisolated(unsafe) private static var logger: Logger?

    /// Call once at start, before loading anything.
    public static func install(_ logger: Logger) {
        Self.logger = logger
        _ = libbpf_set_print { level, format, arguments in
            guard let format, let arguments, let logger = LibBPFLog.logger else { return 0 }
            var buffer = [CChar](repeating: 0, count: 1024)
            let written = vsnprintf(&buffer, buffer.count, format, arguments)
            guard written > 0 else { return 0 }
            var text = String(cString: buffer)
            while text.last?.isNewline == true { text.removeLast() }
            logger.debug("libbpf: \(text)", metadata: ["libbpf_level": "\(level.rawValue)"])
            return written
        }
    }
}
