import Secrets
import TapCore
import Testing

struct SessionTableTests {
    static let second: UInt64 = 1_000_000_000

    static func line(_ label: String, random: UInt8, secret: UInt8 = 1) -> KeyLogLine {
        KeyLogLine(label: label, clientRandom: [UInt8](repeating: random, count: 32), secret: [UInt8](repeating: secret, count: 32))
    }

    @Test func bothEndsOfASessionAreWrittenOnce() {
        let table = SessionTable(maxIdleNs: 600 * Self.second)
        #expect(table.record(Self.line("CLIENT_HANDSHAKE_TRAFFIC_SECRET", random: 1), wallNs: 10))
        #expect(!table.record(Self.line("CLIENT_HANDSHAKE_TRAFFIC_SECRET", random: 1), wallNs: 11), "the server reported the same secret")
        #expect(table.record(Self.line("SERVER_HANDSHAKE_TRAFFIC_SECRET", random: 1), wallNs: 12))
        #expect(table.record(Self.line("CLIENT_HANDSHAKE_TRAFFIC_SECRET", random: 2), wallNs: 13), "another session")
        #expect(table.counts.sessions == 2)
        #expect(table.counts.duplicates == 1)
    }

    @Test func liveSecretsAreThoseSeenWithinTheIdleLimit() {
        let table = SessionTable(maxIdleNs: 10 * Self.second)
        table.record(Self.line("CLIENT_RANDOM", random: 1), wallNs: 100 * Self.second)
        table.record(Self.line("CLIENT_RANDOM", random: 2), wallNs: 105 * Self.second)
        #expect(table.liveSecrets(nowWallNs: 109 * Self.second).count == 2)
        #expect(table.liveSecrets(nowWallNs: 112 * Self.second) == [Self.line("CLIENT_RANDOM", random: 2)])
        // A touched session stays live; an expired one is gone for good.
        table.touch(clientRandom: [UInt8](repeating: 2, count: 32), wallNs: 120 * Self.second)
        table.touch(clientRandom: [UInt8](repeating: 1, count: 32), wallNs: 120 * Self.second)
        #expect(table.liveSecrets(nowWallNs: 125 * Self.second) == [Self.line("CLIENT_RANDOM", random: 2)])
        #expect(table.liveSecrets(nowWallNs: 131 * Self.second).isEmpty)
    }

    @Test func liveSecretsAreInAStableOrder() {
        let table = SessionTable(maxIdleNs: 600 * Self.second)
        for (random, label) in [(3, "SERVER_TRAFFIC_SECRET_0"), (1, "EXPORTER_SECRET"), (3, "CLIENT_TRAFFIC_SECRET_0"), (2, "CLIENT_RANDOM")] {
            table.record(Self.line(label, random: UInt8(random)), wallNs: 1)
        }
        let labels = table.liveSecrets(nowWallNs: 2).map { "\($0.clientRandom[0]) \($0.label)" }
        #expect(labels == ["1 EXPORTER_SECRET", "2 CLIENT_RANDOM", "3 CLIENT_TRAFFIC_SECRET_0", "3 SERVER_TRAFFIC_SECRET_0"])
    }

    @Test func memoryIsBoundedByEvictingTheLeastRecentlySeen() {
        let table = SessionTable(maxIdleNs: 600 * Self.second, maxSessions: 20)
        for random in 0..<25 { table.record(Self.line("CLIENT_RANDOM", random: UInt8(random)), wallNs: UInt64(random)) }
        let live = Set(table.liveSecrets(nowWallNs: 30).map { $0.clientRandom[0] })
        #expect(live.count <= 20)
        #expect(live.contains(24) && !live.contains(0), "the newest stay, the oldest go")
        #expect(table.counts.evicted > 0)
    }
}
