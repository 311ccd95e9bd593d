import Glibc
import PcapNG
import Segments
import TapCore
import Testing

@Suite struct SegmentWriterTests {
    @Test func segmentLayoutAndRotation() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let live = FixedSecrets([keyLine(1)])
        let writer = try makeWriter(dir, secrets: live)
        writer.write(packet(eth0, t0 + 1_000))
        #expect(writer.currentSegmentPath == dir.path + "/2025-11-25T10-00-00Z.pcapng.zst.partial")
        writer.write(secrets: [keyLine(2), keyLine(1)])
        writer.write(packet(wg0, t0 + 2_000, 8, .inbound))
        // Next period: the first segment finishes, the next starts with the live secrets.
        writer.write(packet(eth0, t0 + 12_000_000_000))
        writer.close()
        #expect(dir.files() == ["2025-11-25T10-00-00Z.pcapng.zst", "2025-11-25T10-00-10Z.pcapng.zst"])
        #expect(writer.statistics.segmentsWritten == 2)
        #expect(writer.statistics.packetsWritten == 3)

        let first = try blocks(of: dir.path + "/2025-11-25T10-00-00Z.pcapng.zst")
        guard first.count == 9 else { Issue.record("blocks: \(first)"); return }
        guard case .section(let shb) = first[0] else { Issue.record("no SHB"); return }
        #expect(shb.userApplication?.hasPrefix("tlstap") == true)
        #expect(shb.os?.hasPrefix("Linux") == true)
        #expect(first[1] == .secrets(DecryptionSecrets(keyLog: [keyLine(1)])))
        #expect(first[2] == .interface(InterfaceDescription(linkType: 1, snapLength: 262_144, name: "netns:4026531840/eth0", description: "host")))
        guard case .packet(let p0) = first[3] else { Issue.record("no packet"); return }
        #expect(p0.interfaceID == 0 && p0.timestampNs == t0 + 1_000 && p0.direction == .outbound && p0.originalLength == 64)
        // Only the secret not yet in the segment is written again.
        #expect(first[4] == .secrets(DecryptionSecrets(keyLog: [keyLine(2)])))
        #expect(first[5] == .interface(InterfaceDescription(linkType: 101, snapLength: 262_144, name: "netns:4026532301/wg0", description: "container")))
        guard case .packet(let p1) = first[6] else { Issue.record("layout"); return }
        #expect(p1.interfaceID == 1 && p1.direction == .inbound)
        // One ISB per interface seen; the counters of eth0, zeros for wg0.
        let isbs = first.suffix(2).compactMap { if case .statistics(let s) = $0 { return s } else { return nil } }
        #expect(isbs.count == 2)
        #expect(isbs[0].interfaceID == 0 && isbs[0].received == 11 && isbs[0].droppedByInterface == 1)
        #expect(isbs[1].interfaceID == 1 && isbs[1].received == 0)
        #expect(isbs[0].startNs == t0 && isbs[0].endNs == t0 + 10_000_000_000)

        let second = try blocks(of: dir.path + "/2025-11-25T10-00-10Z.pcapng.zst")
        // The head DSB: the provider's live secrets, plus what arrived during the previous segment.
        #expect(second[1] == .secrets(DecryptionSecrets(keyLog: [keyLine(1), keyLine(2)])))
        #expect(live.calls == 2)
    }

    @Test func headDSBCarriesThePreviousSegmentsSecretsWithoutAProvider() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let writer = try makeWriter(dir, secrets: nil)
        writer.write(packet(eth0, t0))
        writer.write(secrets: [keyLine(4)])
        writer.write(packet(eth0, t0 + 1))
        writer.write(packet(eth0, t0 + 10_000_000_000))
        writer.write(packet(eth0, t0 + 20_000_000_000))
        writer.close()
        let second = try blocks(of: dir.path + "/2025-11-25T10-00-10Z.pcapng.zst")
        #expect(second[1] == .secrets(DecryptionSecrets(keyLog: [keyLine(4)])))
        // Only one segment on: with no provider saying the session is live, it is not repeated forever.
        let third = try blocks(of: dir.path + "/2025-11-25T10-00-20Z.pcapng.zst")
        #expect(!third.contains { if case .secrets = $0 { return true } else { return false } })
    }

    @Test func secretsWithNoSegmentOpenGoToTheHeadOfTheNext() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let writer = try makeWriter(dir)
        writer.write(secrets: [keyLine(3)])
        #expect(dir.files().isEmpty)
        writer.write(packet(eth0, t0))
        writer.close()
        let read = try blocks(of: dir.path + "/2025-11-25T10-00-00Z.pcapng.zst")
        #expect(read[1] == .secrets(DecryptionSecrets(keyLog: [keyLine(3)])))
    }

    @Test func flushesWriteCompleteFramesAndTheWatermarkRotates() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let writer = try makeWriter(dir, flush: 100_000_000)
        writer.write(packet(eth0, t0))
        #expect(dir.files().isEmpty) // nothing on disk until the first flush
        writer.advance(watermarkWallNs: t0 + 150_000_000)
        let partial = dir.path + "/2025-11-25T10-00-00Z.pcapng.zst.partial"
        #expect(!readFile(partial).isEmpty)
        // The partial's frame is not finished, but everything flushed decodes.
        #expect(try flushedBlocks(of: partial).count == 3)
        writer.write(packet(eth0, t0 + 200_000_000))
        #expect(try flushedBlocks(of: partial).count == 3)
        writer.advance(watermarkWallNs: t0 + 400_000_000)
        #expect(try flushedBlocks(of: partial).count == 4)
        // No packets, but the watermark passes the period: the segment is finished.
        writer.advance(watermarkWallNs: t0 + 10_000_000_000)
        #expect(dir.files() == ["2025-11-25T10-00-00Z.pcapng.zst"])
        #expect(writer.currentSegmentPath == nil)
    }

    @Test func modesOfFilesAndDirectory() throws {
        let parent = TemporaryDirectory()
        defer { parent.remove() }
        let path = parent.path + "/segments"
        let writer = try SegmentWriter(directory: path, rotateEveryNs: 1_000_000_000, flushEveryNs: 1_000_000, liveSecrets: nil,
                                       counters: { [:] }, logger: .init(label: "test"))
        writer.register(eth0)
        writer.write(packet(eth0, t0))
        writer.close()
        var info = stat()
        stat(path, &info)
        #expect(info.st_mode & 0o777 == 0o700)
        stat(path + "/2025-11-25T10-00-00Z.pcapng.zst", &info)
        #expect(info.st_mode & 0o777 == 0o600)
        unlink(path + "/2025-11-25T10-00-00Z.pcapng.zst")
        rmdir(path)
    }

    @Test func restartInTheSamePeriodDoesNotOverwrite() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        for offset in [UInt64(1_000_000_000), 3_500_000_000] {
            let writer = try makeWriter(dir)
            writer.write(packet(eth0, t0 + offset))
            writer.close()
        }
        #expect(dir.files() == ["2025-11-25T10-00-00Z.pcapng.zst", "2025-11-25T10-00-03Z.pcapng.zst"])
    }

    @Test func segmentNames() {
        #expect(SegmentName.finished(startNs: t0 + 300_000_000_000) == "2025-11-25T10-05-00Z.pcapng.zst")
        #expect(SegmentName.startNs(of: "2025-11-25T10-05-00Z.pcapng.zst") == t0 + 300_000_000_000)
        #expect(SegmentName.startNs(of: "2025-11-25T10-05-00Z.pcapng.zst.partial") == t0 + 300_000_000_000)
        #expect(SegmentName.startNs(of: "2025-13-25T10-05-00Z.pcapng.zst") == nil)
        #expect(SegmentName.startNs(of: "notes.txt") == nil)
    }

    @Test func timeBounds() throws {
        #expect(try TimeBound.parse("2025-11-25T10:00:00Z", nowNs: 0) == t0)
        #expect(try TimeBound.parse("2025-11-25T11:00:00.5+01:00", nowNs: 0) == t0 + 500_000_000)
        #expect(try TimeBound.parse("10m", nowNs: t0) == t0 - 600_000_000_000)
        #expect(throws: TimeBound.ParseError.self) { try TimeBound.parse("yesterday", nowNs: t0) }
        #expect(TimeBound.format(t0 + 250_000_000) == "2025-11-25T10:00:00.25Z")
    }

    /// Packets alternate between interfaces and segments (the writer caches the last interface's IDB
    /// id): each packet names the IDB of its own interface in its own segment, and an interface never
    /// registered opens no segment and is not written.
    @Test func packetsAlwaysNameTheirOwnInterfaceAcrossSegments() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let writer = try makeWriter(dir)
        let stranger = InterfaceInfo(key: InterfaceKey(netnsInode: 9, ifindex: 9), name: "x0", linkType: .ethernet, description: "")
        writer.write(packet(stranger, t0 + 500))
        #expect(writer.currentSegmentPath == nil)
        // The next segment starts with the interface the last one ended with, whose IDB id differs there.
        let sequence = [(wg0, t0 + 1_000), (eth0, t0 + 2_000), (wg0, t0 + 3_000), (eth0, t0 + 4_000),
                        (eth0, t0 + 10_000_000_000), (wg0, t0 + 10_000_001_000)]
        for (index, (interface, time)) in sequence.enumerated() { writer.write(packet(interface, time, UInt8(index))) }
        writer.close()
        #expect(writer.statistics.packetsWritten == 6)
        var names: [String] = []
        for file in dir.files() {
            var idbNames: [String] = []
            for block in try blocks(of: dir.path + "/" + file) {
                if case .interface(let idb) = block { idbNames.append(idb.name ?? "") }
                if case .packet(let epb) = block {
                    names.append("\(Int(epb.interfaceID) < idbNames.count ? idbNames[Int(epb.interfaceID)] : "no IDB"):\(epb.data[0])")
                }
            }
        }
        #expect(names == ["netns:4026532301/wg0:0", "netns:4026531840/eth0:1", "netns:4026532301/wg0:2",
                          "netns:4026531840/eth0:3", "netns:4026531840/eth0:4", "netns:4026532301/wg0:5"])
    }
}

