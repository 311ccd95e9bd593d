import Attach
import Discover
import Foundation
import TapCore
import Testing

extension TLSKeysTests {
    /// Real clients against a real `openssl s_server`, with the secrets each client writes to its own
    /// SSLKEYLOGFILE as ground truth: every ground-truth line must come out of the uprobes, byte for byte.
    @Suite
    struct SystemLibSSLTests {
        let directory: URL
        let cert: (cert: String, key: String)

        init() throws {
            directory = try Fixture.temporaryDirectory()
            cert = try Fixture.makeCertificate(in: directory)
        }

        @Test func scannerFindsTheSystemLibSSLAndNode() throws {
            let tap = try KeyTap()
            let targets = tap.scanner.initialScan()
            let libssl = try #require(targets.first { $0.displayPath.hasSuffix("libssl.so.3") && $0.kind == .shared })
            #expect(libssl.version?.major == 3)
            #expect(libssl.hook?.kind == .nssKeylog, "Debian's stripped libssl forwards ssl_log_secret to nss_keylog_int")
            let node = try #require(targets.first { $0.displayPath == "/usr/bin/node" })
            #expect(node.kind == .static)
            #expect(node.version?.series == "3.0")
            #expect(node.hook?.kind == .logSecret(clientRandomOffset: 0x160))
            // A second scan finds nothing new: every file is examined once.
            #expect(tap.scanner.initialScan().isEmpty)
        }

        /// The daemon's entry point: attach at start, then the status view shows each target's state.
        @Test func attachmentsReportStateForStatus() throws {
            let attachments = try TLSKeyAttachments(logger: Fixture.logger)
            defer { attachments.close() }
            let initial = attachments.attachInitial()
            #expect(!initial.isEmpty)
            let system = try #require(attachments.targets.first { $0.displayPath.hasSuffix("libssl.so.3") })
            #expect(system.state == .attached)
            #expect(attachments.loader.attachedCount == initial.filter { $0.state == .attached }.count)
            // A process that maps nothing new: nothing to do.
            #expect(attachments.attachNew(inProcesses: [getpid()]).isEmpty)
        }

        @Test(arguments: [
            ["--tlsv1.3", "--tls13-ciphers", "TLS_AES_128_GCM_SHA256"],
            ["--tlsv1.3", "--tls13-ciphers", "TLS_AES_256_GCM_SHA384"],
            ["--tlsv1.3", "--tls13-ciphers", "TLS_CHACHA20_POLY1305_SHA256"],
            ["--tlsv1.2", "--tls-max", "1.2", "--ciphers", "ECDHE-RSA-AES128-GCM-SHA256"],
            ["--tlsv1.2", "--tls-max", "1.2", "--ciphers", "ECDHE-RSA-CHACHA20-POLY1305"],
        ])
        func curlSecretsMatchItsKeyLog(options: [String]) throws {
            let tap = try KeyTap()
            let attached = tap.attach(tap.scanner.initialScan())
            #expect(attached.contains { $0.displayPath.hasSuffix("libssl.so.3") && $0.state == .attached })
            let server = try Fixture.startServer(port: Fixture.serverPortTLS13, cert: cert)
            defer { Fixture.stop(server) }

            let keyLog = directory.appending(path: "curl-\(UUID().uuidString.prefix(6)).keys").path
            try Fixture.run(["curl", "-sk", "-o", "/dev/null"] + options + ["https://127.0.0.1:\(Fixture.serverPortTLS13)/"],
                            environment: ["SSLKEYLOGFILE": keyLog])
            try tap.expectSecrets(ofKeyLog: keyLog, count: options.contains("--tlsv1.3") ? 5 : 1,
                                  client: "curl \(options.joined(separator: " "))")
            #expect(tap.undecodable == 0)
        }

        /// Two requests in one curl: the second connection resumes the first session (TLS 1.2 session
        /// id, TLS 1.3 ticket), and its secrets come out too.
        @Test(arguments: [(["--tlsv1.2", "--tls-max", "1.2"], 2), (["--tlsv1.3"], 10)])
        func resumedSessionsAreCovered(options: [String], lines: Int) throws {
            let tap = try KeyTap()
            tap.attach(tap.scanner.initialScan())
            let server = try Fixture.startServer(port: Fixture.serverPortTLS13, cert: cert)
            defer { Fixture.stop(server) }
            let keyLog = directory.appending(path: "resume-\(UUID().uuidString.prefix(6)).keys").path
            let url = "https://127.0.0.1:\(Fixture.serverPortTLS13)/"
            try Fixture.run(["curl", "-sk", "-o", "/dev/null", "-o", "/dev/null"] + options + [url, url], environment: ["SSLKEYLOGFILE": keyLog])
            try tap.expectSecrets(ofKeyLog: keyLog, count: lines, client: "a resumed session")
        }

        @Test func pythonSSLSecretsMatchItsKeyLog() throws {
            let tap = try KeyTap()
            tap.attach(tap.scanner.initialScan())
            let server = try Fixture.startServer(port: Fixture.serverPortTLS13, cert: cert)
            defer { Fixture.stop(server) }
            let keyLog = directory.appending(path: "python.keys").path
            let script = """
                import socket, ssl, sys
                for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                    ctx.keylog_filename = sys.argv[1]
                    ctx.minimum_version = ctx.maximum_version = version
                    with socket.create_connection(("127.0.0.1", \(Fixture.serverPortTLS13))) as raw:
                        with ctx.wrap_socket(raw) as tls:
                            tls.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
                            while tls.recv(65536): pass
                """
            try Fixture.run(["python3", "-c", script, keyLog])
            try tap.expectSecrets(ofKeyLog: keyLog, count: 6, client: "python ssl")
        }

        /// A burst of new connections (both ends on the uprobed libssl, ~10 secrets per connection):
        /// none lost, none dropped by the ring.
        @Test func burstOfNewConnectionsLosesNoSecret() throws {
            let tap = try KeyTap()
            tap.attach(tap.scanner.initialScan())
            let server = try Fixture.startServer(port: Fixture.serverPortTLS13, cert: cert)
            defer { Fixture.stop(server) }
            let keyLog = directory.appending(path: "burst.keys").path
            let script = """
                import socket, ssl, sys
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                ctx.keylog_filename = sys.argv[1]
                for _ in range(400):
                    with socket.create_connection(("127.0.0.1", \(Fixture.serverPortTLS13))) as raw:
                        with ctx.wrap_socket(raw) as tls:
                            tls.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
                            while tls.recv(65536): pass
                """
            try Fixture.run(["python3", "-c", script, keyLog], timeout: 120)
            let truth = try Fixture.keyLog(at: keyLog)
            #expect(truth.count == 400 * 5)
            let seen = tap.waitFor(truth, timeout: 5)
            #expect(truth.filter { !seen.contains($0) }.count == 0)
            #expect(tap.loader.droppedEvents == 0)
        }

        @Test func nodeHTTPSSecretsMatchItsKeyLog() throws {
            let tap = try KeyTap()
            let attached = tap.attach(tap.scanner.initialScan())
            #expect(attached.contains { $0.displayPath == "/usr/bin/node" && $0.state == .attached })
            let server = try Fixture.startServer(port: Fixture.serverPortTLS13, cert: cert)
            defer { Fixture.stop(server) }
            let keyLog = directory.appending(path: "node.keys").path
            let script = """
                const https = require('https');
                const get = (v) => new Promise((ok, fail) => https.get({host: '127.0.0.1', port: \(Fixture.serverPortTLS13), path: '/',
                    rejectUnauthorized: false, minVersion: v, maxVersion: v, agent: false}, r => { r.resume(); r.on('end', ok); }).on('error', fail));
                get('TLSv1.3').then(() => get('TLSv1.2')).then(() => process.exit(0), e => { console.error(e); process.exit(1); });
                """
            try Fixture.run(["node", "--tls-keylog=\(keyLog)", "-e", script])
            try tap.expectSecrets(ofKeyLog: keyLog, count: 6, client: "node https")
        }
    }
}
