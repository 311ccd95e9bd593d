import TapCore
import Testing

@Suite struct DedicatedThreadTests {
    /// What the thread is called inside its body, as ps -T and top -H read it.
    func nameSeenInside(_ name: String) throws -> String {
        final class Seen: @unchecked Sendable { var name = "" }
        let seen = Seen()
        let thread = try DedicatedThread(name: name) {
            // Where ps -T reads it (/proc/PID/task/TID/comm), seen from the thread itself.
            seen.name = ((try? readWholeFile("/proc/thread-self/comm")) ?? "").trimmingSuffix("\n")
        }
        thread.join()
        return seen.name
    }

    @Test func theThreadCarriesItsName() throws {
        #expect(try nameSeenInside("tlstap-pipeline") == "tlstap-pipeline")
        // The kernel keeps 15 bytes; a longer name is cut, not refused.
        #expect(try nameSeenInside("tlstap-a-very-long-name") == "tlstap-a-very-l")
    }
}

private extension String {
    func trimmingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}
