/// Paces `WATCHDOG=1` from the loop that does the work: call `loopDidRun()` on every iteration (the loop
/// wakes more often than the interval, e.g. on each flush) and a ping goes out at most once per
/// `watchdogInterval`. A stuck loop stops the pings, and systemd restarts the service.
public struct WatchdogPacer: Sendable {
    private let notifier: ServiceNotifier
    private var lastPing: ContinuousClock.Instant?

    public init(notifier: ServiceNotifier) {
        self.notifier = notifier
    }

    /// Sends `WATCHDOG=1` if an interval has passed since the last one (or none was sent yet).
    public mutating func loopDidRun(now: ContinuousClock.Instant = .now) {
        guard let interval = notifier.watchdogInterval else { return }
        if let lastPing, now - lastPing < interval { return }
        notifier.watchdog()
        lastPing = now
    }
}
