import HeapModule
import TapCore

/// What the reorder buffer needs to know about what it holds.
public protocol Reorderable {
    /// The time the element is ordered by, in the same clock as the `nowNs` given to `popReady`.
    var reorderTimeNs: UInt64 { get }
    /// Bytes the element holds, for the memory cap.
    var reorderByteCount: Int { get }
    /// Where lateness is counted.
    var reorderInterface: InterfaceKey { get }
}

extension CapturedPacket: Reorderable {
    public var reorderTimeNs: UInt64 { timestampNs }
    public var reorderByteCount: Int { data.count }
    public var reorderInterface: InterfaceKey { interface }
}

/// Holds packets back by their kernel time so that TLS keys, which a client learns only when its
/// handshake ends, can be written before the packets they unlock; releases them in time order.
///
/// - An element is released once its time is ≤ `now − window` (the watermark), oldest first; ties
///   keep arrival order (the heap is keyed by (time, arrival sequence)).
/// - **Late elements are dropped, not written.** Segments promise non-decreasing time order, so an
///   element older than the last one released cannot be placed anymore; it is counted in
///   `lateDrops[interface]` (the daemon adds these to `InterfaceCounters.droppedByTapper`).
///   With one ring buffer and per-CPU ordering, lateness needs a CPU to stall for longer than the
///   window, so this is rare at the default 500 ms.
/// - **Bounded memory.** When the held bytes exceed `maxBytes`, the oldest elements are released
///   early (before the watermark), counted in `releasedEarly`; what arrives later with an older time
///   than those becomes late.
///
/// Cost per element: one heap insertion and removal (O(log n)); no allocation besides the heap's
/// amortised growth. Not thread-safe: the pipeline thread owns it.
public struct ReorderBuffer<Element: Reorderable> {
    /// What the heap orders: plain integers, so sifting moves no reference-counted packet. The
    /// packets wait in `slots` (profiled: with packets in the heap, retain/release on every sift step
    /// was half of the daemon's CPU).
    private struct Entry: Comparable {
        var timeNs: UInt64
        var sequence: UInt64
        var slot: Int

        static func < (a: Entry, b: Entry) -> Bool {
            (a.timeNs, a.sequence) < (b.timeNs, b.sequence)
        }
        static func == (a: Entry, b: Entry) -> Bool {
            a.timeNs == b.timeNs && a.sequence == b.sequence
        }
    }

    public let windowNs: UInt64
    public let maxBytes: Int
    private var heap = Heap<Entry>()
    private var slots: [Element?] = []
    private var freeSlots: [Int] = []
    private var nextSequence: UInt64 = 0
    /// Time of the last released element: nothing older may follow it.
    public private(set) var lastReleasedNs: UInt64 = 0
    public private(set) var heldBytes = 0
    /// Elements dropped for arriving older than `lastReleasedNs`, per interface.
    public private(set) var lateDrops: [InterfaceKey: UInt64] = [:]
    /// Elements released before their watermark because the buffer was over `maxBytes`.
    public private(set) var releasedEarly: UInt64 = 0

    public init(windowNs: UInt64, maxBytes: Int) {
        self.windowNs = windowNs
        self.maxBytes = maxBytes
    }

    public var count: Int { heap.count }
    public var isEmpty: Bool { heap.isEmpty }
    /// Time of the oldest held element, to know when the next release is due.
    public var oldestTimeNs: UInt64? { heap.min?.timeNs }

    public enum PushOutcome: Equatable {
        case held
        /// Older than what was already released: dropped and counted.
        case late
    }

    @discardableResult
    public mutating func push(_ element: Element) -> PushOutcome {
        let time = element.reorderTimeNs
        guard time >= lastReleasedNs else {
            lateDrops[element.reorderInterface, default: 0] += 1
            return .late
        }
        heldBytes += element.reorderByteCount
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = free
            slots[slot] = element
        } else {
            slot = slots.count
            slots.append(element)
        }
        heap.insert(Entry(timeNs: time, sequence: nextSequence, slot: slot))
        nextSequence &+= 1
        return .held
    }

    /// The next element due at `nowNs`: its time is at or before `nowNs − window`, or the buffer is over
    /// its byte cap. nil when nothing is due. Call in a loop.
    public mutating func popReady(nowNs: UInt64) -> Element? {
        guard let oldest = heap.min else { return nil }
        let watermark = nowNs >= windowNs ? nowNs - windowNs : 0
        if oldest.timeNs <= watermark { return popOldest() }
        if heldBytes > maxBytes {
            releasedEarly += 1
            return popOldest()
        }
        return nil
    }

    /// The oldest element regardless of time, to empty the buffer on stop.
    public mutating func popOldest() -> Element? {
        guard let entry = heap.popMin(), let element = slots[entry.slot].take() else { return nil }
        freeSlots.append(entry.slot)
        heldBytes -= element.reorderByteCount
        lastReleasedNs = entry.timeNs
        return element
    }
}
