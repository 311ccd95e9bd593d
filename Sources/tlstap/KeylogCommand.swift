import ArgumentParser
import Segments

struct KeylogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keylog",
        abstract: "Print the recorded TLS secrets as an SSLKEYLOGFILE text.",
        discussion: """
            Prints every distinct key-log line found in the Decryption Secrets Blocks of the segments that \
            overlap the range, in the NSS key log format that Wireshark (tls.keylog_file), curl and \
            browsers use. The output is key material: store it as carefully as the segments.

            A segment that cannot be read is named on stderr and left out; the exit status is then 1.
            """)

    @OptionGroup var directory: SegmentDirectoryOptions
    @OptionGroup var range: TimeRangeOptions

    func run() throws {
        let (since, until) = try range.bounds()
        let report = SkipReport()
        try reportingSystemErrors {
            let export = try SegmentExport(directory: directory.segmentDir, sinceNs: since, untilNs: until, skip: report.skip)
            let file = try OutputFile(path: "-")
            for line in export.secrets { try file.write(Array((line.text + "\n").utf8)) }
            try file.flush()
        }
        try report.finish()
    }
}
