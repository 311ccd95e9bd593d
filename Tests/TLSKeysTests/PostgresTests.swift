import Attach
import Discover
import Foundation
import TapCore
import Testing

extension TLSKeysTests {
    /// Server and client both outside the HTTP world: PostgreSQL 15 with ssl=on and psql, each on the
    /// system libssl. psql writes no key log, so tshark is the judge: with only the uprobe secrets it
    /// must show the query text inside the TLS session.
    @Suite
    struct PostgresTests {
        static let port = 18805
        static let binaries = "/usr/lib/postgresql/15/bin"

        @Test func tsharkSeesThePsqlQueryWithOnlyTheUprobeSecrets() throws {
            let directory = try Fixture.temporaryDirectory()
            let cert = try Fixture.makeCertificate(in: directory)
            let data = directory.appending(path: "pgdata").path
            try Fixture.run(["chown", "-R", "postgres", directory.path])
            try Fixture.run(["runuser", "-u", "postgres", "--", "\(Self.binaries)/initdb", "-A", "trust", "-U", "postgres", "-D", data], timeout: 60)
            let options = "-p \(Self.port) -k \(directory.path) -c listen_addresses=127.0.0.1 -c ssl=on "
                + "-c ssl_cert_file=\(cert.cert) -c ssl_key_file=\(cert.key)"
            try Fixture.run(["runuser", "-u", "postgres", "--", "\(Self.binaries)/pg_ctl", "-D", data, "-o", options,
                             "-l", "\(directory.path)/postgres.log", "-w", "start"], timeout: 60)
            defer { _ = try? Fixture.run(["runuser", "-u", "postgres", "--", "\(Self.binaries)/pg_ctl", "-D", data, "-m", "immediate", "stop"]) }

            let tap = try KeyTap()
            let attached = tap.attach(tap.scanner.initialScan())
            #expect(attached.contains { $0.displayPath.hasSuffix("libssl.so.3") && $0.state == .attached })

            let pcap = directory.appending(path: "pg.pcap").path
            let tcpdump = try Fixture.startTcpdump(port: Self.port, writingTo: pcap)
            let answer = try Fixture.run(["psql", "host=127.0.0.1 port=\(Self.port) user=postgres dbname=postgres sslmode=require",
                                          "-Atc", "select 4242 + 1 as tlstap_marker"])
            #expect(answer.contains("4243"))
            usleep(300_000)
            Fixture.stop(tcpdump)

            let produced = tap.waitFor([], timeout: 1)
            #expect(produced.contains { $0.label == "CLIENT_HANDSHAKE_TRAFFIC_SECRET" })
            let keyFile = directory.appending(path: "uprobe.keys").path
            try (produced.map(\.text).joined(separator: "\n") + "\n").write(toFile: keyFile, atomically: true, encoding: .utf8)
            let decode = ["-d", "tcp.port==\(Self.port),pgsql", "-Y", "pgsql.query", "-T", "fields", "-e", "pgsql.query"]
            let queries = try Fixture.run(["tshark", "-r", pcap, "-o", "tls.keylog_file:\(keyFile)"] + decode, includeStandardError: false)
            #expect(queries.contains("select 4242 + 1 as tlstap_marker"), "decrypted queries: \(queries)")
            let clear = try Fixture.run(["tshark", "-r", pcap] + decode, includeStandardError: false)
            #expect(!clear.contains("tlstap_marker"), "the query must not be visible without the keys")
        }
    }
}
