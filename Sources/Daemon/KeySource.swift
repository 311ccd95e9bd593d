import TapCore

/// The TLS side as the pipeline sees it: a ring of key records, turned into key-log lines not seen
/// before (both ends of a local connection report the same session), and the table of live sessions
/// whose secrets head each new segment.
protocol KeySource: AnyObject, LiveSecretsProvider {
    var eventsMapFD: Int32 { get }
    /// Lines to write now (new secrets only, already deduplicated) and when the library derived them.
    /// Called on the pipeline thread.
    func accept(_ raw: UnsafeRawBufferPointer, clock: MonotonicToWall) -> (lines: [KeyLogLine], wallNs: UInt64)
    /// Forgets sessions idle longer than `max-session-idle`.
    func expire(nowWallNs: UInt64)
    var liveSessionCount: Int { get }
}
