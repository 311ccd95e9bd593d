import TapCore
import Discover

/// Settings that change on reload without a restart.
struct PipelineChanges: Sendable {
    var reorderWindowNs: UInt64?
    var rotation: (rotateEveryNs: UInt64, flushEveryNs: UInt64)?
    var keepDuplicates: Bool?
}

/// How other threads speak to the pipeline thread: it takes at most one message per loop turn
/// (every ≤ 50 ms), so nothing else ever touches the pipeline's state.
final class PipelineMailbox: @unchecked Sendable {
    enum Message: Sendable {
        case reconfigure(PipelineChanges)
        case stop
    }

    private let lock = PThreadMutexCondition()
    private var queue: [Message] = []

    func send(_ message: Message) {
        lock.locked { queue.append(message) }
    }

    func take() -> Message? {
        lock.locked { queue.isEmpty ? nil : queue.removeFirst() }
    }
}
