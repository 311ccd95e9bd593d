import Glibc
import TapCore
import CLibBPF

/// The epoll set the discovery thread waits on, plus an eventfd that wakes it for `stop()`.
/// Owns: the epoll fd and the eventfd. The descriptors it watches belong to their own owners, who
/// must `remove` them before closing.
final class EventLoop {
    private let epoll: OwnedFD
    private let wakeup: OwnedFD
    /// The token `wait` returns for the wake-up eventfd.
    static let wakeToken: UInt64 = .max

    init() throws(SystemError) {
        epoll = OwnedFD(try syscall("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }, what: "epoll")
        do {
            wakeup = OwnedFD(try syscall("eventfd") { eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK)) }, what: "eventfd")
        } catch {
            epoll.close()
            throw error
        }
        do {
            try add(wakeup.raw, token: Self.wakeToken)
        } catch {
            close()
            throw error
        }
    }

    /// Watches `fd` for input (and `EPOLLPRI`, which is how /proc/self/mountinfo signals a change).
    func add(_ fd: Int32, token: UInt64, priority: Bool = false) throws(SystemError) {
        var event = epoll_event()
        event.events = priority ? UInt32(EPOLLPRI.rawValue) | UInt32(EPOLLERR.rawValue) : UInt32(EPOLLIN.rawValue)
        event.data.u64 = token
        try syscall("epoll add fd \(fd)") { epoll_ctl(epoll.raw, EPOLL_CTL_ADD, fd, &event) }
    }

    func remove(_ fd: Int32) {
        _ = epoll_ctl(epoll.raw, EPOLL_CTL_DEL, fd, nil)
    }

    /// Blocks up to `timeoutMS` and returns the tokens of ready descriptors (empty on timeout).
    func wait(timeoutMS: Int32) -> [UInt64] {
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        let count = events.withUnsafeMutableBufferPointer { epoll_wait(epoll.raw, $0.baseAddress, 64, timeoutMS) }
        guard count > 0 else { return [] }
        return events[0..<Int(count)].map { $0.data.u64 }
    }

    /// Wakes a thread blocked in `wait`; safe from any thread.
    func wake() {
        var one: UInt64 = 1
        _ = Glibc.write(wakeup.raw, &one, 8)
    }

    func drainWakeups() {
        var value: UInt64 = 0
        _ = Glibc.read(wakeup.raw, &value, 8)
    }

    func close() {
        wakeup.close()
        epoll.close()
    }
}
