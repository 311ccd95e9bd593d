import ArgumentParser
import Attach
import Glibc
import Logging

/// `tlstap check`: one line per check in plain words; exit 0 when everything required passed.
struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Tell whether this kernel and host can run tlstap.",
        discussion: "Loads the capture programs for real and attaches one in a scratch network namespace; needs root.")

    func run() async throws {
        LibBPFLog.route(to: Logger(label: "tlstap.check")) // libbpf's chatter stays out of the report
        var allRequiredPassed = true
        for result in CaptureCheck.runAll() {
            let mark = result.passed ? "ok  " : (result.required ? "FAIL" : "warn")
            print("\(mark)  \(result.name): \(result.detail)")
            if result.required && !result.passed { allRequiredPassed = false }
        }
        let libraries = Self.libsslFiles()
        print("info  libssl: " + (libraries.isEmpty ? "no libssl.so* in the linker cache" : libraries.joined(separator: ", ")))
        print(allRequiredPassed ? "tlstap can run on this host." : "tlstap cannot run on this host: see FAIL above.")
        if !allRequiredPassed { throw ExitCode(1) }
    }

    /// The libssl files the dynamic linker knows (`ldconfig -p`); the TLS stage replaces this with the
    /// libraries it actually hooks.
    static func libsslFiles() -> [String] {
        guard let pipe = popen("ldconfig -p 2>/dev/null", "r") else { return [] }
        defer { pclose(pipe) }
        var found: [String] = []
        var line = [CChar](repeating: 0, count: 4096)
        while fgets(&line, Int32(line.count), pipe) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            // "	libssl.so.3 (libc6,x86-64) => /lib/x86_64-linux-gnu/libssl.so.3"
            guard text.contains("libssl.so"), let path = text.split(separator: "=> ").last.map({ $0.filter { !$0.isWhitespace } }),
                  path.hasPrefix("/") else { continue }
            if !found.contains(path) { found.append(path) }
        }
        return found
    }
}
