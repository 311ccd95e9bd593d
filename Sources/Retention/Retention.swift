import Glibc
import Logging
import Segments
import TapCore

/// Deletes finished segments, oldest first, while the directory holds more than `maxTotalBytes`
/// or a segment ended longer than `maxAgeNs` ago. A segment ends where the next one starts; the
/// newest finished one ends at its last modification. The segment being written (`*.partial`)
/// counts toward the total but is never deleted.
public struct Retention {
    public struct Deletion: Equatable, Sendable {
        public var path: String
        public var reason: Reason
    }

    public enum Reason: String, Sendable {
        case size
        case age
    }

    public let directory: String
    public let maxTotalBytes: UInt64?
    public let maxAgeNs: UInt64?
    public let logger: Logger

    public init(directory: String, maxTotalBytes: UInt64?, maxAgeNs: UInt64?, logger: Logger) {
        self.directory = directory
        self.maxTotalBytes = maxTotalBytes
        self.maxAgeNs = maxAgeNs
        self.logger = logger
    }

    /// Applies both limits now; returns what it deleted, oldest first. A segment that cannot be
    /// deleted is logged and left (and stops size-based deletion only for itself).
    @discardableResult
    public func enforce(nowWallNs: UInt64) -> [Deletion] {
        let finished: [SegmentEntry]
        let partialBytes: UInt64
        do {
            finished = try SegmentDirectory.finishedSegments(in: directory)
            partialBytes = try SegmentDirectory.partialSegments(in: directory).reduce(0) { $0 + $1.size }
        } catch {
            logger.error("retention could not list the segment directory", metadata: ["error": "\(error)"])
            return []
        }
        var total = finished.reduce(partialBytes) { $0 + $1.size }
        var deleted: [Deletion] = []
        for (index, segment) in finished.enumerated() {
            let endNs = index + 1 < finished.count ? finished[index + 1].startNs : max(segment.modifiedNs, segment.startNs)
            let reason: Reason
            if let maxTotalBytes, total > maxTotalBytes {
                reason = .size
            } else if let maxAgeNs, nowWallNs > endNs, nowWallNs - endNs > maxAgeNs {
                reason = .age
            } else {
                break // oldest first: once the oldest left is within both limits, so is the rest
            }
            if unlink(segment.path) == 0 || errno == ENOENT {
                total -= segment.size
                deleted.append(Deletion(path: segment.path, reason: reason))
                logger.notice("deleted segment (\(reason == .size ? "total size over the limit" : "older than the age limit"))",
                              metadata: ["segment": "\(segment.name)", "bytes": "\(segment.size)", "reason": "\(reason.rawValue)"])
            } else {
                logger.error("could not delete segment", metadata: ["segment": "\(segment.name)",
                                                                    "error": "\(String(cString: strerror(errno)))"])
            }
        }
        return deleted
    }
}
