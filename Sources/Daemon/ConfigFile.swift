import Glibc
import TOMLKit
import TapCore

/// Reading `/etc/tlstap/tlstap.toml`: flat kebab-case keys, the same words as the flags.
extension TapConfig {
    /// Applies the keys of the file at `path` over `self`. A missing file is an error only when the
    /// operator named it (`--config`); the default path may be absent and means "defaults".
    public mutating func merge(file path: String, required: Bool) throws(ConfigError) {
        let text: String
        do {
            text = try readWholeFile(path)
        } catch {
            if error.errno == ENOENT && !required { return }
            throw ConfigError("\(path): cannot read config: \(String(cString: strerror(error.errno)))")
        }
        try merge(toml: text, file: path)
    }

    /// Applies TOML `text` over `self`; `file` names it in errors.
    public mutating func merge(toml text: String, file: String) throws(ConfigError) {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            let at = error.source.begin
            throw ConfigError("\(file):\(at.line):\(at.column): not valid TOML: \(error.description)")
        } catch {
            throw ConfigError("\(file): not valid TOML: \(error)")
        }
        let lines = SourceLines(text)
        // Keys in file order, so the first problem reported is the first in the file.
        let entries = table.map { ($0.0, $0.1) }.sorted { lines.line(of: $0.0) < lines.line(of: $1.0) }
        for (name, value) in entries {
            let origin = "\(file):\(lines.line(of: name))"
            guard let key = ConfigKey(rawValue: name) else {
                throw ConfigError("\(origin): unknown key '\(name)'\(Self.suggestion(for: name))")
            }
            do {
                try key.apply(ConfigValue(value), to: &self)
            } catch {
                throw ConfigError.value(origin, key, error.text)
            }
        }
    }

    /// A hint for the likely typo: `rotate_every` → `rotate-every`; otherwise the list of keys.
    static func suggestion(for name: String) -> String {
        let normalized = name.lowercased().replacingUnderscores()
        if let key = ConfigKey(rawValue: normalized) { return " (did you mean '\(key.rawValue)'?)" }
        return " (known keys: \(ConfigKey.allCases.map(\.rawValue).joined(separator: ", ")))"
    }
}

extension ConfigValue {
    init(_ value: TOMLValueConvertible) {
        switch value.type {
        case .string: self = .string(value.string ?? "")
        case .int: self = .integer(value.int ?? 0)
        case .array:
            let items = value.array.map { Array($0) } ?? []
            let strings = items.compactMap { $0.type == .string ? $0.string : nil }
            self = strings.count == items.count ? .strings(strings) : .other("array of non-strings")
        case .bool: self = .other("boolean")
        default: self = .other(value.type.description)
        }
    }
}

/// Finds the line a key is on, for errors TOMLKit does not locate (unknown keys, bad values).
struct SourceLines {
    private let lines: [Substring]

    init(_ text: String) { lines = text.split(separator: "\n", omittingEmptySubsequences: false) }

    /// 1-based line of `key = …` (bare or quoted) or of a `[key]` table header; 0 if not found.
    func line(of key: String) -> Int {
        for (index, raw) in lines.enumerated() {
            let line = raw.trimmingWhitespaceForConfig()
            for form in [key, "\"\(key)\"", "'\(key)'"] where line.hasPrefix(form) {
                let rest = line.dropFirst(form.count).trimmingWhitespaceForConfig()
                if rest.hasPrefix("=") || rest.hasPrefix(".") { return index + 1 }
            }
            if line.hasPrefix("[") && line.dropFirst().trimmingWhitespaceForConfig().hasPrefix(key) { return index + 1 }
        }
        return 0
    }
}

private extension String {
    func replacingUnderscores() -> String { String(map { $0 == "_" ? "-" : $0 }) }
}

