import Attach
@testable import Discover
import Foundation
import TapCore
import Testing

extension TLSKeysTests {
    /// A libssl that is not the system one: the OpenSSL 3.5 bundled in the psycopg2-binary wheel
    /// (`libssl-<hash>.so.3`, stripped, nss_keylog_int inlined into ssl_log_secret). A process loads it
    /// after the start-up scan; `rescan(pids:)` must find it, and its secrets must equal the ones the
    /// library itself hands to a keylog callback.
    @Suite
    struct BundledLibSSLTests {
        /// psycopg2-binary 2.9.13 bundles OpenSSL 3.5.8; 2.9.5 bundles OpenSSL 1.1.1r.
        static func wheelLibraries(version: String = "2.9.13") throws -> URL {
            let wheel = "psycopg2-binary==\(version)"
            let cache = URL(fileURLWithPath: "/var/tmp/tlstap-tests/psycopg2-binary-\(version)")
            let libs = cache.appending(path: "unpacked/psycopg2_binary.libs")
            if FileManager.default.fileExists(atPath: libs.path) { return libs }
            try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
            try Fixture.run(["python3", "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                             "--python-version", "3.11", "--platform", "manylinux2014_x86_64", wheel, "-d", cache.path], timeout: 120)
            let file = try #require(try FileManager.default.contentsOfDirectory(atPath: cache.path).first { $0.hasSuffix(".whl") })
            try Fixture.run(["python3", "-m", "zipfile", "-e", cache.appending(path: file).path, cache.appending(path: "unpacked").path])
            return libs
        }

        static func bundledLibSSL(version: String = "2.9.13") throws -> String {
            let libs = try wheelLibraries(version: version)
            let name = try #require(try FileManager.default.contentsOfDirectory(atPath: libs.path).first { $0.hasPrefix("libssl-") })
            return libs.appending(path: name).path
        }

        /// A TLS client written against the bundled libssl with ctypes; it loads the library, says
        /// "loaded", waits for a line on stdin, then makes a TLS 1.3 and a TLS 1.2 connection, writing what
        /// the library's keylog callback received to argv[3].
        static let client = """
            import ctypes, glob, os, socket, sys
            # Older wheels' libssl has no $ORIGIN runpath: load its libcrypto first, found by soname.
            for crypto in glob.glob(os.path.join(os.path.dirname(sys.argv[1]), "libcrypto-*")):
                ctypes.CDLL(crypto, mode=ctypes.RTLD_GLOBAL)
            lib = ctypes.CDLL(sys.argv[1])
            P = ctypes.c_void_p
            for name, res, args in [("TLS_client_method", P, []), ("SSL_CTX_new", P, [P]), ("SSL_new", P, [P]),
                                    ("SSL_CTX_ctrl", ctypes.c_long, [P, ctypes.c_int, ctypes.c_long, P]),
                                    ("SSL_set_fd", ctypes.c_int, [P, ctypes.c_int]), ("SSL_connect", ctypes.c_int, [P]),
                                    ("SSL_write", ctypes.c_int, [P, ctypes.c_char_p, ctypes.c_int]),
                                    ("SSL_read", ctypes.c_int, [P, ctypes.c_char_p, ctypes.c_int]),
                                    ("SSL_free", None, [P]), ("SSL_CTX_free", None, [P])]:
                getattr(lib, name).restype, getattr(lib, name).argtypes = res, args
            KEYLOG = ctypes.CFUNCTYPE(None, P, ctypes.c_char_p)
            lines = []
            callback = KEYLOG(lambda ssl, line: lines.append(line.decode()))
            lib.SSL_CTX_set_keylog_callback.argtypes = [P, KEYLOG]
            print("loaded", flush=True)
            sys.stdin.readline()
            SET_MIN, SET_MAX = 123, 124  # SSL_CTRL_SET_{MIN,MAX}_PROTO_VERSION
            for version in (0x304, 0x303):
                ctx = lib.SSL_CTX_new(lib.TLS_client_method())
                lib.SSL_CTX_set_keylog_callback(ctx, callback)
                lib.SSL_CTX_ctrl(ctx, SET_MIN, version, None)
                lib.SSL_CTX_ctrl(ctx, SET_MAX, version, None)
                ssl = lib.SSL_new(ctx)
                sock = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
                lib.SSL_set_fd(ssl, sock.fileno())
                assert lib.SSL_connect(ssl) == 1, "handshake failed"
                request = b"GET / HTTP/1.0\\r\\n\\r\\n"
                lib.SSL_write(ssl, request, len(request))
                buffer = ctypes.create_string_buffer(65536)
                while lib.SSL_read(ssl, buffer, 65536) > 0: pass
                lib.SSL_free(ssl)
                lib.SSL_CTX_free(ctx)
                sock.close()
            open(sys.argv[3], "w").write("\\n".join(lines) + "\\n")
            """

        @Test(arguments: [
            ("2.9.13", "3.5", KeyLogHook.Kind.logSecret(clientRandomOffset: 0x188)),
            ("2.9.5", "1.1", KeyLogHook.Kind.logSecret(clientRandomOffset: 0xb8, s3PointerOffset: 0xa8)),
        ])
        func wheelLibSSLLoadedAfterStartIsFoundAndItsSecretsMatch(wheel: String, series: String, hook: KeyLogHook.Kind) throws {
            let libssl = try Self.bundledLibSSL(version: wheel)
            let directory = try Fixture.temporaryDirectory()
            let cert = try Fixture.makeCertificate(in: directory)
            let tap = try KeyTap()
            tap.attach(tap.scanner.initialScan())
            let server = try Fixture.startServer(port: Fixture.serverPortTLS12, cert: cert)
            defer { Fixture.stop(server) }

            let keyLog = directory.appending(path: "wheel.keys").path
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", "-c", Self.client, libssl, "\(Fixture.serverPortTLS12)", keyLog]
            let input = Pipe(), output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            try process.run()
            defer { if process.isRunning { Fixture.stop(process) } }
            let said = output.fileHandleForReading.availableData
            #expect(String(decoding: said, as: UTF8.self).hasPrefix("loaded"))

            // What the daemon does on an exec/mmap event: look at that process only.
            var found: [LibSSLTarget] = []
            let elapsed = ContinuousClock().measure { found = tap.scanner.rescan(pids: [process.processIdentifier]) }
            print("rescan of one process with a new libssl took \(elapsed)")
            let target = try #require(found.first { $0.displayPath == libssl })
            #expect(target.kind == .shared)
            #expect(target.version?.series == series)
            #expect(target.hook?.kind == hook)
            #expect(tap.attach([target]).first?.state == .attached)

            input.fileHandleForWriting.write(Data("go\n".utf8))
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
            try tap.expectSecrets(ofKeyLog: keyLog, count: 6, client: "the wheel's libssl")
            #expect(tap.undecodable == 0)
        }

        /// A copy of the library that exists only inside another mount namespace (as in a container
        /// image): found through /proc/PID/root, attached there, secrets match.
        @Test func libSSLVisibleOnlyInAnotherMountNamespaceIsFoundThroughProcRoot() throws {
            let libs = try Self.wheelLibraries()
            let directory = try Fixture.temporaryDirectory()
            let cert = try Fixture.makeCertificate(in: directory)
            let mountPoint = directory.appending(path: "container-lib").path
            try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
            let name = try #require(try FileManager.default.contentsOfDirectory(atPath: libs.path).first { $0.hasPrefix("libssl-") })
            let tap = try KeyTap()
            tap.attach(tap.scanner.initialScan())
            let server = try Fixture.startServer(port: 18804, cert: cert)
            defer { Fixture.stop(server) }

            let keyLog = directory.appending(path: "container.keys").path
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
            // unshare execs without forking, so the python client keeps this process's pid.
            process.arguments = ["--mount", "--propagation", "private", "bash", "-c",
                                 "mount -t tmpfs tl-container \(mountPoint) && cp \(libs.path)/* \(mountPoint)/ && exec python3 -c \"$0\" \"$@\"",
                                 Self.client, "\(mountPoint)/\(name)", "18804", keyLog]
            let input = Pipe(), output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            try process.run()
            defer { if process.isRunning { Fixture.stop(process) } }
            #expect(String(decoding: output.fileHandleForReading.availableData, as: UTF8.self).hasPrefix("loaded"))
            #expect(!FileManager.default.fileExists(atPath: "\(mountPoint)/\(name)"), "the copy is private to the namespace")

            let found = tap.scanner.rescan(pids: [process.processIdentifier])
            let target = try #require(found.first { $0.displayPath == "\(mountPoint)/\(name)" })
            #expect(target.path == "/proc/\(process.processIdentifier)/root\(mountPoint)/\(name)")
            #expect(target.version?.series == "3.5")
            #expect(tap.attach([target]).first?.state == .attached)

            input.fileHandleForWriting.write(Data("go\n".utf8))
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
            try tap.expectSecrets(ofKeyLog: keyLog, count: 6, client: "the namespaced libssl")
        }

        /// Where nss_keylog_int is inlined, a version without a layout row is refused, naming the version.
        @Test func inlinedHookWithUnknownLayoutIsRefusedNamingTheVersion() throws {
            let image = try ELFImage(path: try Self.bundledLibSSL())
            let unknown = try #require(OpenSSLVersion(text: "OpenSSL 3.4.0 22 Oct 2024"))
            guard case .failure(let refusal) = KeyLogHookFinder.find(in: image, version: unknown) else {
                Issue.record("a build whose layout is unknown was accepted")
                return
            }
            #expect(refusal.reason.contains("OpenSSL 3.4.0"))
            // A wrong layout row is caught by the code check too: 3.0's offset is not what this 3.5 code reads.
            let misfiled = try #require(OpenSSLVersion(text: "OpenSSL 3.0.99 1 Jan 2030"))
            guard case .failure = KeyLogHookFinder.find(in: image, version: misfiled) else {
                Issue.record("a layout row that does not match the code was accepted")
                return
            }
        }
    }
}
