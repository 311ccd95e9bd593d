import Attach
import CLibBPF
import Discover
import Foundation
import Logging
import RingBuffer
import TapCore

import Testing

/// Every suite here runs real servers on fixed ports and counts process-wide descriptors: one at a time.
@Suite(.serialized) struct TLSKeysTests {}

/// Shared scaffolding for the TLS key tests: real programs, real uprobes, a private ring consumer.
enum Fixture {
    static let logger = Logger(label: "tlstap.tests.tlskeys")

    /// TCP ports of this test target (tlstap TLS work has 18800–18999).
    static let serverPortTLS13 = 18801
    static let serverPortTLS12 = 18802

    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appending(path: "tl-tlskeys-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Runs a command to completion; throws with its output if it fails. Spawned with posix_spawn and
    /// reaped with waitpid: Foundation's Process can miss the exit of a command whose child daemonizes
    /// (pg_ctl start). Output goes to a file, not a pipe, which such a daemon could hold open forever.
    @discardableResult
    static func run(_ arguments: [String], environment: [String: String] = [:], timeout: TimeInterval = 20,
                    includeStandardError: Bool = true) throws -> String {
        let capture = FileManager.default.temporaryDirectory.appending(path: "tl-run-\(UUID().uuidString).out").path
        defer { unlink(capture) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, capture, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        if includeStandardError {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        } else {
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        let env = ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { "\($0)=\($1)" }
        var cArguments = arguments.map { strdup($0) } + [nil]
        var cEnvironment = env.map { strdup($0) } + [nil]
        defer { (cArguments + cEnvironment).forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, arguments[0], &actions, nil, &cArguments, &cEnvironment)
        guard spawned == 0 else { throw FixtureError("spawn \(arguments[0]): errno \(spawned)") }
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            if Date() > deadline { kill(pid, SIGKILL) }
            usleep(5_000)
        }
        let text = (try? String(contentsOfFile: capture, encoding: .utf8)) ?? ""
        // WIFEXITED && WEXITSTATUS == 0, spelled out: the macros are not imported.
        guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
            throw FixtureError("\(arguments.joined(separator: " ")) failed (wait status \(status)): \(text)")
        }
        return text
    }

    /// A self-signed RSA certificate (RSA so TLS 1.2 ECDHE-RSA suites work too).
    static func makeCertificate(in directory: URL) throws -> (cert: String, key: String) {
        let cert = directory.appending(path: "cert.pem").path, key = directory.appending(path: "key.pem").path
        try run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                 "-days", "1", "-keyout", key, "-out", cert])
        return (cert, key)
    }

    /// `openssl s_server -www` on 127.0.0.1:port; the caller terminates it.
    static func startServer(port: Int, cert: (cert: String, key: String), extra: [String] = []) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = ["s_server", "-accept", "127.0.0.1:\(port)", "-cert", cert.cert, "-key", cert.key,
                             "-www", "-quiet"] + extra
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Ready when the port accepts.
        for _ in 0..<200 {
            if (try? run(["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/\(port)"], timeout: 2)) != nil { return process }
            usleep(20_000)
        }
        stop(process)
        throw FixtureError("openssl s_server did not listen on \(port)")
    }

    /// SIGKILL: children of the test runner inherit a mask that blocks SIGTERM.
    static func stop(_ process: Process) {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// tcpdump on lo for one TCP port, writing `pcap`; -U writes each packet at once, so `stop` (SIGKILL)
    /// loses nothing. Waits until it is listening.
    static func startTcpdump(port: Int, writingTo pcap: String) throws -> Process {
        let tcpdump = Process()
        tcpdump.executableURL = URL(fileURLWithPath: "/usr/bin/tcpdump")
        tcpdump.arguments = ["-i", "lo", "-U", "-s", "0", "-w", pcap, "tcp", "port", "\(port)"]
        tcpdump.standardError = FileHandle.nullDevice
        try tcpdump.run()
        usleep(700_000)
        return tcpdump
    }

    static func keyLog(at path: String) throws -> [KeyLogLine] {
        KeyLogLine.parse(try String(contentsOfFile: path, encoding: .utf8))
    }
}

struct FixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Scanner + loader + the project's ring buffer consumer, as the daemon wires them.
final class KeyTap {
    let scanner = LibSSLScanner(logger: Fixture.logger)
    let loader: TLSKeysLoader
    private let ring = RingBufferConsumer()
    private(set) var events: [TLSKeyEvent] = []
    private(set) var undecodable = 0

    init() throws {
        loader = try TLSKeysLoader(logger: Fixture.logger)
        try ring.add(mapFD: loader.eventsMapFD, name: "tls key events") { [unowned self] raw in
            if let event = TLSKeyEvent.decode(raw) {
                events.append(event)
            } else {
                undecodable += 1
            }
        }
    }

    deinit {
        ring.close()
        loader.close()
    }

    /// Attaches every hookable target among `targets`; returns them with their final state.
    @discardableResult
    func attach(_ targets: [LibSSLTarget]) -> [LibSSLTarget] {
        targets.map { target in
            let result = target.hook == nil ? target : loader.attach(target)
            scanner.update(result)
            return result
        }
    }

    /// Consumes what is in the ring for about `milliseconds`.
    func drain(milliseconds: Int32) {
        _ = try? ring.poll(timeoutMs: milliseconds)
    }

    /// Polls until every line of `expected` has arrived or `timeout` passes; returns the lines seen.
    func waitFor(_ expected: [KeyLogLine], timeout: TimeInterval = 3) -> Set<KeyLogLine> {
        let deadline = Date().addingTimeInterval(timeout)
        repeat {
            drain(milliseconds: 50)
            let seen = Set(events.map(\.line))
            if expected.allSatisfy(seen.contains) { return seen }
        } while Date() < deadline
        return Set(events.map(\.line))
    }

    /// The client's own key log at `path` has `count` lines, and every one of them arrived from the
    /// uprobes; `client` names it in failures.
    func expectSecrets(ofKeyLog path: String, count: Int, client: String,
                       sourceLocation: SourceLocation = #_sourceLocation) throws {
        let truth = try Fixture.keyLog(at: path)
        #expect(truth.count == count, "\(client): its key log has \(truth.count) lines", sourceLocation: sourceLocation)
        let seen = waitFor(truth)
        for line in truth {
            #expect(seen.contains(line), "missing \(line.label) of \(client)", sourceLocation: sourceLocation)
        }
    }
}
