import DequeModule
import TapCore

/// Holds packets back by their kernel time so that TLS keys, which a client learns only when its
/// handshake ends, can be written before the packets they unlock; releases them in time order.
///
/// - A packet is released once its time is ≤ `now − window` (the watermark), oldest first; equal
///   times keep arrival order within a ring (across rings, the lower CPU's goes first).
/// - **Late packets are dropped, not written.** Segments promise non-decreasing time order, so a
///   packet older than the last one released cannot be placed anymore; it is counted in
///   `lateDrops[interface]` (the daemon adds these to `InterfaceCounters.droppedByTapper`).
///   Every poll reads all rings, so lateness needs the consumer to stall for longer than the window:
///   rare at the default 500 ms.
/// - **Bounded memory.** When the held bytes exceed `maxBytes`, the oldest packets are released
///   early (before the watermark), counted in `releasedEarly`; what arrives later with an older time
///   than those becomes late.
///
/// Packets come in `streams`, one per CPU ring. Records of one CPU's ring are in time order (a tc
/// program does not nest on its CPU), so each stream is a time-sorted queue that a new packet joins
/// at the end (it looks back from there, so a rare exception is still placed right), and release
/// takes the oldest head of the streams that hold packets. Cost per packet: one copy of its bytes
/// into the arena, O(1) queue work and a look at the head of each stream with packets (the CPUs that
/// carry traffic, not every CPU of the host). (A binary heap over all held packets did the
/// same at O(log n) with cache misses on every level: 15 % of the daemon's CPU under HTTPS load.)
/// Not thread-safe: the pipeline thread owns it.
public final class ReorderBuffer {
    private struct Held {
        var timeNs: UInt64
        var interface: InterfaceKey
        var originalLength: UInt32
        var length: Int
        var location: PacketArena.Location
        var direction: Direction
    }

    public var windowNs: UInt64
    public let maxBytes: Int
    private var streams: [Deque<Held>]
    /// The streams holding packets, in no order.
    private var activeStreams: [Int] = []
    private let arena = PacketArena()
    /// Time of the last released packet: nothing older may follow it.
    public private(set) var lastReleasedNs: UInt64 = 0
    /// Packet bytes held (what `maxBytes` caps).
    public private(set) var heldBytes = 0
    /// Packets dropped for arriving older than `lastReleasedNs`, per interface.
    public private(set) var lateDrops: [InterfaceKey: UInt64] = [:]
    /// Packets released before their watermark because the buffer was over `maxBytes`.
    public private(set) var releasedEarly: UInt64 = 0

    public init(windowNs: UInt64, maxBytes: Int, streams: Int = 1) {
        precondition(streams >= 1, "a reorder buffer needs a stream")
        self.windowNs = windowNs
        self.maxBytes = maxBytes
        self.streams = Array(repeating: Deque<Held>(), count: streams)
    }

    public var count: Int { streams.reduce(0) { $0 + $1.count } }
    public var isEmpty: Bool { activeStreams.isEmpty }
    /// Time of the oldest held packet.
    public var oldestTimeNs: UInt64? { oldestStream().map { streams[$0][0].timeNs } }
    /// Memory the arena holds for packet bytes, spare chunks included.
    public var arenaBytes: Int { arena.allocatedBytes }

    public enum PushOutcome: Equatable {
        case held
        /// Older than what was already released: dropped and counted.
        case late
    }

    /// Copies the packet in; `packet.bytes` need not outlive the call.
    @discardableResult
    public func push(_ packet: PacketView, stream: Int = 0) -> PushOutcome {
        let time = packet.timestampNs
        guard time >= lastReleasedNs else {
            lateDrops[packet.interface, default: 0] += 1
            return .late
        }
        let held = Held(timeNs: time, interface: packet.interface, originalLength: packet.originalLength,
                        length: packet.bytes.count, location: arena.store(packet.bytes), direction: packet.direction)
        heldBytes += held.length
        if streams[stream].isEmpty { activeStreams.append(stream) }
        var index = streams[stream].count
        while index > 0, streams[stream][index - 1].timeNs > time { index -= 1 }
        if index == streams[stream].count {
            streams[stream].append(held)
        } else {
            streams[stream].insert(held, at: index)
        }
        return .held
    }

    /// Hands every packet due at `nowNs` to `body`, oldest first: its time is at or before
    /// `nowNs − window`, or the buffer is over its byte cap. The view is valid during the call only.
    public func releaseReady(nowNs: UInt64, to body: (PacketView) -> Void) {
        let watermark = nowNs >= windowNs ? nowNs - windowNs : 0
        while let stream = oldestStream() {
            if streams[stream][0].timeNs > watermark {
                guard heldBytes > maxBytes else { return }
                releasedEarly += 1
            }
            release(from: stream, to: body)
        }
    }

    /// Hands everything held to `body`, oldest first, regardless of time (on stop).
    public func releaseAll(to body: (PacketView) -> Void) {
        while let stream = oldestStream() { release(from: stream, to: body) }
    }

    /// The stream whose head is oldest, nil when all are empty.
    private func oldestStream() -> Int? {
        var oldest: Int?
        var oldestTime = UInt64.max
        for stream in activeStreams {
            let time = streams[stream][0].timeNs
            if oldest == nil || time < oldestTime || (time == oldestTime && stream < oldest!) {
                oldest = stream
                oldestTime = time
            }
        }
        return oldest
    }

    private func release(from stream: Int, to body: (PacketView) -> Void) {
        let held = streams[stream].removeFirst()
        if streams[stream].isEmpty { activeStreams.removeAll { $0 == stream } }
        heldBytes -= held.length
        lastReleasedNs = held.timeNs
        body(PacketView(interface: held.interface, timestampNs: held.timeNs, direction: held.direction,
                        originalLength: held.originalLength, bytes: arena.bytes(at: held.location, count: held.length)))
        arena.release(held.location)
    }
}
