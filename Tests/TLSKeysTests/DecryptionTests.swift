import Attach
import Discover
import Foundation
import TapCore
import Testing

extension TLSKeysTests {
    /// The judge is tshark: traffic captured with tcpdump, decrypted with nothing but the lines the
    /// uprobes produced. Every HTTP request of every connection must come out in clear text.
    @Suite
    struct DecryptionTests {
        static let port = 18803

        static func wallMinusMonotonicNs() -> Int64 {
            var wall = timespec(), monotonic = timespec()
            clock_gettime(CLOCK_REALTIME, &wall)
            clock_gettime(CLOCK_MONOTONIC, &monotonic)
            return (Int64(wall.tv_sec) - Int64(monotonic.tv_sec)) * 1_000_000_000 + Int64(wall.tv_nsec) - Int64(monotonic.tv_nsec)
        }

        @Test func tsharkDecryptsEveryRequestWithOnlyTheUprobeSecrets() throws {
            let directory = try Fixture.temporaryDirectory()
            let cert = try Fixture.makeCertificate(in: directory)
            let tap = try KeyTap()
            tap.attach(tap.scanner.initialScan())
            let server = try Fixture.startServer(port: Self.port, cert: cert)
            defer { Fixture.stop(server) }

            let pcap = directory.appending(path: "traffic.pcap").path
            let tcpdump = try Fixture.startTcpdump(port: Self.port, writingTo: pcap)

            let clients: [(name: String, command: [String])] = [
                ("curl-tls13", ["curl", "-sk", "--tlsv1.3", "-o", "/dev/null", "https://127.0.0.1:\(Self.port)/tls13-curl"]),
                ("curl-tls12", ["curl", "-sk", "--tlsv1.2", "--tls-max", "1.2", "-o", "/dev/null", "https://127.0.0.1:\(Self.port)/tls12-curl"]),
                ("node-tls13", ["node", "-e", """
                    require('https').get({host: '127.0.0.1', port: \(Self.port), path: '/tls13-node', rejectUnauthorized: false,
                        agent: false}, r => { r.resume(); r.on('end', () => process.exit(0)); })
                    """]),
            ]
            for client in clients { try Fixture.run(client.command) }
            usleep(500_000)
            Fixture.stop(tcpdump)

            let produced = tap.waitFor([], timeout: 1)
            let keyFile = directory.appending(path: "uprobe.keys").path
            try (produced.map(\.text).sorted().joined(separator: "\n") + "\n").write(toFile: keyFile, atomically: true, encoding: .utf8)
            let requests = try Fixture.run(["tshark", "-r", pcap, "-o", "tls.keylog_file:\(keyFile)", "-Y", "http.request",
                                            "-T", "fields", "-e", "http.request.uri"], includeStandardError: false)
            let uris = Set(requests.split(separator: "\n").map(String.init))
            #expect(uris == ["/tls13-curl", "/tls12-curl", "/tls13-node"], "decrypted requests: \(uris)")
            // Timing: every session's secrets exist (kernel time) within the pipeline's 500 ms reorder
            // window after its ServerHello passed on the wire, so the writer can put them first.
            let hellos = try Fixture.run(["tshark", "-r", pcap, "-Y", "tls.handshake.type == 1 || tls.handshake.type == 2",
                                          "-T", "fields", "-e", "tcp.stream", "-e", "tls.handshake.type", "-e", "frame.time_epoch",
                                          "-e", "tls.handshake.random"], includeStandardError: false)
            var clientRandomOfStream: [String: [UInt8]] = [:], serverHelloWallNs: [String: UInt64] = [:]
            for row in hellos.split(separator: "\n") {
                let fields = row.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
                guard fields.count == 4, let seconds = Double(fields[2]) else { continue }
                let type = fields[1].split(separator: ",").first
                if type == "1" { clientRandomOfStream[fields[0]] = [UInt8](hex: fields[3].split(separator: ",")[0]) }
                if type == "2", serverHelloWallNs[fields[0]] == nil { serverHelloWallNs[fields[0]] = UInt64(seconds * 1e9) }
            }
            #expect(serverHelloWallNs.count == clients.count)
            let monotonicToWall = Self.wallMinusMonotonicNs()
            for (stream, random) in clientRandomOfStream {
                let serverHello = try #require(serverHelloWallNs[stream])
                let times = tap.events.filter { $0.line.clientRandom == random }.map { Int64($0.timestampNs) + monotonicToWall }
                #expect(!times.isEmpty, "no secrets for TCP stream \(stream)")
                let latestMs = Double((times.max() ?? 0) - Int64(serverHello)) / 1e6
                print("stream \(stream): last secret \(String(format: "%.2f", latestMs)) ms after ServerHello")
                #expect(latestMs < 500, "secrets of stream \(stream) arrived \(latestMs) ms after its ServerHello")
            }
            // And without the keys, nothing: the test would notice a capture that was not encrypted.
            let clear = try Fixture.run(["tshark", "-r", pcap, "-Y", "http.request", "-T", "fields", "-e", "http.request.uri"], includeStandardError: false)
            #expect(clear.split(separator: "\n").isEmpty)
        }
    }
}
