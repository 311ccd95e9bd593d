import Glibc

/// Writes a line to stderr (messages for people; stdout carries data such as PcapNG or key logs).
func printError(_ message: String) {
    fputs(message + "\n", stderr)
}

enum ProcessEnvironment {
    static func value(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}
