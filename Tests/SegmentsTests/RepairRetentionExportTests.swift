import Glibc
import Logging
import PcapNG
import Retention
import Segments
import TapCore
import Testing

@Suite struct SegmentRepairTests {
    /// A partial as a crash leaves it: what a live writer flushed (an unfinished frame), plus `tail`.
    func crashedPartial(in dir: TemporaryDirectory, tail: (_ flushed: [UInt8]) -> [UInt8]) throws -> [UInt8] {
        let live = TemporaryDirectory()
        defer { live.remove() }
        let writer = try makeWriter(live, secrets: FixedSecrets([keyLine(1)]))
        writer.write(packet(eth0, t0 + 1))
        writer.flush()
        writer.write(packet(eth0, t0 + 2))
        writer.flush()
        writer.write(packet(eth0, t0 + 3)) // compressed, never flushed: lost in the crash
        let name = "2025-11-25T10-00-00Z.pcapng.zst.partial"
        let flushed = readFile(live.path + "/" + name)
        writer.close()
        writeFile(dir.path + "/" + name, flushed + tail(flushed))
        return flushed
    }

    func packets(_ blocks: [Block]) -> [UInt64] {
        blocks.compactMap { if case .packet(let p) = $0 { return p.timestampNs } else { return nil } }
    }

    @Test func tornTailIsCutAndTheSegmentFinished() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        // An earlier finished segment must stay byte-identical.
        let earlier = dir.path + "/2025-11-25T09-55-00Z.pcapng.zst"
        writeFile(earlier, Array("not even zstd".utf8))
        _ = try crashedPartial(in: dir) { flushed in Array(flushed.suffix(flushed.count / 3)) } // bytes that do not continue the frame
        let outcomes = try SegmentRepair(directory: dir.path, logger: Logger(label: "test")).run()
        let final = dir.path + "/2025-11-25T10-00-00Z.pcapng.zst"
        guard case .repaired(let path, _) = outcomes.first, outcomes.count == 1 else { Issue.record("\(outcomes)"); return }
        #expect(path == final)
        #expect(readFile(earlier) == Array("not even zstd".utf8))
        // A finished segment now: the strict reader reads it whole; no ISBs.
        let read = try blocks(of: final)
        #expect(packets(read) == [t0 + 1, t0 + 2])
        #expect(!read.contains { if case .statistics = $0 { return true } else { return false } })
        #expect(dir.files() == ["2025-11-25T09-55-00Z.pcapng.zst", "2025-11-25T10-00-00Z.pcapng.zst"])
    }

    @Test func garbageTailIsCut() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        _ = try crashedPartial(in: dir) { _ in [UInt8](repeating: 0xAB, count: 100) }
        try SegmentRepair(directory: dir.path, logger: Logger(label: "test")).run()
        #expect(packets(try blocks(of: dir.path + "/2025-11-25T10-00-00Z.pcapng.zst")) == [t0 + 1, t0 + 2])
    }

    @Test func aWholeFilePartialIsOnlyRenamed() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let writer = try makeWriter(dir)
        writer.write(packet(eth0, t0))
        writer.close()
        let final = dir.path + "/2025-11-25T10-00-00Z.pcapng.zst"
        let bytes = readFile(final)
        rename(final, final + ".partial") // a crash between the last write and the rename
        try SegmentRepair(directory: dir.path, logger: Logger(label: "test")).run()
        #expect(readFile(final) == bytes)
    }

    @Test func nothingRecoverableIsRemoved() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        writeFile(dir.path + "/2025-11-25T10-00-00Z.pcapng.zst.partial", [0x28, 0xB5, 0x2F, 0xFD, 1, 2])
        let outcomes = try SegmentRepair(directory: dir.path, logger: Logger(label: "test")).run()
        #expect(outcomes.count == 1)
        if case .removed = outcomes[0] {} else { Issue.record("expected removal, got \(outcomes)") }
        #expect(dir.files().isEmpty)
    }
}

@Suite struct RetentionTests {
    func segments(_ dir: TemporaryDirectory, sizes: [Int], stepNs: UInt64) -> [String] {
        sizes.enumerated().map { index, size in
            let start = t0 + UInt64(index) * stepNs
            let name = SegmentName.finished(startNs: start)
            writeFile(dir.path + "/" + name, [UInt8](repeating: 1, count: size), mtimeNs: start + stepNs)
            return name
        }
    }

    @Test func sizeLimitDeletesOldestFirst() {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let names = segments(dir, sizes: [100, 100, 100, 100], stepNs: 300_000_000_000)
        writeFile(dir.path + "/2025-11-25T10-20-00Z.pcapng.zst.partial", [UInt8](repeating: 1, count: 50))
        let deleted = Retention(directory: dir.path, maxTotalBytes: 160, maxAgeNs: nil, logger: Logger(label: "test"))
            .enforce(nowWallNs: t0 + 1_300_000_000_000)
        #expect(deleted.map(\.path) == [dir.path + "/" + names[0], dir.path + "/" + names[1], dir.path + "/" + names[2]])
        #expect(deleted.allSatisfy { $0.reason == .size })
        #expect(dir.files() == [names[3], "2025-11-25T10-20-00Z.pcapng.zst.partial"])
    }

    @Test func ageLimitUsesTheSegmentEnd() {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let step: UInt64 = 300_000_000_000
        let names = segments(dir, sizes: [10, 10, 10], stepNs: step)
        // Segment 0 ends at t0+5m, segment 1 at t0+10m, segment 2 (newest) at its mtime t0+15m.
        let deleted = Retention(directory: dir.path, maxTotalBytes: nil, maxAgeNs: 600_000_000_000, logger: Logger(label: "test"))
            .enforce(nowWallNs: t0 + 2 * step + 600_000_000_001)
        #expect(deleted.map(\.path) == [dir.path + "/" + names[0], dir.path + "/" + names[1]])
        #expect(deleted.allSatisfy { $0.reason == .age })
        #expect(dir.files() == [names[2]])
    }

    @Test func withinLimitsNothingIsDeleted() {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        _ = segments(dir, sizes: [10, 10], stepNs: 1_000_000_000)
        #expect(Retention(directory: dir.path, maxTotalBytes: 20, maxAgeNs: 3_600_000_000_000, logger: Logger(label: "test"))
            .enforce(nowWallNs: t0 + 2_000_000_000).isEmpty)
        #expect(dir.files().count == 2)
    }
}

@Suite struct SegmentExportTests {
    @Test func overlappingSegmentsMergeInTimeOrderWithSecretsFirst() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let second: UInt64 = 1_000_000_000
        let first = try makeWriter(dir, secrets: FixedSecrets([keyLine(1)]))
        first.write(packet(eth0, t0 + 1 * second, 1))
        first.write(packet(wg0, t0 + 5 * second, 5))
        first.close()
        // A restart within the period: a second segment whose time overlaps the first.
        let restarted = try makeWriter(dir, secrets: FixedSecrets([keyLine(1), keyLine(2)]))
        restarted.write(packet(eth0, t0 + 3 * second, 3))
        restarted.write(packet(eth0, t0 + 12 * second, 12))
        restarted.close()
        #expect(dir.files().count == 3)

        var skipped: [String] = []
        let export = try SegmentExport(directory: dir.path, sinceNs: t0 + 2 * second, untilNs: t0 + 20 * second) { entry, _ in skipped.append(entry.name) }
        let out = dir.path + "/../export-\(getpid()).pcapng"
        defer { unlink(out) }
        let written = try export.write(to: try OutputFile(path: out))
        #expect(written == 3)
        #expect(skipped.isEmpty)
        let reader = BlockReader(source: try FileByteSource(path: out))
        var read: [Block] = []
        while let block = try reader.next() { read.append(block) }
        let idbs = read.compactMap { if case .interface(let i) = $0 { return i.name } else { return nil } }
        #expect(idbs == ["netns:4026531840/eth0", "netns:4026532301/wg0"])
        guard case .secrets(let dsb) = read[3] else { Issue.record("DSB not after the IDBs: \(read)"); return }
        #expect(dsb.keyLogLines == [keyLine(1), keyLine(2)])
        let packets = read.compactMap { if case .packet(let p) = $0 { return p } else { return nil } }
        #expect(packets.map(\.data.first) == [3, 5, 12])
        #expect(packets.map(\.interfaceID) == [0, 1, 0])
    }

    @Test func corruptSegmentsAreSkippedByName() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let writer = try makeWriter(dir)
        writer.write(packet(eth0, t0))
        writer.close()
        let good = readFile(dir.path + "/2025-11-25T10-00-00Z.pcapng.zst")
        writeFile(dir.path + "/2025-11-25T10-01-00Z.pcapng.zst", Array(good.prefix(good.count - 7)))   // truncated
        writeFile(dir.path + "/2025-11-25T10-02-00Z.pcapng.zst", [UInt8](repeating: 0x42, count: 300)) // garbage
        writeFile(dir.path + "/2025-11-25T10-03-00Z.pcapng.zst", [])                                   // empty
        var skipped: [String] = []
        let export = try SegmentExport(directory: dir.path) { entry, error in skipped.append("\(entry.name): \(error)") }
        #expect(export.segments.map(\.name) == ["2025-11-25T10-00-00Z.pcapng.zst"])
        #expect(skipped.count == 3)
        #expect(skipped[0].contains("truncated"))
    }
}
