import Secrets
import TapCore
import Testing

/// RFC 8448 §3 ("Simple 1-RTT Handshake", TLS_AES_128_GCM_SHA256): every value below is printed in
/// the RFC; the derivations must reproduce them byte for byte.
struct TLS13KeyScheduleTests {
    static func hex(_ text: String) -> [UInt8] { [UInt8](hex: text.filter { !$0.isWhitespace })! }

    static let earlySecret = hex("33 ad 0a 1c 60 7e c0 3b 09 e6 cd 98 93 68 0c e2 10 ad f3 00 aa 1f 26 60 e1 b2 2e 10 f1 70 f9 2a")
    static let derivedFromEarly = hex("6f 26 15 a1 08 c7 02 c5 67 8f 54 fc 9d ba b6 97 16 c0 76 18 9c 48 25 0c eb ea c3 57 6c 36 11 ba")
    static let handshakeSecret = hex("1d c8 26 e9 36 06 aa 6f dc 0a ad c1 2f 74 1b 01 04 6a a6 b9 9f 69 1e d2 21 a9 f0 ca 04 3f be ac")
    static let helloHash = hex("86 0c 06 ed c0 78 58 ee 8e 78 f0 e7 42 8c 58 ed d6 b4 3f 2c a3 e6 e9 5f 02 ed 06 3c f0 e1 ca d8")
    static let clientHandshakeTraffic = hex("b3 ed db 12 6e 06 7f 35 a7 80 b3 ab f4 5e 2d 8f 3b 1a 95 07 38 f5 2e 96 00 74 6a 0e 27 a5 5a 21")
    static let serverHandshakeTraffic = hex("b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38")
    static let derivedFromHandshake = hex("43 de 77 e0 c7 77 13 85 9a 94 4d b9 db 25 90 b5 31 90 a6 5b 3e e2 e4 f1 2d d7 a0 bb 7c e2 54 b4")
    static let serverHandshakeKey = hex("3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc")
    static let serverHandshakeIV = hex("5d 31 3e b2 67 12 76 ee 13 00 0b 30")

    @Test func earlySecretIsExtractOfZeroes() {
        let zeroes = [UInt8](repeating: 0, count: 32)
        #expect(TLS13KeySchedule.extract(salt: [0], inputKeyMaterial: zeroes, hash: .sha256) == Self.earlySecret)
    }

    @Test func derivedSecretsUseTheEmptyTranscriptHash() {
        let empty = TLS13KeySchedule.Hash.sha256.digest([])
        #expect(TLS13KeySchedule.deriveSecret(secret: Self.earlySecret, label: "derived", transcriptHash: empty, hash: .sha256) == Self.derivedFromEarly)
        #expect(TLS13KeySchedule.deriveSecret(secret: Self.handshakeSecret, label: "derived", transcriptHash: empty, hash: .sha256) == Self.derivedFromHandshake)
    }

    @Test func handshakeTrafficSecretsAsKeyLogLines() {
        let random = [UInt8](repeating: 0xab, count: 32)
        let lines = TLS13KeySchedule.handshakeTrafficLines(clientRandom: random, handshakeSecret: Self.handshakeSecret,
                                                           helloTranscriptHash: Self.helloHash, hash: .sha256)
        #expect(lines == [
            KeyLogLine(label: "CLIENT_HANDSHAKE_TRAFFIC_SECRET", clientRandom: random, secret: Self.clientHandshakeTraffic),
            KeyLogLine(label: "SERVER_HANDSHAKE_TRAFFIC_SECRET", clientRandom: random, secret: Self.serverHandshakeTraffic),
        ])
    }

    @Test func trafficKeyAndIVUseEmptyContext() {
        #expect(TLS13KeySchedule.expandLabel(secret: Self.serverHandshakeTraffic, label: "key", context: [], length: 16, hash: .sha256) == Self.serverHandshakeKey)
        #expect(TLS13KeySchedule.expandLabel(secret: Self.serverHandshakeTraffic, label: "iv", context: [], length: 12, hash: .sha256) == Self.serverHandshakeIV)
    }
}
