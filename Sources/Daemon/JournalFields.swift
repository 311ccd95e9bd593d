import Logging

/// How one log record becomes journald fields (systemd.journal-fields(7)): the message, its syslog
/// priority, `SYSLOG_IDENTIFIER=tlstap`, the code location, and each metadata key as `TLSTAP_<KEY>`,
/// so `journalctl -u tlstap TLSTAP_SEGMENT=…` finds every record about one segment.
public enum JournalFields {
    public static let identifier = "tlstap"

    /// The `FIELD=value` strings of one record, in a stable order (fixed fields, then metadata by name).
    public static func encode(level: Logger.Level, message: String, metadata: Logger.Metadata,
                              file: String, function: String, line: UInt) -> [String] {
        var fields = [
            "MESSAGE=\(message)",
            "PRIORITY=\(priority(level))",
            "SYSLOG_IDENTIFIER=\(identifier)",
            "CODE_FILE=\(file)",
            "CODE_LINE=\(line)",
            "CODE_FUNC=\(function)",
        ]
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            guard let name = fieldName(metadataKey: key) else { continue }
            fields.append("\(name)=\(value)")
        }
        return fields
    }

    /// syslog(3) priorities: swift-log's trace has no own level and shares debug's.
    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// `interface` → `TLSTAP_INTERFACE`, `tls-version` → `TLSTAP_TLS_VERSION`. Journal field names allow
    /// only A–Z, 0–9 and `_`, at most 64 characters; a key with nothing usable is dropped (nil).
    public static func fieldName(metadataKey key: String) -> String? {
        let body = String(key.uppercased().map { ($0.isASCII && ($0.isLetter || $0.isNumber)) ? $0 : "_" })
        guard body.contains(where: { $0 != "_" }) else { return nil }
        return String(("TLSTAP_" + body).prefix(64))
    }
}
