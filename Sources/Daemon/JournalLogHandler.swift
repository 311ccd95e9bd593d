import CSystemd
import Glibc
import Logging

/// A swift-log handler that writes structured records to journald with sd_journal_sendv(3) (the
/// variadic sd_journal_send cannot be called from Swift). Fields: see `JournalFields`.
public struct JournalLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    /// Follows `TapLogging.level` (so a reload can change it) unless set on this logger.
    public var logLevel: Logger.Level {
        get { levelOverride ?? TapLogging.level }
        set { levelOverride = newValue }
    }
    private var levelOverride: Logger.Level?

    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil) {
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
        let fields = JournalFields.encode(level: event.level, message: event.message.description, metadata: merged,
                                          file: event.file, function: event.function, line: event.line)
        Self.send(fields)
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
}
