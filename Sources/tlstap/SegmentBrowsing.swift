import ArgumentParser
import Glibc
import Segments
import TapCore

/// The options every browsing command shares.
struct SegmentDirectoryOptions: ParsableArguments {
    @Option(name: .customLong("segment-dir"), help: ArgumentHelp("Directory holding the segments.", valueName: "DIR"))
    var segmentDir: String = SegmentDefaults.directory
}

/// The time range of `export` and `keylog`.
struct TimeRangeOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Start of the range: RFC 3339 (2026-11-25T10:05:00Z) or a duration ago (10m). Default: the oldest segment.",
                               valueName: "TIME"))
    var since: String?

    @Option(help: ArgumentHelp("End of the range (exclusive), same forms as --since. Default: now, including the newest segment.",
                               valueName: "TIME"))
    var until: String?

    func bounds() throws -> (sinceNs: UInt64, untilNs: UInt64) {
        let now = MonotonicToWall.wallNowNs()
        do {
            let since = try since.map { text throws(TimeBound.ParseError) in try TimeBound.parse(text, nowNs: now) } ?? 0
            let until = try until.map { text throws(TimeBound.ParseError) in try TimeBound.parse(text, nowNs: now) } ?? .max
            guard since < until else { throw ValidationError("--since must be earlier than --until") }
            return (since, until)
        } catch let error as TimeBound.ParseError {
            throw ValidationError(error.description)
        }
    }
}

/// A line on standard error.
func printError(_ message: String) {
    let bytes = Array("tlstap: \(message)\n".utf8)
    _ = bytes.withUnsafeBytes { Glibc.write(STDERR_FILENO, $0.baseAddress, $0.count) }
}

/// Names a corrupt segment on stderr; the command goes on and exits 1 at the end.
final class SkipReport {
    private(set) var skipped = 0

    func skip(_ entry: SegmentEntry, _ error: any Error) {
        skipped += 1
        printError("skipped corrupt segment \(entry.path): \(error)")
    }

    /// Exit status 1 when anything was skipped, after all other output is complete.
    func finish() throws {
        if skipped > 0 { throw ExitCode(1) }
    }
}

/// Runs a body, turning system errors (a missing directory, an unwritable output) into one line
/// on stderr and exit status 1.
func reportingSystemErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as SystemError {
        printError("\(error)")
        throw ExitCode(1)
    }
}
