import ArgumentParser
import TapCore

@main
struct TLSTapCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tlstap",
        abstract: "Record this host's traffic as PcapNG segments that Wireshark decrypts on its own.",
        discussion: """
            tlstap captures every packet on every interface of every network namespace with eBPF tc \
            programs, reads TLS secrets from processes using OpenSSL with eBPF uprobes, and writes \
            time-rotated, zstd-compressed PcapNG segments whose Decryption Secrets Blocks come before \
            the packets they unlock.
            """,
        version: TLSTap.version,
        subcommands: [RunCommand.self, SegmentsCommand.self, ExportCommand.self, KeylogCommand.self,
                      StatusCommand.self, CheckCommand.self])
}
