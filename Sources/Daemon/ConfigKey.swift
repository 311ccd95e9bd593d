import Logging
import TapCore

/// A value as it arrives from TOML or a flag, before it is checked against its key.
public enum ConfigValue: Equatable, Sendable {
    case string(String)
    case integer(Int)
    case strings([String])
    /// Any other TOML type, by its TOML name ("boolean", "table", …), so the error can say what it got.
    case other(String)

    var typeName: String {
        switch self {
        case .string: "a string"
        case .integer: "an integer"
        case .strings: "an array of strings"
        case .other(let name): (name.first.map { "aeiou".contains($0) } == true ? "an " : "a ") + name
        }
    }
}

/// One config key = one `tlstap run` flag, spelled the same (kebab-case). The single table of what
/// each key accepts, so the file, the flags and the shipped example cannot disagree.
public enum ConfigKey: String, CaseIterable, Sendable {
    case segmentDir = "segment-dir"
    case rotateEvery = "rotate-every"
    case flushEvery = "flush-every"
    case reorderWindow = "reorder-window"
    case snaplen
    case maxTotalSize = "max-total-size"
    case maxAge = "max-age"
    case maxSessionIdle = "max-session-idle"
    case interfaces
    case excludeInterfaces = "exclude-interfaces"
    case ringBufferSize = "ring-buffer-size"
    case duplicates
    case zstdLevel = "zstd-level"
    case logLevel = "log-level"

    static let snaplenRange: ClosedRange<UInt64> = 64...262_144
    static let zstdLevelRange: ClosedRange<Int> = 1...19
    static let ringBufferSizeRange: ClosedRange<UInt64> = (64 << 10)...(1 << 30)

    /// Whether a reload (SIGHUP) can apply a new value. The others are fixed when the BPF programs are
    /// loaded or the segment store is opened; a reload that changes them logs that a restart is needed.
    public var appliesOnReload: Bool {
        switch self {
        case .segmentDir, .snaplen, .ringBufferSize: false
        default: true
        }
    }

    /// Checks `value` for this key and stores it; the thrown text is the problem without its location.
    func apply(_ value: ConfigValue, to config: inout TapConfig) throws(ConfigProblem) {
        switch self {
        case .segmentDir:
            let path = try value.text(for: self)
            guard path.hasPrefix("/") else { throw ConfigProblem("'\(path)' is not an absolute path") }
            config.segmentDirectory = path
        case .rotateEvery:
            config.rotateEvery = try value.duration(for: self, atLeast: .seconds(1), "1s")
        case .flushEvery:
            config.flushEvery = try value.duration(for: self, atLeast: .milliseconds(10), "10ms")
        case .reorderWindow:
            config.reorderWindow = try value.duration(for: self, atLeast: .milliseconds(1), "1ms")
        case .snaplen:
            config.snaplen = UInt32(try value.size(for: self, in: Self.snaplenRange))
        case .maxTotalSize:
            config.maxTotalSizeBytes = try value.size(for: self, in: (1 << 20)...UInt64.max)
        case .maxAge:
            config.maxAge = try value.duration(for: self, atLeast: .seconds(60), "1m")
        case .maxSessionIdle:
            config.maxSessionIdle = try value.duration(for: self, atLeast: .seconds(1), "1s")
        case .interfaces:
            config.interfaces = try value.globs(for: self)
            guard !config.interfaces.isEmpty else { throw ConfigProblem("an empty list captures nothing; use [\"*\"] for all") }
        case .excludeInterfaces:
            config.excludeInterfaces = try value.globs(for: self)
        case .ringBufferSize:
            let size = try value.size(for: self, in: Self.ringBufferSizeRange)
            guard size & (size - 1) == 0 else { throw ConfigProblem("\(Units.formatSize(size)) is not a power of two (e.g. 16M, 64M, 256M)") }
            config.ringBufferSizeBytes = size
        case .duplicates:
            switch try value.text(for: self) {
            case "drop": config.keepDuplicates = false
            case "keep": config.keepDuplicates = true
            case let other: throw ConfigProblem("'\(other)' is neither \"drop\" nor \"keep\"")
            }
        case .zstdLevel:
            guard case .integer(let level) = value else { throw ConfigProblem("expected an integer, got \(value.typeName)") }
            guard Self.zstdLevelRange.contains(level) else {
                throw ConfigProblem("\(level) is outside \(Self.zstdLevelRange.lowerBound)…\(Self.zstdLevelRange.upperBound)")
            }
            config.zstdLevel = Int32(level)
        case .logLevel:
            let name = try value.text(for: self)
            guard let level = Logger.Level(rawValue: name.lowercased()) else {
                let names = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
                throw ConfigProblem("'\(name)' is not a log level (\(names))")
            }
            config.logLevel = level
        }
    }

    /// The key's value in `config`, spelled as the config file spells it (TOML syntax).
    public func render(_ config: TapConfig) -> String {
        func quoted(_ text: String) -> String { "\"\(text)\"" }
        func list(_ items: [String]) -> String { "[" + items.map(quoted).joined(separator: ", ") + "]" }
        switch self {
        case .segmentDir: return quoted(config.segmentDirectory)
        case .rotateEvery: return quoted(Units.formatDuration(config.rotateEvery.nanoseconds))
        case .flushEvery: return quoted(Units.formatDuration(config.flushEvery.nanoseconds))
        case .reorderWindow: return quoted(Units.formatDuration(config.reorderWindow.nanoseconds))
        case .snaplen: return String(config.snaplen)
        case .maxTotalSize: return quoted(Units.formatSize(config.maxTotalSizeBytes))
        case .maxAge: return quoted(Units.formatDuration(config.maxAge.nanoseconds))
        case .maxSessionIdle: return quoted(Units.formatDuration(config.maxSessionIdle.nanoseconds))
        case .interfaces: return list(config.interfaces)
        case .excludeInterfaces: return list(config.excludeInterfaces)
        case .ringBufferSize: return quoted(Units.formatSize(config.ringBufferSizeBytes))
        case .duplicates: return quoted(config.keepDuplicates ? "keep" : "drop")
        case .zstdLevel: return String(config.zstdLevel)
        case .logLevel: return quoted(config.logLevel.rawValue)
        }
    }
}

/// What is wrong with one value, before the caller adds where it came from.
struct ConfigProblem: Error {
    var text: String
    init(_ text: String) { self.text = text }
}

extension ConfigValue {
    func text(for key: ConfigKey) throws(ConfigProblem) -> String {
        guard case .string(let text) = self else { throw ConfigProblem("expected a string, got \(typeName)") }
        return text
    }

    func duration(for key: ConfigKey, atLeast minimum: Duration, _ minimumText: String) throws(ConfigProblem) -> Duration {
        guard case .string(let text) = self else {
            throw ConfigProblem("expected a duration string such as \"5m\", got \(typeName)")
        }
        let nanoseconds: UInt64
        do { nanoseconds = try Units.parseDuration(text) } catch { throw ConfigProblem(error.description) }
        guard nanoseconds <= UInt64(Int64.max) else { throw ConfigProblem("'\(text)' is too long") }
        let duration = Duration.nanoseconds(Int64(nanoseconds))
        guard duration >= minimum else { throw ConfigProblem("'\(text)' is below the minimum \(minimumText)") }
        return duration
    }

    /// Sizes come as a string with a suffix (`"10G"`) or a plain integer of bytes.
    func size(for key: ConfigKey, in range: ClosedRange<UInt64>) throws(ConfigProblem) -> UInt64 {
        let bytes: UInt64
        switch self {
        case .integer(let value):
            guard value > 0 else { throw ConfigProblem("\(value) is not a positive size") }
            bytes = UInt64(value)
        case .string(let text):
            do { bytes = try Units.parseSize(text) } catch { throw ConfigProblem(error.description) }
        default:
            throw ConfigProblem("expected a size such as \"512M\" or a number of bytes, got \(typeName)")
        }
        guard bytes >= range.lowerBound else { throw ConfigProblem("\(Units.formatSize(bytes)) is below the minimum \(Units.formatSize(range.lowerBound))") }
        guard bytes <= range.upperBound else { throw ConfigProblem("\(Units.formatSize(bytes)) is above the maximum \(Units.formatSize(range.upperBound))") }
        return bytes
    }

    /// Interface globs come as a TOML array or, as on the command line, one comma-separated string.
    func globs(for key: ConfigKey) throws(ConfigProblem) -> [String] {
        let items: [String]
        switch self {
        case .strings(let list): items = list
        case .string(let text): items = text.split(separator: ",").map { $0.trimmingWhitespaceForConfig() }
        default: throw ConfigProblem("expected an array of interface globs such as [\"eth*\"], got \(typeName)")
        }
        guard !items.contains(where: \.isEmpty) else { throw ConfigProblem("an empty interface glob matches nothing") }
        return items
    }
}

extension StringProtocol {
    func trimmingWhitespaceForConfig() -> String {
        var text = Substring(self)
        while text.first?.isWhitespace == true { text.removeFirst() }
        while text.last?.isWhitespace == true { text.removeLast() }
        return String(text)
    }
}
