import Daemon
import Glibc
import Testing

/// A NOTIFY_SOCKET the test owns: an AF_UNIX datagram socket in a temp directory, the way systemd
/// listens. The environment is process-wide, so these tests run one at a time.
final class NotifySocket {
    let path: String
    let fd: Int32

    init() throws {
        var template = Array("/tmp/tlstap-notify-XXXXXX".utf8CString)
        path = String(cString: mkdtemp(&template)!) + "/notify"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try #require(bound == 0)
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// The next datagram, or nil after the 2 s timeout.
    func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(fd, &buffer, buffer.count, 0)
        return count < 0 ? nil : String(decoding: buffer[..<count], as: UTF8.self)
    }

    /// Whether anything arrives within 100 ms.
    func isQuiet() -> Bool {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&poller, 1, 100) == 0
    }

    deinit {
        close(fd)
        unlink(path)
        rmdir(String(path.dropLast("/notify".count)))
    }
}

@Suite(.serialized) struct NotifierTests {
    @Test func messagesAreTheSdNotifyAssignments() throws {
        let socket = try NotifySocket()
        setenv("NOTIFY_SOCKET", socket.path, 1)
        setenv("WATCHDOG_USEC", "2000000", 1)
        setenv("WATCHDOG_PID", String(getpid()), 1)
        defer { unsetenv("NOTIFY_SOCKET"); unsetenv("WATCHDOG_USEC"); unsetenv("WATCHDOG_PID") }

        let notifier = ServiceNotifier()
        #expect(notifier.isActive)
        #expect(notifier.watchdogInterval == .seconds(1))

        notifier.ready(status: "capturing 3 interfaces\nin 2 namespaces")
        #expect(socket.receive() == "READY=1\nSTATUS=capturing 3 interfaces in 2 namespaces")

        notifier.status("2 sessions")
        #expect(socket.receive() == "STATUS=2 sessions")

        notifier.watchdog()
        #expect(socket.receive() == "WATCHDOG=1")

        var before = timespec()
        clock_gettime(CLOCK_MONOTONIC, &before)
        notifier.reloading()
        let reloading = try #require(socket.receive())
        let lines = reloading.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines.first == "RELOADING=1")
        let stamp = try #require(lines.last.flatMap { $0.hasPrefix("MONOTONIC_USEC=") ? UInt64($0.dropFirst(15)) : nil })
        let beforeMicroseconds = UInt64(before.tv_sec) * 1_000_000 + UInt64(before.tv_nsec) / 1000
        #expect(stamp >= beforeMicroseconds && stamp < beforeMicroseconds + 1_000_000)

        notifier.stopping()
        #expect(socket.receive() == "STOPPING=1")
    }

    @Test func pacerPingsOncePerInterval() throws {
        let socket = try NotifySocket()
        setenv("NOTIFY_SOCKET", socket.path, 1)
        setenv("WATCHDOG_USEC", "2000000", 1)
        defer { unsetenv("NOTIFY_SOCKET"); unsetenv("WATCHDOG_USEC") }
        var pacer = WatchdogPacer(notifier: ServiceNotifier())
        let start = ContinuousClock.now
        pacer.loopDidRun(now: start)
        #expect(socket.receive() == "WATCHDOG=1")
        pacer.loopDidRun(now: start + .milliseconds(400))
        pacer.loopDidRun(now: start + .milliseconds(999))
        #expect(socket.isQuiet())
        pacer.loopDidRun(now: start + .milliseconds(1000))
        #expect(socket.receive() == "WATCHDOG=1")
        pacer.loopDidRun(now: start + .milliseconds(1500))
        #expect(socket.isQuiet())
    }

    @Test func watchdogIsOffWithoutWatchdogUsec() throws {
        let socket = try NotifySocket()
        setenv("NOTIFY_SOCKET", socket.path, 1)
        defer { unsetenv("NOTIFY_SOCKET") }
        let notifier = ServiceNotifier()
        #expect(notifier.watchdogInterval == nil)
        notifier.watchdog()
        #expect(socket.isQuiet())
    }

    @Test func watchdogForAnotherProcessIsNotOurs() throws {
        setenv("WATCHDOG_USEC", "2000000", 1)
        setenv("WATCHDOG_PID", "1", 1)
        defer { unsetenv("WATCHDOG_USEC"); unsetenv("WATCHDOG_PID") }
        #expect(ServiceNotifier().watchdogInterval == nil)
    }

    @Test func everythingIsANoOpWithoutNotifySocket() throws {
        unsetenv("NOTIFY_SOCKET")
        let notifier = ServiceNotifier()
        #expect(!notifier.isActive)
        notifier.ready(status: "x")  // must neither crash nor block
        notifier.stopping()
    }
}
