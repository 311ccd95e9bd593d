import ArgumentParser
import Glibc
import Logging
import PcapNG
import Retention
import Segments
import TapCore

// Test-only driver of SegmentWriter for Tests/e2e/test_segments.py. Not shipped.
@main
struct SegmentReplay: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "segment-replay",
        abstract: "Drive the segment writer from a process (test tool).",
        subcommands: [Replay.self, Generate.self, Repair.self, Retain.self])
}

struct WriterOptions: ParsableArguments {
    @Option(name: .customLong("segment-dir")) var segmentDir: String
    @Option(name: .customLong("rotate-every")) var rotateEvery = "1s"
    @Option(name: .customLong("flush-every")) var flushEvery = "100ms"

    func makeWriter(liveSecrets: (any LiveSecretsProvider)?, counters: @escaping () -> [InterfaceKey: InterfaceCounters] = { [:] }) throws -> SegmentWriter {
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        return try SegmentWriter(directory: segmentDir, rotateEveryNs: try Units.parseDuration(rotateEvery),
                                 flushEveryNs: try Units.parseDuration(flushEvery), liveSecrets: liveSecrets,
                                 counters: counters, logger: Logger(label: "tlstap.segments"))
    }
}

/// The secrets seen so far: what the TLS session table would report as live.
final class SeenSecrets: LiveSecretsProvider {
    var lines: [KeyLogLine] = []
    func liveSecrets(nowWallNs: UInt64) -> [KeyLogLine] { lines }
}

func say(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
}

/// Replays a pcapng capture and an SSLKEYLOGFILE through the writer with the original timestamps,
/// handing each session's secrets to the writer right after its ClientHello packet — when the real
/// key would appear, before the ServerHello.
struct Replay: ParsableCommand {
    @OptionGroup var writer: WriterOptions
    @Option var input: String
    @Option var keylog: String?
    @Option(help: "Flush, print FLUSHED, write up to this many more packets of the same segment without flushing, print HELD, then wait to be killed.")
    var holdUnflushed: Int?

    func run() throws {
        let keysByRandom = Dictionary(grouping: try keylog.map { KeyLogLine.parse(try readText($0)) } ?? [], by: \.clientRandom)
        let live = SeenSecrets()
        let writer = try writer.makeWriter(liveSecrets: live)
        var packets: [(CapturedPacket, [UInt8]?)] = []
        let reader = BlockReader(source: try FileByteSource(path: input))
        var interfaceKeys: [InterfaceKey] = []
        var linkTypes: [UInt16] = []
        while let block = try reader.next() {
            switch block {
            case .section:
                interfaceKeys = []
                linkTypes = []
            case .interface(let idb):
                let key = InterfaceKey(netnsInode: 1, ifindex: UInt32(interfaceKeys.count + 1))
                interfaceKeys.append(key)
                linkTypes.append(idb.linkType)
                writer.register(InterfaceInfo(key: key, name: idb.name ?? "if\(key.ifindex)",
                                              linkType: LinkType(rawValue: idb.linkType) ?? .ethernet,
                                              description: "replayed from \(input)"))
            case .packet(let epb):
                let packet = CapturedPacket(interface: interfaceKeys[Int(epb.interfaceID)], timestampNs: epb.timestampNs,
                                            direction: epb.direction ?? .outbound, originalLength: epb.originalLength, data: epb.data)
                packets.append((packet, clientHelloRandom(epb.data, linkType: linkTypes[Int(epb.interfaceID)])))
            default:
                break
            }
        }
        // Keys whose ClientHello is not in the capture go in first.
        let randomsInCapture = Set(packets.compactMap(\.1))
        let orphans = keysByRandom.filter { !randomsInCapture.contains($0.key) }.flatMap(\.value)
        if !orphans.isEmpty {
            live.lines += orphans
            writer.write(secrets: orphans)
        }
        let flushedCount = holdUnflushed.map { max(0, packets.count - $0) } ?? packets.count
        for (packet, random) in packets.prefix(flushedCount) {
            writer.write(packet)
            if let random, let keys = keysByRandom[random] {
                live.lines += keys
                writer.write(secrets: keys)
            }
        }
        guard holdUnflushed != nil else {
            writer.close()
            say("DONE packets=\(packets.count) segments=\(writer.statistics.segmentsWritten)")
            return
        }
        writer.flush()
        say("FLUSHED packets=\(flushedCount) partial=\(writer.currentSegmentPath ?? "")")
        var held = 0
        let periodEnd = packets.prefix(flushedCount).last.map { $0.0.timestampNs - $0.0.timestampNs % writer.rotateEveryNs + writer.rotateEveryNs } ?? 0
        for (packet, _) in packets.dropFirst(flushedCount) where packet.timestampNs < periodEnd {
            writer.write(packet)
            held += 1
        }
        say("HELD packets=\(held)")
        while true { pause() }
    }
}

/// Synthetic packets on several interfaces, at chosen times (deterministic) or in real time.
struct Generate: ParsableCommand {
    @OptionGroup var writer: WriterOptions
    @Option var interfaces = 2
    @Option var count = 100
    @Option var size = 200
    @Option(help: "First timestamp (ns since the epoch); default now, in real time.") var startNs: UInt64?
    @Option var intervalNs: UInt64 = 1_000_000
    @Flag(help: "Pace packets at --interval-ns in real time, printing status lines.") var realtime = false

    func run() throws {
        var received: [InterfaceKey: InterfaceCounters] = [:]
        let writer = try writer.makeWriter(liveSecrets: nil, counters: { received })
        let keys = (0..<interfaces).map { InterfaceKey(netnsInode: 4026531840 + UInt64($0), ifindex: UInt32($0 + 2)) }
        for (index, key) in keys.enumerated() {
            writer.register(InterfaceInfo(key: key, name: "eth\(index)", linkType: index % 2 == 0 ? .ethernet : .rawIP,
                                          description: "generated interface \(index)"))
        }
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func random() -> UInt8 {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return UInt8(truncatingIfNeeded: state)
        }
        var time = startNs ?? MonotonicToWall.wallNowNs()
        var lastStatus: UInt64 = 0
        for index in 0..<count {
            if realtime {
                let now = MonotonicToWall.wallNowNs()
                if time > now { usleep(UInt32((time - now) / 1000)) }
                time = MonotonicToWall.wallNowNs()
            }
            let key = keys[index % keys.count]
            received[key, default: InterfaceCounters()].received += 1
            let data = (0..<size).map { _ in random() }
            writer.write(CapturedPacket(interface: key, timestampNs: time, direction: index % 3 == 0 ? .inbound : .outbound,
                                        originalLength: UInt32(size + index % 5), data: data))
            if realtime {
                writer.advance(watermarkWallNs: time)
                if time - lastStatus >= 100_000_000 {
                    lastStatus = time
                    let s = writer.statistics
                    say("STATUS written=\(s.packetsWritten) dropped=\(s.packetsDroppedDiskFull) errors=\(s.writeErrors) segments=\(s.segmentsWritten)")
                }
            }
            time += intervalNs
        }
        writer.close()
        let s = writer.statistics
        say("DONE written=\(s.packetsWritten) dropped=\(s.packetsDroppedDiskFull) errors=\(s.writeErrors) segments=\(s.segmentsWritten)")
    }
}

/// What the daemon runs at start: repair partial segments.
struct Repair: ParsableCommand {
    @Option(name: .customLong("segment-dir")) var segmentDir: String

    func run() throws {
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        for outcome in try SegmentRepair(directory: segmentDir, logger: Logger(label: "tlstap.repair")).run() {
            switch outcome {
            case .repaired(let path, let kept): say("REPAIRED \(path) kept=\(kept)")
            case .removed(let path, _): say("REMOVED \(path)")
            }
        }
    }
}

/// What the daemon runs periodically: retention by size and age.
struct Retain: ParsableCommand {
    @Option(name: .customLong("segment-dir")) var segmentDir: String
    @Option(name: .customLong("max-total-size")) var maxTotalSize: String?
    @Option(name: .customLong("max-age")) var maxAge: String?

    func run() throws {
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        let retention = Retention(directory: segmentDir, maxTotalBytes: try maxTotalSize.map { try Units.parseSize($0) },
                                  maxAgeNs: try maxAge.map { try Units.parseDuration($0) }, logger: Logger(label: "tlstap.retention"))
        for deletion in retention.enforce(nowWallNs: MonotonicToWall.wallNowNs()) {
            say("DELETED \(deletion.path) \(deletion.reason.rawValue)")
        }
    }
}

func readText(_ path: String) throws -> String {
    let source = try FileByteSource(path: path)
    var bytes: [UInt8] = []
    while case let chunk = try source.read(maxCount: 65536), !chunk.isEmpty { bytes += chunk }
    return String(decoding: bytes, as: UTF8.self)
}

/// The client random of a TLS ClientHello carried whole in this frame's TCP payload, if any.
func clientHelloRandom(_ frame: [UInt8], linkType: UInt16) -> [UInt8]? {
    var ip = 0
    if linkType == LinkType.ethernet.rawValue {
        guard frame.count > 14 else { return nil }
        ip = 14
    } else if linkType != LinkType.rawIP.rawValue {
        return nil
    }
    guard frame.count > ip + 40 else { return nil }
    var tcp: Int
    switch frame[ip] >> 4 {
    case 4:
        guard frame[ip + 9] == 6 else { return nil }
        tcp = ip + Int(frame[ip] & 0x0f) * 4
    case 6:
        guard frame[ip + 6] == 6 else { return nil }
        tcp = ip + 40
    default:
        return nil
    }
    guard frame.count > tcp + 20 else { return nil }
    let payload = tcp + Int(frame[tcp + 12] >> 4) * 4
    guard frame.count >= payload + 43, frame[payload] == 22, frame[payload + 5] == 1 else { return nil }
    return Array(frame[payload + 11..<payload + 43])
}
