/// A config that cannot be used. The message alone tells an operator what to fix: the file and line
/// (`/etc/tlstap/tlstap.toml:7: rotate-every: '5x' is not a duration: …`), the flag
/// (`--snaplen: 10 is below the minimum 64`) or the path (`segment directory /x: not a directory`).
public struct ConfigError: Error, Equatable, CustomStringConvertible, Sendable {
    public var message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }

    /// An error about one key, located in `origin` ("FILE:LINE" or "--flag").
    static func value(_ origin: String, _ key: ConfigKey, _ problem: String) -> ConfigError {
        ConfigError("\(origin): \(key.rawValue): \(problem)")
    }
}
