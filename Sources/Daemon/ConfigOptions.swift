import ArgumentParser

/// The flags of `tlstap run`, one per config key and spelled the same. The run command embeds them with
/// `@OptionGroup var options: RunOptions` and calls `resolve()` at start and on every SIGHUP (the flags
/// stay, the file is re-read).
public struct RunOptions: ParsableArguments, Sendable {
    @Option(help: ArgumentHelp("Config file; a missing default file means built-in defaults, a missing given one is an error.",
                               valueName: "file"))
    public var config: String?

    @Option(help: help(.segmentDir, "Directory the segments are written to", "dir"))
    public var segmentDir: String?

    @Option(help: help(.rotateEvery, "Segment length; segments start at wall-clock multiples of it", "duration"))
    public var rotateEvery: String?

    @Option(help: help(.flushEvery, "How often the open segment is flushed as complete zstd frames (what survives a crash)", "duration"))
    public var flushEvery: String?

    @Option(help: help(.reorderWindow, "How long packets are held back so TLS keys can be written before them", "duration"))
    public var reorderWindow: String?

    @Option(help: help(.snaplen, "Bytes kept of each packet, 64 to 262144", "bytes"))
    public var snaplen: String?

    @Option(help: help(.maxTotalSize, "Delete the oldest segments while all of them together are larger", "size"))
    public var maxTotalSize: String?

    @Option(help: help(.maxAge, "Delete segments that ended longer ago", "duration"))
    public var maxAge: String?

    @Option(help: help(.maxSessionIdle, "Stop repeating a TLS session's keys at the head of new segments after it is idle this long", "duration"))
    public var maxSessionIdle: String?

    @Option(help: help(.interfaces, "Comma-separated globs of interfaces to capture, matched against 'eth0' and 'netns:<inode>/eth0'", "glob,…"))
    public var interfaces: String?

    @Option(help: help(.excludeInterfaces, "Comma-separated globs of interfaces never captured (beats --interfaces)", "glob,…"))
    public var excludeInterfaces: String?

    @Option(help: help(.ringBufferSize, "BPF ring buffer for packets, in all: one ring per CPU takes an equal share (at least 4M each), a power of two", "size"))
    public var ringBufferSize: String?

    @Option(help: help(.duplicates, "Copies of a packet on several interfaces (veth ends, bridge ports): drop (keep the first) or keep", "drop|keep"))
    public var duplicates: String?

    @Option(help: help(.zstdLevel, "zstd compression level of segments, 1 (fast) to 19 (small)", "level"))
    public var zstdLevel: String?

    @Option(help: help(.logLevel, "Least severe messages logged: trace, debug, info, notice, warning, error, critical", "level"))
    public var logLevel: String?

    public init() {}

    /// The file `resolve()` reads.
    public var configFile: String { config ?? TapConfig.defaultFilePath }

    /// Defaults, then the config file, then the flags given; then the segment directory is made ready.
    public func resolve() throws(ConfigError) -> TapConfig {
        let result = try resolveWithoutDirectory()
        try result.prepareSegmentDirectory()
        return result
    }

    /// `resolve()` without touching the filesystem beyond reading the config file.
    public func resolveWithoutDirectory() throws(ConfigError) -> TapConfig {
        var result = TapConfig()
        try result.merge(file: configFile, required: config != nil)
        for (key, text) in givenFlags {
            do {
                try key.apply(Self.value(of: text), to: &result)
            } catch {
                throw ConfigError("--\(key.rawValue): \(error.text)")
            }
        }
        return result
    }

    private var givenFlags: [(ConfigKey, String)] {
        let all: [(ConfigKey, String?)] = [
            (.segmentDir, segmentDir), (.rotateEvery, rotateEvery), (.flushEvery, flushEvery),
            (.reorderWindow, reorderWindow), (.snaplen, snaplen), (.maxTotalSize, maxTotalSize), (.maxAge, maxAge),
            (.maxSessionIdle, maxSessionIdle), (.interfaces, interfaces), (.excludeInterfaces, excludeInterfaces),
            (.ringBufferSize, ringBufferSize), (.duplicates, duplicates), (.zstdLevel, zstdLevel), (.logLevel, logLevel),
        ]
        return all.compactMap { key, text in text.map { (key, $0) } }
    }

    /// A flag's text read as the file would read it: digits are an integer, anything else a string.
    private static func value(of text: String) -> ConfigValue {
        if !text.isEmpty, text.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == "-") }), let number = Int(text) {
            return .integer(number)
        }
        return .string(text)
    }

    private static func help(_ key: ConfigKey, _ text: String, _ valueName: String) -> ArgumentHelp {
        let value: String
        switch key {
        case .interfaces: value = TapConfig.defaults.interfaces.joined(separator: ",")
        case .excludeInterfaces: value = TapConfig.defaults.excludeInterfaces.isEmpty ? "none" : TapConfig.defaults.excludeInterfaces.joined(separator: ",")
        default: value = key.render(.defaults).replacing("\"", with: "")
        }
        return ArgumentHelp("\(text) (default: \(value)).", valueName: valueName)
    }
}
