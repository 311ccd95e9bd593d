import Glibc
import TapCore
import CLibBPF

/// What rtnetlink says about one link.
struct LinkMessage: Equatable {
    enum Kind { case added, removed }
    var kind: Kind
    var ifindex: UInt32
    var name: String
    var arphrd: UInt16
}

/// An rtnetlink socket (NETLINK_ROUTE, RTMGRP_LINK) created inside one network namespace: a socket
/// belongs to the namespace it was created in, so its dump and notifications cover that namespace.
/// It also answers `SO_NETNS_COOKIE` for the namespace. Note that an open socket keeps its namespace
/// alive, so its owner must close it once nothing else refers to the namespace.
///
/// Owns: the socket (closed in `close()`).
final class RouteSocket {
    let socket: OwnedFD
    private var sequence: UInt32 = 1

    /// Opens the socket on the calling thread, in whatever namespace that thread is in.
    init() throws(SystemError) {
        socket = try OwnedFD.netlink(type: Int32(SOCK_RAW.rawValue), family: NETLINK_ROUTE,
                                     groups: UInt32(RTMGRP_LINK), receiveBytes: 1 << 20, what: "rtnetlink")
    }

    /// The namespace's cookie, the value `bpf_get_netns_cookie` returns for packets in it.
    func netnsCookie() throws(SystemError) -> UInt64 {
        var cookie: UInt64 = 0
        var length = socklen_t(8)
        try syscall("getsockopt SO_NETNS_COOKIE") { getsockopt(socket.raw, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &length) }
        return cookie
    }

    /// Asks for every link (RTM_GETLINK dump). The answers arrive through `drain()` like notifications,
    /// ending in NLMSG_DONE.
    func requestDump() throws(SystemError) {
        let headerSize = MemoryLayout<nlmsghdr>.size
        var message = [UInt8](repeating: 0, count: headerSize + MemoryLayout<ifinfomsg>.size)
        sequence &+= 1
        let seq = sequence
        message.withUnsafeMutableBytes { bytes in
            var header = nlmsghdr()
            header.nlmsg_len = UInt32(bytes.count)
            header.nlmsg_type = UInt16(RTM_GETLINK)
            header.nlmsg_flags = UInt16(NLM_F_REQUEST | NLM_F_DUMP)
            header.nlmsg_seq = seq
            bytes.storeBytes(of: header, toByteOffset: 0, as: nlmsghdr.self)
            var info = ifinfomsg()
            info.ifi_family = UInt8(AF_UNSPEC)
            bytes.storeBytes(of: info, toByteOffset: headerSize, as: ifinfomsg.self)
        }
        let sent = message.withUnsafeBytes { Glibc.send(socket.raw, $0.baseAddress, $0.count, 0) }
        if sent < 0 { throw SystemError("request link dump", errno: errno) }
    }

    struct Batch {
        var links: [LinkMessage] = []
        /// A dump finished in this batch: the links it listed are the complete set.
        var dumpDone = false
        /// The kernel dropped notifications; the caller must dump again to resynchronise.
        var overflowed = false
    }

    /// Reads everything queued without blocking.
    func drain() -> Batch {
        var batch = Batch()
        var buffer = [UInt8](repeating: 0, count: 32768)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.recv(socket.raw, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR { continue }
                if errno == ENOBUFS { batch.overflowed = true; continue }
                return batch
            }
            if count == 0 { return batch }
            buffer.withUnsafeBytes { parse(UnsafeRawBufferPointer(rebasing: $0[0..<count]), into: &batch) }
        }
    }

    /// Blocks (polling this one socket) until a dump completes; for the synchronous initial inventory.
    func drainUntilDumpDone(timeoutMS: Int32 = 2000) throws(SystemError) -> Batch {
        var total = Batch()
        while !total.dumpDone {
            var descriptor = pollfd(fd: socket.raw, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, timeoutMS)
            if ready == 0 { throw SystemError("wait for link dump", errno: ETIMEDOUT) }
            if ready < 0 { if errno == EINTR { continue }; throw SystemError("wait for link dump", errno: errno) }
            let batch = drain()
            total.links += batch.links
            total.dumpDone = batch.dumpDone
            total.overflowed = total.overflowed || batch.overflowed
        }
        return total
    }

    private func parse(_ bytes: UnsafeRawBufferPointer, into batch: inout Batch) {
        let headerSize = MemoryLayout<nlmsghdr>.size
        var offset = 0
        while offset + headerSize <= bytes.count {
            let header = bytes.loadUnaligned(fromByteOffset: offset, as: nlmsghdr.self)
            let length = Int(header.nlmsg_len)
            guard length >= headerSize, offset + length <= bytes.count else { return }
            let type = Int32(header.nlmsg_type)
            if type == NLMSG_DONE {
                batch.dumpDone = true
            } else if type == RTM_NEWLINK || type == RTM_DELLINK {
                let body = UnsafeRawBufferPointer(rebasing: bytes[(offset + headerSize)..<(offset + length)])
                if var link = parseLink(body) {
                    link.kind = type == RTM_NEWLINK ? .added : .removed
                    batch.links.append(link)
                }
            }
            offset += align(length)
        }
    }

    private func parseLink(_ body: UnsafeRawBufferPointer) -> LinkMessage? {
        let infoSize = MemoryLayout<ifinfomsg>.size
        guard body.count >= infoSize else { return nil }
        let info = body.loadUnaligned(fromByteOffset: 0, as: ifinfomsg.self)
        var name = ""
        var offset = align(infoSize)
        let attributeHeader = MemoryLayout<rtattr>.size
        while offset + attributeHeader <= body.count {
            let attribute = body.loadUnaligned(fromByteOffset: offset, as: rtattr.self)
            let length = Int(attribute.rta_len)
            guard length >= attributeHeader, offset + length <= body.count else { break }
            if Int32(attribute.rta_type) == IFLA_IFNAME {
                let value = UnsafeRawBufferPointer(rebasing: body[(offset + attributeHeader)..<(offset + length)])
                name = String(decoding: value.prefix { $0 != 0 }, as: UTF8.self)
            }
            offset += align(length)
        }
        return LinkMessage(kind: .added, ifindex: UInt32(bitPattern: info.ifi_index), name: name, arphrd: info.ifi_type)
    }

    private func align(_ length: Int) -> Int {
        let alignment = Int(NLMSG_ALIGNTO)
        return (length + alignment - 1) & ~(alignment - 1)
    }

    func close() { socket.close() }
}
