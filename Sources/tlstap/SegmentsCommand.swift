import ArgumentParser
import Segments

struct SegmentsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "segments",
        abstract: "List the recorded segments.",
        discussion: """
            One row per finished segment, oldest first: start and end (UTC), size on disk, packets, and \
            TLS sessions with keys (distinct client randoms in its Decryption Secrets Blocks). The segment \
            being written (*.partial) is not listed. Each segment is read in full, so listing many takes a while.

            A segment that cannot be read is named on stderr and left out; the exit status is then 1.
            """)

    @OptionGroup var directory: SegmentDirectoryOptions

    @Flag(help: "Print a JSON array instead of a table.")
    var json = false

    func run() throws {
        let report = SkipReport()
        try reportingSystemErrors {
            var rows: [SegmentSummary] = []
            for entry in try SegmentDirectory.finishedSegments(in: directory.segmentDir) {
                do {
                    rows.append(try SegmentSummary.read(entry))
                } catch {
                    report.skip(entry, error)
                }
            }
            print(json ? Self.json(rows) : Self.table(rows), terminator: "")
        }
        try report.finish()
    }

    static func table(_ rows: [SegmentSummary]) -> String {
        let header = ["START", "END", "SIZE", "PACKETS", "TLS_SESSIONS", "FILE"]
        let cells = rows.map { row in
            [TimeBound.format(row.entry.startNs), TimeBound.format(row.endNs), "\(row.entry.size)",
             "\(row.packets)", "\(row.tlsSessions)", row.entry.name]
        }
        let widths = header.indices.map { column in ([header] + cells).map { $0[column].count }.max()! }
        return ([header] + cells).map { line in
            line.enumerated().map { column, text in
                column == line.count - 1 ? text : text + String(repeating: " ", count: widths[column] - text.count)
            }.joined(separator: "  ") + "\n"
        }.joined()
    }

    static func json(_ rows: [SegmentSummary]) -> String {
        func quoted(_ text: String) -> String {
            var out = "\""
            for scalar in text.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case _ where scalar.value < 0x20: out += "\\u00" + (scalar.value < 16 ? "0" : "") + String(scalar.value, radix: 16)
                default: out.unicodeScalars.append(scalar)
                }
            }
            return out + "\""
        }
        let objects = rows.map { row in
            "{\"file\":\(quoted(row.entry.path)),\"start\":\(quoted(TimeBound.format(row.entry.startNs))),"
                + "\"end\":\(quoted(TimeBound.format(row.endNs))),\"start_ns\":\(row.entry.startNs),\"end_ns\":\(row.endNs),"
                + "\"size_bytes\":\(row.entry.size),\"packets\":\(row.packets),\"tls_sessions\":\(row.tlsSessions)}"
        }
        return "[" + objects.joined(separator: ",\n ") + "]\n"
    }
}
