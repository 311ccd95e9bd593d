/// Why input is not the PcapNG the reader expected, and where: the byte offset in the (uncompressed)
/// stream, so a user can look at the file.
public struct PcapNGError: Error, Equatable, CustomStringConvertible, Sendable {
    public var offset: UInt64
    public var reason: String

    public init(offset: UInt64, _ reason: String) {
        self.offset = offset
        self.reason = reason
    }

    public var description: String { "malformed PcapNG at byte offset \(offset): \(reason)" }
}
