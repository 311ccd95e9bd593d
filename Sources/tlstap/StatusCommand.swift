import ArgumentParser
import Daemon
import FoundationEssentials

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show what the running daemon attaches to and its counters.",
        discussion: """
            Reads the status the daemon publishes once a second in its runtime directory \
            (/run/tlstap/status.json, or $RUNTIME_DIRECTORY/status.json): interfaces per network \
            namespace with their counters, libssl targets with their OpenSSL version and state, \
            packets, bytes, drops, TLS sessions and keys, and the current segment. Never key material.
            """)

    @Flag(help: "Print the status as JSON.")
    var json = false

    func run() async throws {
        let path = DaemonStatus.defaultPath(environment: ProcessEnvironment.value("RUNTIME_DIRECTORY"))
        let status: DaemonStatus
        do {
            status = try DaemonStatus.read(from: path)
        } catch {
            printError("status: no running daemon found (\(path) unreadable: \(error))")
            throw ExitCode(3)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(status), as: UTF8.self))
            return
        }
        print("tlstap \(status.version), pid \(status.pid), running since \(status.startedAt) (updated \(status.updatedAt))")
        print("segments: \(status.segmentDirectory), current \(status.currentSegment ?? "none")")
        print("copies seen on a second interface and not recorded again: \(status.duplicates)")
        print("packets \(status.packets), bytes \(status.bytes), drops \(status.drops), TLS sessions \(status.sessions), keys \(status.keys) (\(status.lateKeys) too late for their packets)")
        for netns in status.namespaces {
            print("netns \(netns.inode) (\(netns.origin))")
            for interface in netns.interfaces {
                print("  \(interface.name): received \(interface.received), ring drops \(interface.droppedByRing), "
                      + "late/write drops \(interface.droppedByTapper)")
            }
        }
        if status.libraries.isEmpty { print("libssl targets: none") }
        for library in status.libraries {
            print("libssl \(library.path) [\(library.kind), \(library.version)]: \(library.state)")
        }
    }
}
