import Daemon
import Glibc
import Logging
import Testing

/// A config file in a fresh temp directory; removed by the caller with `cleanup()`.
struct TempConfig {
    let directory: String
    var path: String { directory + "/tlstap.toml" }

    init(_ text: String) {
        var template = Array("/tmp/tlstap-config-XXXXXX".utf8CString)
        directory = String(cString: mkdtemp(&template)!)
        let file = fopen(directory + "/tlstap.toml", "w")!
        fputs(text, file)
        fclose(file)
    }

    func cleanup() { _ = system("rm -rf '\(directory)'") }
}

func options(_ arguments: [String]) throws -> RunOptions { try RunOptions.parse(arguments) }

/// The message of the ConfigError that loading `text` as a file raises.
func fileError(_ text: String) throws -> String {
    let file = TempConfig(text)
    defer { file.cleanup() }
    var config = TapConfig()
    do {
        try config.merge(file: file.path, required: true)
    } catch {
        return error.message.replacing(file.path, with: "FILE")
    }
    Issue.record("no error for \(text)")
    return ""
}

@Suite struct ConfigDefaultsTests {
    @Test func defaultsAreTheContractValues() {
        let config = TapConfig.defaults
        #expect(config.segmentDirectory == "/var/lib/tlstap/segments")
        #expect(config.rotateEvery == .seconds(300))
        #expect(config.flushEvery == .seconds(1))
        #expect(config.reorderWindow == .milliseconds(500))
        #expect(config.snaplen == 262_144)
        #expect(config.maxTotalSizeBytes == 10 * 1024 * 1024 * 1024)
        #expect(config.maxAge == .seconds(7 * 24 * 3600))
        #expect(config.maxSessionIdle == .seconds(600))
        #expect(config.interfaces == ["*"])
        #expect(config.excludeInterfaces == [])
        #expect(config.logLevel == .info)
    }

    @Test func missingDefaultFileMeansDefaults() throws {
        var config = TapConfig()
        try config.merge(file: "/nonexistent/tlstap.toml", required: false)
        #expect(config == .defaults)
    }

    @Test func missingGivenFileIsAnError() throws {
        let error = #expect(throws: ConfigError.self) {
            try options(["--config", "/nonexistent/x.toml"]).resolveWithoutDirectory()
        }
        #expect(error?.message == "/nonexistent/x.toml: cannot read config: No such file or directory")
    }

    @Test func emptyFileMeansDefaults() throws {
        let file = TempConfig("# nothing set\n")
        defer { file.cleanup() }
        #expect(try options(["--config", file.path]).resolveWithoutDirectory() == .defaults)
    }

    /// The shipped example documents every key with its default: uncommenting all of it must yield
    /// exactly the built-in defaults, and no key may be missing from it.
    @Test func shippedExampleListsEveryKeyWithItsDefault() throws {
        let repo = String(#filePath.split(separator: "/Tests/")[0])
        let path = repo + "/etc/tlstap/tlstap.toml"
        let text = try #require(try? String(contentsOfFileForTest: path))
        let settings = text.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("# "), line.contains(" = ") else { return nil }
            return String(line.dropFirst(2))
        }
        let uncommented = settings.joined(separator: "\n")
        for key in ConfigKey.allCases {
            #expect(settings.contains { $0.hasPrefix("\(key.rawValue) = ") }, "\(key.rawValue) missing from \(path)")
            #expect(settings.contains("\(key.rawValue) = \(key.render(.defaults))"), "\(key.rawValue) default differs in \(path)")
        }
        var config = TapConfig()
        config.snaplen = 64  // so the comparison cannot pass by never reading the file
        config.logLevel = .error
        try config.merge(toml: uncommented, file: path)
        #expect(config == .defaults)
        // As shipped (all commented out), the file also loads to the defaults.
        var shipped = TapConfig()
        try shipped.merge(file: path, required: true)
        #expect(shipped == .defaults)
    }
}

@Suite struct ConfigMergeTests {
    @Test func fileOverridesDefaultsAndFlagsOverrideFile() throws {
        let file = TempConfig("""
            rotate-every = "10s"
            snaplen = 1500
            max-total-size = "512M"
            interfaces = ["eth*", "netns:*/veth*"]
            log-level = "debug"
            """)
        defer { file.cleanup() }
        let fromFile = try options(["--config", file.path]).resolveWithoutDirectory()
        #expect(fromFile.rotateEvery == .seconds(10))
        #expect(fromFile.snaplen == 1500)
        #expect(fromFile.maxTotalSizeBytes == 512 << 20)
        #expect(fromFile.interfaces == ["eth*", "netns:*/veth*"])
        #expect(fromFile.logLevel == .debug)
        #expect(fromFile.flushEvery == .seconds(1))  // untouched key keeps its default

        let withFlags = try options(["--config", file.path, "--rotate-every", "1m", "--interfaces", "lo, eth0",
                                     "--zstd-level", "9"]).resolveWithoutDirectory()
        #expect(withFlags.rotateEvery == .seconds(60))
        #expect(withFlags.interfaces == ["lo", "eth0"])
        #expect(withFlags.zstdLevel == 9)
        #expect(withFlags.snaplen == 1500)  // file still beats default where no flag is given
    }

    @Test func everyKeyIsAFlagOfTheSameName() throws {
        var arguments: [String] = []
        for key in ConfigKey.allCases {
            arguments += ["--\(key.rawValue)", key.render(.defaults).replacing("\"", with: "")
                .replacing("[", with: "").replacing("]", with: "")]
        }
        // exclude-interfaces defaults to the empty list, which a flag cannot spell.
        let index = try #require(arguments.firstIndex(of: "--exclude-interfaces"))
        arguments[index + 1] = "docker0"
        var expected = TapConfig.defaults
        expected.excludeInterfaces = ["docker0"]
        #expect(try options(["--config", "/dev/null"] + arguments).resolveWithoutDirectory() == expected)
    }

    @Test func helpNamesEveryFlagWithItsDefault() throws {
        let help = RunOptions.helpMessage(columns: 1000)
        let options = try #require(help.split(separator: "OPTIONS:").last)
        // One entry per option: from its "  --name" to the next option's.
        let entries = options.split(separator: "\n  -").map { "-" + $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        for key in ConfigKey.allCases {
            let entry = entries.first { $0.hasPrefix("--\(key.rawValue) ") }
            #expect(entry?.contains("(default: ") == true, "--\(key.rawValue) help lacks its default: \(entry ?? "missing")")
        }
        #expect(help.contains("(default: 5m)"))
        #expect(help.contains("(default: *)"))
    }

    @Test func interfaceGlobsMatchPlainAndQualifiedNames() {
        var config = TapConfig()
        #expect(config.captures(interface: "eth0", netnsInode: 4026531840))
        config.interfaces = ["eth*"]
        config.excludeInterfaces = ["netns:4026532301/*"]
        #expect(config.captures(interface: "eth0", netnsInode: 4026531840))
        #expect(!config.captures(interface: "eth0", netnsInode: 4026532301))
        #expect(!config.captures(interface: "lo", netnsInode: 4026531840))
        config.interfaces = ["netns:4026532301/veth*"]
        config.excludeInterfaces = []
        #expect(config.captures(interface: "veth1", netnsInode: 4026532301))
        #expect(!config.captures(interface: "veth1", netnsInode: 4026531840))
    }

    @Test func onlyLoadTimeKeysNeedARestart() {
        #expect(ConfigKey.allCases.filter { !$0.appliesOnReload } == [.segmentDir, .snaplen, .ringBufferSize])
    }

    @Test func changesListOnlyWhatDiffers() {
        var new = TapConfig()
        new.rotateEvery = .seconds(10)
        let changes = new.changes(from: .defaults)
        #expect(changes.count == 1)
        #expect(changes.first?.key == .rotateEvery)
        #expect(changes.first?.old == "\"5m\"")
        #expect(changes.first?.new == "\"10s\"")
    }
}

@Suite struct ConfigErrorTests {
    @Test func badDurationNamesFileLineAndKey() throws {
        let message = try fileError("""
            # comment
            snaplen = 1500

            rotate-every = "5x"
            """)
        #expect(message == "FILE:4: rotate-every: '5x' is not a duration: use a whole number with a unit, e.g. 500ms, 5s, 10m, 2h, 7d")
    }

    @Test func unknownKeySuggestsTheSpelling() throws {
        #expect(try fileError("snaplen = 100\nrotate_every = \"5m\"\n") == "FILE:2: unknown key 'rotate_every' (did you mean 'rotate-every'?)")
        let message = try fileError("colour = \"red\"\n")
        #expect(message.hasPrefix("FILE:1: unknown key 'colour' (known keys: segment-dir, rotate-every,"))
    }

    @Test func unknownTableIsNamed() throws {
        #expect(try fileError("snaplen = 100\n[capture]\nsnaplen = 5\n").hasPrefix("FILE:2: unknown key 'capture'"))
    }

    @Test func syntaxErrorCarriesLineAndColumn() throws {
        let message = try fileError("snaplen = 100\nrotate-every = \"5m\n")
        #expect(message.hasPrefix("FILE:2:"))
        #expect(message.contains("not valid TOML"))
    }

    @Test(arguments: [
        ("snaplen = \"big\"", "FILE:1: snaplen: 'big' is not a size: use a whole number of bytes or one with a suffix, e.g. 64K, 512M, 10G"),
        ("snaplen = 32", "FILE:1: snaplen: 32 is below the minimum 64"),
        ("snaplen = 262145", "FILE:1: snaplen: 262145 is above the maximum 256K"),
        ("snaplen = true", "FILE:1: snaplen: expected a size such as \"512M\" or a number of bytes, got a boolean"),
        ("rotate-every = 300", "FILE:1: rotate-every: expected a duration string such as \"5m\", got an integer"),
        ("rotate-every = \"500ms\"", "FILE:1: rotate-every: '500ms' is below the minimum 1s"),
        ("flush-every = \"0s\"", "FILE:1: flush-every: '0s' is not a duration: use a whole number with a unit, e.g. 500ms, 5s, 10m, 2h, 7d"),
        ("max-total-size = \"10Q\"", "FILE:1: max-total-size: '10Q' is not a size: use a whole number of bytes or one with a suffix, e.g. 64K, 512M, 10G"),
        ("segment-dir = \"relative/dir\"", "FILE:1: segment-dir: 'relative/dir' is not an absolute path"),
        ("segment-dir = 5", "FILE:1: segment-dir: expected a string, got an integer"),
        ("interfaces = []", "FILE:1: interfaces: an empty list captures nothing; use [\"*\"] for all"),
        ("interfaces = [1, 2]", "FILE:1: interfaces: expected an array of interface globs such as [\"eth*\"], got an array of non-strings"),
        ("ring-buffer-size = \"48M\"", "FILE:1: ring-buffer-size: 48M is not a power of two (e.g. 16M, 64M, 256M)"),
        ("zstd-level = 25", "FILE:1: zstd-level: 25 is outside 1…19"),
        ("zstd-level = \"3\"", "FILE:1: zstd-level: expected an integer, got a string"),
        ("log-level = \"loud\"", "FILE:1: log-level: 'loud' is not a log level (trace, debug, info, notice, warning, error, critical)"),
    ])
    func badValueMessages(line: String, expected: String) throws {
        #expect(try fileError(line + "\n") == expected)
    }

    @Test func badFlagNamesTheFlag() throws {
        let error = #expect(throws: ConfigError.self) {
            try options(["--config", "/dev/null", "--snaplen", "10"]).resolveWithoutDirectory()
        }
        #expect(error?.message == "--snaplen: 10 is below the minimum 64")
        let duration = #expect(throws: ConfigError.self) {
            try options(["--config", "/dev/null", "--max-age", "soon"]).resolveWithoutDirectory()
        }
        #expect(duration?.message.hasPrefix("--max-age: 'soon' is not a duration") == true)
    }
}

@Suite struct SegmentDirectoryTests {
    @Test func createsMissingDirectoryPrivately() throws {
        let scratch = TempConfig("")
        defer { scratch.cleanup() }
        let config = try options(["--config", "/dev/null", "--segment-dir", scratch.directory + "/a/b/segments"]).resolve()
        var info = stat()
        #expect(stat(config.segmentDirectory, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o700)
    }

    @Test func aFileIsNotADirectory() throws {
        let scratch = TempConfig("")
        defer { scratch.cleanup() }
        let error = #expect(throws: ConfigError.self) {
            try options(["--config", "/dev/null", "--segment-dir", scratch.path]).resolve()
        }
        #expect(error?.message == "segment directory \(scratch.path): not a directory: Not a directory")
    }

    @Test func anUncreatableDirectoryIsNamed() throws {
        let error = #expect(throws: ConfigError.self) {
            try options(["--config", "/dev/null", "--segment-dir", "/proc/tlstap-segments"]).resolve()
        }
        #expect(error?.message.hasPrefix("segment directory /proc/tlstap-segments: create: ") == true)
    }

    @Test func aReadOnlyDirectoryIsNotWritable() throws {
        // /sys/kernel is a directory on a read-only-for-files filesystem even for root.
        let error = #expect(throws: ConfigError.self) {
            try options(["--config", "/dev/null", "--segment-dir", "/sys/kernel"]).resolve()
        }
        #expect(error?.message.hasPrefix("segment directory /sys/kernel: not writable: ") == true)
    }
}

extension String {
    init(contentsOfFileForTest path: String) throws {
        guard let file = fopen(path, "r") else { throw ConfigError("cannot open \(path)") }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        while true {
            let c = fgetc(file)
            if c == EOF { break }
            bytes.append(UInt8(c))
        }
        self = String(decoding: bytes, as: UTF8.self)
    }
}
