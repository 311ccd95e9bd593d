import Glibc
import TapCore
import CLibBPF

/// The kernel's process events connector (NETLINK_CONNECTOR, CN_IDX_PROC): one message per fork,
/// exec and exit of every task on the host. Discovery uses it to see a process enter a new network
/// namespace (`clone(CLONE_NEWNET)` at fork, `unshare -n`/`setns` followed by exec) and to see the
/// last process of a namespace leave.
///
/// Owns: one netlink socket (closed in `close()`).
final class ProcConnector {
    enum Event {
        /// A new process (not a thread): check its namespace.
        case started(pid: Int32)
        /// A process exited (thread-group leader only).
        case exited(pid: Int32)
    }

    let socket: OwnedFD

    init() throws(SystemError) {
        // A fork storm must not overflow the queue: 4 MiB of receive buffer.
        socket = try OwnedFD.netlink(type: Int32(SOCK_DGRAM.rawValue), family: NETLINK_CONNECTOR,
                                     groups: UInt32(CN_IDX_PROC), receiveBytes: 4 << 20, what: "proc connector")
        do {
            try subscribe(socket.raw)
        } catch {
            socket.close()
            throw error
        }
    }

    /// Sends PROC_CN_MCAST_LISTEN: nlmsghdr, cn_msg, then the op.
    private func subscribe(_ fd: Int32) throws(SystemError) {
        let headerSize = MemoryLayout<nlmsghdr>.size
        let cnSize = MemoryLayout<cn_msg>.size
        let opSize = MemoryLayout<UInt32>.size
        var message = [UInt8](repeating: 0, count: headerSize + cnSize + opSize)
        message.withUnsafeMutableBytes { bytes in
            var header = nlmsghdr()
            header.nlmsg_len = UInt32(bytes.count)
            header.nlmsg_type = UInt16(NLMSG_DONE)
            header.nlmsg_pid = UInt32(getpid())
            bytes.storeBytes(of: header, toByteOffset: 0, as: nlmsghdr.self)
            var cn = cn_msg()
            cn.id.idx = UInt32(CN_IDX_PROC)
            cn.id.val = UInt32(CN_VAL_PROC)
            cn.len = UInt16(opSize)
            bytes.storeBytes(of: cn, toByteOffset: headerSize, as: cn_msg.self)
            bytes.storeBytes(of: UInt32(PROC_CN_MCAST_LISTEN.rawValue), toByteOffset: headerSize + cnSize, as: UInt32.self)
        }
        let sent = message.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
        if sent < 0 { throw SystemError("subscribe to proc connector", errno: errno) }
    }

    /// Reads every queued message. Returns nil if the kernel dropped events (ENOBUFS): the caller
    /// must rescan, since a missed fork or exit cannot be recovered from the stream.
    func drain() -> [Event]? {
        var events: [Event] = []
        var overflowed = false
        var buffer = [UInt8](repeating: 0, count: 8192)
        let headerSize = MemoryLayout<nlmsghdr>.size
        let dataOffset = headerSize + MemoryLayout<cn_msg>.size
        // proc_event: what (u32), cpu (u32), timestamp_ns (u64), then the union.
        let unionOffset = 16
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.recv(socket.raw, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR { continue }
                if errno == ENOBUFS { overflowed = true; continue }
                break
            }
            guard count >= dataOffset + unionOffset + 8 else { continue }
            buffer.withUnsafeBytes { bytes in
                let what = bytes.loadUnaligned(fromByteOffset: dataOffset, as: UInt32.self)
                let body = dataOffset + unionOffset
                func pid(_ field: Int) -> Int32 { bytes.loadUnaligned(fromByteOffset: body + 4 * field, as: Int32.self) }
                switch what {
                case UInt32(PROC_EVENT_FORK.rawValue) where count >= body + 16:
                    // fork: parent_pid, parent_tgid, child_pid, child_tgid; a new thread has pid != tgid.
                    if pid(2) == pid(3) { events.append(.started(pid: pid(2))) }
                case UInt32(PROC_EVENT_EXEC.rawValue):
                    events.append(.started(pid: pid(1)))
                case UInt32(PROC_EVENT_EXIT.rawValue):
                    if pid(0) == pid(1) { events.append(.exited(pid: pid(0))) }
                default:
                    break
                }
            }
        }
        return overflowed ? nil : events
    }

    func close() { socket.close() }
}
