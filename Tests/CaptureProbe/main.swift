// Test helper: attaches the capture programs to one interface with the production code, says
// "attached" on stdout and sleeps until killed. Usage: capture-probe NETNS_PATH IFINDEX IFNAME
import Attach
import Discover
import Glibc
import TapCore

func say(_ text: String, to fd: Int32) {
    var text = text + "\n"
    text.withUTF8 { _ = write(fd, $0.baseAddress, $0.count) }
}

let args = CommandLine.arguments
guard args.count == 4, let ifindex = UInt32(args[2]) else {
    say("usage: capture-probe NETNS_PATH IFINDEX IFNAME", to: 2)
    exit(2)
}
do {
    let program = try CaptureProgram(configuration: .init(snaplen: 128, ringBytes: 1 << 16))
    let thread = try NetnsThread(name: "capture-probe")
    let attachment = try TCAttachment.attach(try program.instance(forNetnsCookie: 0), directions: [.inbound, .outbound],
                                             netnsPath: args[1], netnsCookie: 0, key: InterfaceKey(netnsInode: 0, ifindex: ifindex),
                                             ifname: args[3], using: thread)
    say("attached", to: 1)
    withExtendedLifetime(attachment) { while true { pause() } } // never detaches: killed with -9
} catch {
    say("capture-probe: \(error)", to: 2)
    exit(1)
}
