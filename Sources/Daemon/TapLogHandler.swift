import CSystemd
import Glibc
import Logging

/// tlstap's swift-log handler: structured records to journald under systemd, readable lines on stderr
/// elsewhere (`TapLogging.bootstrap` picks the sink). Metadata keys become `TLSTAP_<KEY>` journal fields.
public struct TapLogHandler: LogHandler {
    public enum Sink: Sendable {
        /// sd_journal_sendv(3) (the variadic sd_journal_send cannot be called from Swift); fields: `JournalFields`.
        case journal
        /// One `write(2)` per record, so lines from several threads never interleave:
        /// `2026-11-25T10:00:00Z info tlstap: attached tc interface=eth0 netns=4026531840`.
        case stderr
    }

    public let sink: Sink
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    /// Follows `TapLogging.level` (so a reload can change it) unless set on this logger.
    public var logLevel: Logger.Level {
        get { levelOverride ?? TapLogging.level }
        set { levelOverride = newValue }
    }
    private var levelOverride: Logger.Level?

    public init(sink: Sink, metadataProvider: Logger.MetadataProvider? = nil) {
        self.sink = sink
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        if let error = event.error { merged["error"] = "\(error)" }
        switch sink {
        case .journal:
            Self.send(JournalFields.encode(level: event.level, message: event.message.description, metadata: merged,
                                           file: event.file, function: event.function, line: event.line))
        case .stderr:
            Self.writeLine(Self.format(time: time(nil), level: event.level, message: event.message.description,
                                       metadata: merged))
        }
    }

    private static func writeLine(_ line: String) {
        var text = line
        text.append("\n")
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(STDERR_FILENO, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 && errno == EINTR { continue }
                if written <= 0 { return }
                offset += written
            }
        }
    }

    /// One iovec per field, all pointing into a single buffer that lives for the call.
    static func send(_ fields: [String]) {
        var buffer: [UInt8] = []
        var ranges: [Range<Int>] = []
        for field in fields {
            let start = buffer.count
            buffer.append(contentsOf: field.utf8)
            ranges.append(start..<buffer.count)
        }
        buffer.withUnsafeMutableBytes { bytes in
            let vectors = ranges.map { iovec(iov_base: bytes.baseAddress! + $0.lowerBound, iov_len: $0.count) }
            // Nothing sensible to do if journald is gone; the record is lost either way.
            _ = vectors.withUnsafeBufferPointer { sd_journal_sendv($0.baseAddress, Int32($0.count)) }
        }
    }

    /// One line without its newline; metadata sorted by key, values with spaces or quotes quoted.
    public static func format(time seconds: time_t, level: Logger.Level, message: String, metadata: Logger.Metadata) -> String {
        var line = "\(utcTimestamp(seconds)) \(level) \(JournalFields.identifier): \(message)"
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            line += " \(key)=\(quotedIfNeeded(value.description))"
        }
        return line
    }

    static func utcTimestamp(_ seconds: time_t) -> String {
        var clock = seconds
        var parts = tm()
        gmtime_r(&clock, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func quotedIfNeeded(_ text: String) -> String {
        guard text.isEmpty || text.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline }) else { return text }
        var escaped = "\""
        for character in text {
            switch character {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped + "\""
    }
}
