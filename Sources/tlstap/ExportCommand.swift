import ArgumentParser
import Segments
import TapCore

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write one uncompressed PcapNG over a time range.",
        discussion: """
            Merges the segments that overlap the range into one PcapNG section: every distinct TLS key-log \
            line first (one Decryption Secrets Block, including the head secrets of each segment), one \
            interface per distinct if_name, then the packets of the range in time order. Sessions whose \
            handshake lies in the range decrypt in Wireshark with no key file:

              tlstap export --since 10m -o - | wireshark -k -i -

            Segments are streamed, not loaded. A segment that cannot be read is named on stderr and \
            left out; the output is still a valid PcapNG of the rest, and the exit status is 1.
            """)

    @OptionGroup var directory: SegmentDirectoryOptions
    @OptionGroup var range: TimeRangeOptions

    @Option(name: .shortAndLong, help: ArgumentHelp("Output file, or - for standard output.", valueName: "FILE"))
    var output: String

    func run() throws {
        let (since, until) = try range.bounds()
        let report = SkipReport()
        try reportingSystemErrors {
            let export = try SegmentExport(directory: directory.segmentDir, sinceNs: since, untilNs: until, skip: report.skip)
            let file = try OutputFile(path: output)
            do {
                try export.write(to: file)
            } catch let error as SystemError {
                throw error
            } catch {
                printError("export failed: \(error)")
                throw ExitCode(1)
            }
        }
        try report.finish()
    }
}
