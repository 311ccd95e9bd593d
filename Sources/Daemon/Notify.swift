import CSystemd
import Glibc

/// Tells systemd where the service is in its life (sd_notify(3)): `Type=notify` waits for `ready`,
/// `WatchdogSec=` for `watchdog()` pings, `systemctl reload` for `reloading()` … `ready`.
/// Outside systemd (no `NOTIFY_SOCKET`) every call does nothing.
public struct ServiceNotifier: Sendable {
    /// Whether a service manager listens; read once, at creation.
    public let isActive: Bool
    /// How often to call `watchdog()`: half of `WATCHDOG_USEC` (the margin systemd recommends), nil if
    /// the watchdog is off or meant for another process (`WATCHDOG_PID`).
    public let watchdogInterval: Duration?

    public init() {
        isActive = getenv("NOTIFY_SOCKET") != nil
        var microseconds: UInt64 = 0
        if sd_watchdog_enabled(0, &microseconds) > 0 && microseconds > 0 {
            watchdogInterval = .microseconds(Int64(microseconds / 2))
        } else {
            watchdogInterval = nil
        }
    }

    /// Start-up (or a reload) is complete; `status` is the one line `systemctl status` shows.
    public func ready(status: String) {
        send(["READY=1", Self.statusLine(status)])
    }

    /// Replaces the `systemctl status` line.
    public func status(_ text: String) {
        send([Self.statusLine(text)])
    }

    /// A reload has begun; must be followed by `ready(status:)`. The monotonic timestamp lets systemd
    /// tell this reload apart from an earlier one (required for `Type=notify-reload`, harmless before).
    public func reloading() {
        send(["RELOADING=1", "MONOTONIC_USEC=\(Self.monotonicMicroseconds())"])
    }

    /// Shutdown has begun (SIGTERM/SIGINT).
    public func stopping() {
        send(["STOPPING=1"])
    }

    /// The work loop is alive; call every `watchdogInterval` from the loop that does the work.
    public func watchdog() {
        guard watchdogInterval != nil else { return }
        send(["WATCHDOG=1"])
    }

    /// The assignments of one datagram, newline-separated as sd_notify expects.
    static func message(_ assignments: [String]) -> String {
        assignments.joined(separator: "\n")
    }

    /// STATUS= is one line: newlines would start a new assignment.
    static func statusLine(_ text: String) -> String {
        "STATUS=" + String(text.map { $0.isNewline ? " " : $0 })
    }

    static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
    }

    private func send(_ assignments: [String]) {
        guard isActive else { return }
        // Failures are not actionable (systemd gone or the socket full); the manager's own timeouts
        // are what reports a service that stopped notifying.
        _ = sd_notify(0, Self.message(assignments))
    }
}
