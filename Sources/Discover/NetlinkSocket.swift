import CLibBPF
import Glibc
import TapCore

extension OwnedFD {
    /// A non-blocking netlink socket of `family` bound to the multicast `groups`, with a receive
    /// buffer of `receiveBytes` (forced as root, so a burst of events does not overflow it).
    static func netlink(type: Int32, family: Int32, groups: UInt32, receiveBytes: Int32,
                        what: String) throws(SystemError) -> OwnedFD {
        let fd = try syscall("open \(what) socket") {
            Glibc.socket(AF_NETLINK, type | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), family)
        }
        let owned = OwnedFD(fd, what: what)
        var size = receiveBytes
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, 4) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, 4)
        }
        var address = sockaddr_nl()
        address.nl_family = sa_family_t(AF_NETLINK)
        address.nl_groups = groups
        do throws(SystemError) {
            try syscall("bind \(what) socket") {
                withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        bind(fd, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
                    }
                }
            }
        } catch {
            owned.close()
            throw error
        }
        return owned
    }
}
