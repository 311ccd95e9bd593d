import PcapNG
import TapCore

/// Merges the segments that overlap a time range into one uncompressed PcapNG section: an SHB, the
/// interfaces of all segments (one IDB per distinct name and link type), one DSB with every distinct
/// key-log line, then the packets of the range in time order.
///
/// It streams: a first pass collects secrets and interfaces (small), a second pass merges packets
/// with one reader per segment, opened only once the merge reaches that segment's start, so only
/// segments that overlap in time are open together.
public final class SegmentExport {
    public let sinceNs: UInt64
    public let untilNs: UInt64
    /// Segments that overlap the range and read without error, in start order.
    public private(set) var segments: [SegmentEntry] = []
    public private(set) var secrets: [KeyLogLine] = []
    private var interfaces: [InterfaceDescription] = []
    private var interfaceIndex: [InterfaceIdentity: UInt32] = [:]
    /// Reports a segment that could not be read; the export goes on without it.
    private let skip: (SegmentEntry, any Error) -> Void

    struct InterfaceIdentity: Hashable {
        var name: String
        var linkType: UInt16
    }

    /// Reads every segment of `directory` that overlaps [sinceNs, untilNs) once, for its secrets and
    /// interfaces; `skip` hears of each that is corrupt.
    public init(directory: String, sinceNs: UInt64 = 0, untilNs: UInt64 = .max,
                skip: @escaping (SegmentEntry, any Error) -> Void) throws(SystemError) {
        self.sinceNs = sinceNs
        self.untilNs = untilNs
        self.skip = skip
        let all = try SegmentDirectory.finishedSegments(in: directory)
        for (index, entry) in all.enumerated() {
            let endNs = index + 1 < all.count ? all[index + 1].startNs : .max
            guard entry.startNs < untilNs, endNs > sinceNs else { continue }
            do {
                try collect(entry)
                segments.append(entry)
            } catch {
                skip(entry, error)
            }
        }
    }

    private func collect(_ entry: SegmentEntry) throws {
        let reader = try SegmentReader.open(path: entry.path)
        var found: [KeyLogLine] = []
        var foundInterfaces: [InterfaceDescription] = []
        var sawSection = false
        while let block = try reader.next() {
            sawSection = true
            switch block {
            case .secrets(let dsb): found += dsb.keyLogLines
            case .interface(let idb): foundInterfaces.append(idb)
            default: break
            }
        }
        guard sawSection else { throw PcapNGError(offset: 0, "the segment is empty") }
        // Only a segment that read to its end contributes.
        var seen = Set(secrets)
        secrets += found.filter { seen.insert($0).inserted }
        for idb in foundInterfaces { _ = globalID(of: idb) }
    }

    private func globalID(of idb: InterfaceDescription) -> UInt32 {
        let identity = InterfaceIdentity(name: idb.name ?? "", linkType: idb.linkType)
        if let id = interfaceIndex[identity] { return id }
        let id = UInt32(interfaces.count)
        var merged = idb
        merged.comment = nil
        interfaces.append(merged)
        interfaceIndex[identity] = id
        return id
    }

    /// Writes the merged PcapNG; returns the number of packets written.
    @discardableResult
    public func write(to output: OutputFile) throws -> UInt64 {
        var head: [UInt8] = []
        BlockWriter.append(.section(SectionHeader(os: SegmentWriter.operatingSystem, userApplication: "tlstap \(TLSTap.version) export",
                                                  comment: "tlstap export of \(segments.count) segment(s)")), to: &head)
        for idb in interfaces { BlockWriter.append(.interface(idb), to: &head) }
        if !secrets.isEmpty { BlockWriter.append(.secrets(DecryptionSecrets(keyLog: secrets)), to: &head) }
        try output.write(head)

        var waiting = segments[...]
        var open: [MergeCursor] = []
        var written: UInt64 = 0
        var bytes: [UInt8] = []
        while true {
            // Open every segment that starts no later than the earliest packet still open.
            while let next = waiting.first, open.isEmpty || next.startNs <= open.map(\.head.timestampNs).min()! {
                waiting = waiting.dropFirst()
                if let cursor = advanceOrDrop(MergeCursor(entry: next, export: self)) { open.append(cursor) }
            }
            guard let index = open.indices.min(by: { open[$0].head.timestampNs < open[$1].head.timestampNs }) else { break }
            var packet = open[index].head
            if packet.timestampNs >= sinceNs && packet.timestampNs < untilNs {
                packet.interfaceID = open[index].globalIDs[Int(packet.interfaceID)]
                packet.comment = nil
                bytes.removeAll(keepingCapacity: true)
                BlockWriter.append(.packet(packet), to: &bytes)
                try output.write(bytes)
                written += 1
            }
            if let cursor = advanceOrDrop(open[index]) { open[index] = cursor } else { open.remove(at: index) }
        }
        try output.flush()
        return written
    }

    /// Moves a cursor to its next packet; nil at its end, or (reported) at an error.
    private func advanceOrDrop(_ cursor: MergeCursor?) -> MergeCursor? {
        guard var cursor else { return nil }
        do {
            return try cursor.advance(export: self) ? cursor : nil
        } catch {
            skip(cursor.entry, error)
            return nil
        }
    }

    /// One segment's reader in the merge, with its interface ids mapped to the export's.
    struct MergeCursor {
        var entry: SegmentEntry
        var reader: BlockReader?
        var globalIDs: [UInt32] = []
        var head = EnhancedPacket(interfaceID: 0, timestampNs: 0, originalLength: 0, data: [])

        init?(entry: SegmentEntry, export: SegmentExport) {
            self.entry = entry
            do {
                reader = try SegmentReader.open(path: entry.path)
            } catch {
                export.skip(entry, error)
                return nil
            }
        }

        mutating func advance(export: SegmentExport) throws -> Bool {
            guard let reader else { return false }
            while let block = try reader.next() {
                switch block {
                case .section: globalIDs = []
                case .interface(let idb): globalIDs.append(export.globalID(of: idb))
                case .packet(let packet):
                    head = packet
                    return true
                default: break
                }
            }
            return false
        }
    }
}
