@testable import Attach
import Discover
import Foundation
import Testing

extension TLSKeysTests {
    /// bpf/tlskeys.h is the ABI between the uprobe and `TLSKeyEvent.decode`: pin every field offset and
    /// the size against the BTF that clang wrote into the embedded object.
    @Suite
    struct TLSKeyEventLayoutTests {
        @Test func decoderLayoutMatchesTheBTFOfTheEmbeddedObject() throws {
            let directory = try Fixture.temporaryDirectory()
            let object = directory.appending(path: "tlskeys.bpf.o")
            try Data(EmbeddedBPF.tlskeys.objectBytes).write(to: object)
            let dump = try Fixture.run(["bpftool", "btf", "dump", "file", object.path])
            let lines = dump.split(separator: "\n")
            let header = try #require(lines.firstIndex { $0.contains("STRUCT 'tlskeys_event'") })
            #expect(lines[header].contains("size=\(TLSKeyEvent.Layout.size) "))
            var offsets: [String: Int] = [:]
            for line in lines[(header + 1)...].prefix(while: { $0.hasPrefix("\t") }) {
                let name = line.split(separator: "'")[1]
                let bits = Int(line.split(separator: "bits_offset=")[1])!
                offsets[String(name)] = bits / 8
            }
            typealias L = TLSKeyEvent.Layout
            #expect(offsets == ["ts_ns": L.timestampNs, "pid": L.pid, "hook": L.hook, "secret_len": L.secretLength,
                                "read_errors": L.readErrors, "label": L.label, "client_random": L.clientRandom, "secret": L.secret])
        }

        /// Load, attach, close: every fd the loader opened (object, maps, programs, perf events) is closed.
        @Test func closingTheLoaderReleasesEveryDescriptor() throws {
            func openDescriptors() throws -> Int { try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count }
            let tap = try KeyTap()  // warm up lazily opened runtime fds outside the measurement
            _ = tap
            let before = try openDescriptors()
            let loader = try TLSKeysLoader(logger: Fixture.logger)
            let scanner = LibSSLScanner(logger: Fixture.logger)
            let attached = scanner.initialScan().filter { $0.hook != nil }.map { loader.attach($0) }
            #expect(attached.contains { $0.state == .attached })
            #expect(try openDescriptors() > before)
            loader.close()
            loader.close()  // idempotent
            #expect(try openDescriptors() == before)
        }
    }

}
