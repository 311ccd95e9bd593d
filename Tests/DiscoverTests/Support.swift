import Foundation
import Glibc
import Logging
import Testing
@testable import Discover
import TapCore

/// Every event a Discovery delivered, with the monotonic time it arrived.
final class EventLog: @unchecked Sendable {
    private let lock = NSCondition()
    private var entries: [(event: DiscoveryEvent, at: ContinuousClock.Instant)] = []

    func record(_ event: DiscoveryEvent) {
        lock.lock()
        entries.append((event, .now))
        lock.broadcast()
        lock.unlock()
    }

    var count: Int { lock.lock(); defer { lock.unlock() }; return entries.count }

    /// Waits up to `timeout` for an event at index ≥ `after` that `match` selects; returns it and its time.
    func wait<T>(after: Int = 0, timeout: Duration = .seconds(3),
                 _ match: (DiscoveryEvent) -> T?) -> (value: T, at: ContinuousClock.Instant)? {
        let deadline = Date().addingTimeInterval(Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18)
        lock.lock()
        defer { lock.unlock() }
        while true {
            for entry in entries[min(after, entries.count)...] {
                if let value = match(entry.event) { return (value, entry.at) }
            }
            if !lock.wait(until: deadline) { return nil }
        }
    }
}

/// A running Discovery feeding an EventLog; stopped by `stop()`.
func startDiscovery(rescan: Duration = .seconds(5)) throws -> (Discovery, EventLog) {
    let log = EventLog()
    var logger = Logger(label: "discover-test")
    logger.logLevel = ProcessInfo.processInfo.environment["DISCOVER_TEST_DEBUG"] != nil ? .debug : .warning
    let discovery = Discovery(logger: logger, rescanInterval: rescan) { log.record($0) }
    try discovery.start()
    return (discovery, log)
}

/// Runs a shell command and fails the test if it fails.
@discardableResult
func sh(_ command: String, sourceLocation: SourceLocation = #_sourceLocation) -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command]
    let pipe = Pipe()
    process.standardOutput = pipe
    try! process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    #expect(process.terminationStatus == 0, "command failed: \(command)", sourceLocation: sourceLocation)
    return String(decoding: output, as: UTF8.self)
}

func netnsInode(named name: String) -> UInt64? { NamespaceScan.netnsInode("/run/netns/\(name)") }

/// The ifindex of `interface` in netns `name` (or the host namespace if nil), from `ip -o link`.
func ifindex(_ interface: String, netns name: String?) -> UInt32? {
    let prefix = name.map { "ip -n \($0)" } ?? "ip"
    let line = sh("\(prefix) -o link show dev \(interface)")
    return line.split(separator: ":").first.flatMap { UInt32($0.trimmingCharacters(in: .whitespaces)) }
}

/// Open descriptors of this process, and what each points to.
func openDescriptors() -> [String] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    return entries.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)") }
}

/// Inodes of the network namespaces this process holds nsfs fds to (an nsfs fd opened through a
/// mount reads back as the mount path, so compare what `stat` says, on the nsfs device).
func heldNamespaceInodes() -> Set<UInt64> {
    var nsfs = stat()
    guard stat("/proc/self/ns/net", &nsfs) == 0 else { return [] }
    var inodes: Set<UInt64> = []
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
        var info = stat()
        if stat("/proc/self/fd/\(entry)", &info) == 0 && info.st_dev == nsfs.st_dev { inodes.insert(UInt64(info.st_ino)) }
    }
    return inodes
}

func milliseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
}

extension DiscoveryEvent {
    var addedNamespace: NetnsInfo? { if case .namespaceAdded(let info) = self { info } else { nil } }
    var removedNamespace: UInt64? { if case .namespaceRemoved(let inode) = self { inode } else { nil } }
    var addedInterface: InterfaceInfo? { if case .interfaceAdded(let info, _) = self { info } else { nil } }
    var removedInterface: InterfaceKey? { if case .interfaceRemoved(let key) = self { key } else { nil } }
}

/// This process's descriptors, the nsfs inodes among them, and what discovery reports, taken while
/// the reported set stays the same (other engineers' namespaces may change it in between).
func stableView(_ discovery: Discovery) throws -> (fds: [String], held: Set<UInt64>, namespaces: [NetnsInfo]) {
    for _ in 0..<20 {
        let before = discovery.snapshot().namespaces
        let fds = openDescriptors()
        let held = heldNamespaceInodes()
        if discovery.snapshot().namespaces == before { return (fds, held, before) }
        usleep(50_000)
    }
    throw SystemError("namespaces kept changing", errno: EAGAIN)
}
