import Daemon
import Glibc
import Logging
import Testing

@Suite struct JournalFieldTests {
    @Test func recordCarriesMessagePriorityIdentifierLocationAndMetadata() {
        let fields = JournalFields.encode(
            level: .warning, message: "attach tc ingress failed",
            metadata: ["interface": "eth0", "netns": "4026532301", "segment": "2026-11-25T10-00-00Z.pcapng.zst",
                       "library": "/usr/lib/x86_64-linux-gnu/libssl.so.3", "pid": "4242", "count": .stringConvertible(3)],
            file: "Daemon/Pipeline.swift", function: "attach(_:)", line: 42)
        #expect(fields == [
            "MESSAGE=attach tc ingress failed",
            "PRIORITY=4",
            "SYSLOG_IDENTIFIER=tlstap",
            "CODE_FILE=Daemon/Pipeline.swift",
            "CODE_LINE=42",
            "CODE_FUNC=attach(_:)",
            "TLSTAP_COUNT=3",
            "TLSTAP_INTERFACE=eth0",
            "TLSTAP_LIBRARY=/usr/lib/x86_64-linux-gnu/libssl.so.3",
            "TLSTAP_NETNS=4026532301",
            "TLSTAP_PID=4242",
            "TLSTAP_SEGMENT=2026-11-25T10-00-00Z.pcapng.zst",
        ])
    }

    @Test func prioritiesAreSyslogLevels() {
        #expect(Logger.Level.allCases.map(JournalFields.priority) == [7, 7, 6, 5, 4, 3, 2])
    }

    @Test func metadataKeysBecomeValidFieldNames() {
        #expect(JournalFields.fieldName(metadataKey: "tls-version") == "TLSTAP_TLS_VERSION")
        #expect(JournalFields.fieldName(metadataKey: "netns.inode") == "TLSTAP_NETNS_INODE")
        #expect(JournalFields.fieldName(metadataKey: "--") == nil)
        #expect(JournalFields.fieldName(metadataKey: String(repeating: "k", count: 100))?.count == 64)
    }
}

@Suite struct StderrFormatTests {
    @Test func lineIsTimestampLevelIdentifierMessageAndSortedMetadata() {
        let line = TapLogHandler.format(time: 1_795_600_800, level: .info, message: "rotated",
                                           metadata: ["segment": "a b", "count": "3"])
        #expect(line == "2026-11-25T10:00:00Z info tlstap: rotated count=3 segment=\"a b\"")
    }

    @Test func journalStreamCountsOnlyWhenItIsStderr() {
        var info = stat()
        fstat(STDERR_FILENO, &info)
        #expect(TapLogging.stderrIsJournal(environment: "\(info.st_dev):\(info.st_ino)"))
        #expect(!TapLogging.stderrIsJournal(environment: "\(info.st_dev):\(info.st_ino &+ 1)"))
        #expect(!TapLogging.stderrIsJournal(environment: nil))
        #expect(!TapLogging.stderrIsJournal(environment: "garbage"))
    }
}
