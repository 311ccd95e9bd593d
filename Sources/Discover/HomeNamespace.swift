import Glibc
import TapCore
import CLibBPF

/// Lets the discovery thread step into a namespace for one call (to open a socket there) and back.
/// `setns` moves only the calling thread, and the discovery thread does nothing else meanwhile, so no
/// other work can run in the wrong namespace. (Discovery does not use `NetnsThread.run`, whose
/// `withoutActuallyEscaping` check can trap when its worker still holds the finished job.)
///
/// Owns: an fd to the namespace the thread returns to (closed in `close()`).
final class HomeNamespace {
    private let home: OwnedFD

    /// Remembers the calling thread's current namespace as home.
    init() throws(SystemError) {
        home = try OwnedFD.open("/proc/thread-self/ns/net", what: "home netns")
    }

    /// Runs `body` inside the namespace `namespaceFD` refers to, then returns home.
    func run<T>(inside namespaceFD: Int32, what: String, _ body: () throws -> T) throws -> T {
        try syscall("enter \(what)") { tlstap_setns(namespaceFD, tlstap_clone_newnet) }
        defer {
            // Failing to return would leave this thread in a foreign namespace for everything after.
            if tlstap_setns(home.raw, tlstap_clone_newnet) != 0 {
                fatalError("cannot return to the home network namespace: errno \(errno)")
            }
        }
        return try body()
    }

    func close() { home.close() }
}
