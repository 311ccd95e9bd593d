import Crypto
import TapCore

/// The TLS 1.3 key schedule's derivation functions (RFC 8446 §7.1), for secrets a library no longer
/// holds: e.g. the handshake traffic secrets from the handshake secret and the transcript hash.
/// OpenSSL's key-log path hands tlstap every secret ready-made, so the uprobe path does not need this;
/// it is here for hooks that read the key schedule out of a library's state instead.
public enum TLS13KeySchedule {
    /// The hash of the cipher suite: SHA-256 for TLS_AES_128_GCM_SHA256 and TLS_CHACHA20_POLY1305_SHA256,
    /// SHA-384 for TLS_AES_256_GCM_SHA384.
    public enum Hash: Sendable {
        case sha256
        case sha384

        public var length: Int { self == .sha256 ? 32 : 48 }

        public func digest(_ data: [UInt8]) -> [UInt8] {
            switch self {
            case .sha256: Array(SHA256.hash(data: data))
            case .sha384: Array(SHA384.hash(data: data))
            }
        }
    }

    /// HKDF-Expand-Label(Secret, Label, Context, Length) = HKDF-Expand(Secret, HkdfLabel, Length) with
    /// HkdfLabel = uint16 length ‖ opaque label<7..255> = "tls13 " + Label ‖ opaque context<0..255>.
    public static func expandLabel(secret: [UInt8], label: String, context: [UInt8], length: Int, hash: Hash) -> [UInt8] {
        let fullLabel = Array("tls13 ".utf8) + Array(label.utf8)
        precondition(fullLabel.count <= 255 && context.count <= 255 && length <= 0xffff, "HkdfLabel field out of range")
        var info: [UInt8] = [UInt8(length >> 8), UInt8(length & 0xff), UInt8(fullLabel.count)]
        info += fullLabel
        info.append(UInt8(context.count))
        info += context
        let key = SymmetricKey(data: secret)
        let output: SymmetricKey = switch hash {
        case .sha256: HKDF<SHA256>.expand(pseudoRandomKey: key, info: info, outputByteCount: length)
        case .sha384: HKDF<SHA384>.expand(pseudoRandomKey: key, info: info, outputByteCount: length)
        }
        return output.withUnsafeBytes { Array($0) }
    }

    /// Derive-Secret(Secret, Label, Messages) with the transcript hash already computed.
    public static func deriveSecret(secret: [UInt8], label: String, transcriptHash: [UInt8], hash: Hash) -> [UInt8] {
        expandLabel(secret: secret, label: label, context: transcriptHash, length: hash.length, hash: hash)
    }

    /// HKDF-Extract(salt, IKM).
    public static func extract(salt: [UInt8], inputKeyMaterial: [UInt8], hash: Hash) -> [UInt8] {
        let ikm = SymmetricKey(data: inputKeyMaterial)
        switch hash {
        case .sha256: return HKDF<SHA256>.extract(inputKeyMaterial: ikm, salt: salt).withUnsafeBytes { Array($0) }
        case .sha384: return HKDF<SHA384>.extract(inputKeyMaterial: ikm, salt: salt).withUnsafeBytes { Array($0) }
        }
    }

    /// The handshake traffic secrets as NSS key-log lines, from the handshake secret and the hash of
    /// ClientHello…ServerHello.
    public static func handshakeTrafficLines(clientRandom: [UInt8], handshakeSecret: [UInt8],
                                             helloTranscriptHash: [UInt8], hash: Hash) -> [KeyLogLine] {
        [("CLIENT_HANDSHAKE_TRAFFIC_SECRET", "c hs traffic"), ("SERVER_HANDSHAKE_TRAFFIC_SECRET", "s hs traffic")].map {
            KeyLogLine(label: $0.0, clientRandom: clientRandom,
                            secret: deriveSecret(secret: handshakeSecret, label: $0.1, transcriptHash: helloTranscriptHash, hash: hash))
        }
    }
}
