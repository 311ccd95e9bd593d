import Glibc
import Logging
import TapCore

/// Finds the files that carry OpenSSL's TLS code, so the loader can put one uprobe on each:
/// - at start: every `libssl.so*` that `ldconfig -p` and the usual library directories list (so a
///   program that is not running yet is covered before it starts), large executables on the usual
///   bin directories that export `SSL_*` (static OpenSSL, e.g. node), and every executable mapping of
///   every process (`/proc/*/maps`), including containers through `/proc/PID/root/…`;
/// - later, `rescan(pids:)` for processes that just exec'd or loaded libraries: only their maps.
///
/// Each file is examined once per (device, inode): targets are remembered, and so are files that turned
/// out not to be OpenSSL, which keeps a rescan cheap. Not thread-safe: one owner calls it.
public final class LibSSLScanner {
    private let logger: Logger
    private var targets: [LibSSLTarget.FileID: LibSSLTarget] = [:]
    private var notOpenSSL: Set<LibSSLTarget.FileID> = []
    private let procRoot: String

    /// Static OpenSSL builds are large; smaller executables on the bin directories are not opened.
    static let staticExecutableMinimumBytes = 8 << 20

    public init(logger: Logger, procRoot: String = "/proc") {
        self.logger = logger
        self.procRoot = procRoot
    }

    /// Everything known so far, refused ones included (for `status`).
    public var allTargets: [LibSSLTarget] { targets.values.sorted { $0.displayPath < $1.displayPath } }

    /// Records what the loader did with a target (attached, or refused because the attach failed).
    public func update(_ target: LibSSLTarget) { targets[target.id] = target }

    /// The start-up scan; returns the targets found (new ones only, so calling twice returns nothing new).
    public func initialScan() -> [LibSSLTarget] {
        var found: [LibSSLTarget] = []
        for path in systemLibSSLPaths() {
            if let target = examine(path: path, displayPath: path) { found.append(target) }
        }
        for path in staticExecutableCandidates() {
            if let target = examine(path: path, displayPath: path, staticOnly: true) { found.append(target) }
        }
        found += rescan(pids: allPIDs())
        return found
    }

    /// Looks only at these processes' executable mappings; returns targets not seen before. Cheap for
    /// files already examined (one `stat` each), so it can run on every exec event.
    public func rescan(pids: [Int32]) -> [LibSSLTarget] {
        var found: [LibSSLTarget] = []
        for pid in pids {
            for mapped in executableMappings(of: pid) {
                let id = LibSSLTarget.FileID(device: mapped.device, inode: mapped.inode)
                if targets[id] != nil || notOpenSSL.contains(id) { continue }
                let root = "\(procRoot)/\(pid)/root"
                if let target = examine(path: root + mapped.path, displayPath: mapped.path, pid: pid) { found.append(target) }
            }
        }
        return found
    }

    // MARK: - Examining one file

    private func examine(path: String, displayPath: String, staticOnly: Bool = false, pid: Int32? = nil) -> LibSSLTarget? {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        let id = LibSSLTarget.FileID(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
        if targets[id] != nil || notOpenSSL.contains(id) { return nil }
        let name = displayPath.split(separator: "/").last.map(String.init) ?? displayPath
        let looksShared = name.hasPrefix("libssl") && name.contains(".so")
        if staticOnly && looksShared { return nil }
        if name.hasPrefix("libcrypto") { notOpenSSL.insert(id); return nil }

        let image: ELFImage
        do { image = try ELFImage(path: path) } catch {
            notOpenSSL.insert(id)
            return nil
        }
        // OpenSSL exports SSL_CTX_new; NSS's libssl3.so (also "libssl…") does not.
        let kind: LibSSLTarget.Kind
        if !image.exportsFunction(named: "SSL_CTX_new") {
            notOpenSSL.insert(id)
            return nil
        } else if looksShared {
            kind = .shared
        } else {
            kind = .static
        }
        let version = kind == .static ? OpenSSLVersion.find(in: image) : siblingLibcryptoVersion(of: path)
        var target = LibSSLTarget(path: path, displayPath: displayPath, id: id, kind: kind, version: version, hook: nil, state: .found)
        var metadata: Logger.Metadata = ["library": "\(displayPath)", "openssl": "\(version?.text ?? "unknown")"]
        if let pid { metadata["pid"] = "\(pid)" }
        switch KeyLogHookFinder.find(in: image, version: version) {
        case .success(let hook):
            target.hook = hook
            logger.info("found OpenSSL target (\(kind.rawValue)), hook at \(hook.foundBy)", metadata: metadata)
        case .failure(let refusal):
            target.state = .refused(reason: refusal.reason)
            logger.warning("refusing OpenSSL target \(displayPath) (\(version?.text ?? "unknown version")): \(refusal.reason)", metadata: metadata)
        }
        targets[id] = target
        return target
    }

    /// libssl 3.x holds no version text; its libcrypto beside it does (same directory, same `.so` suffix,
    /// or any `libcrypto*` there for bundles that rename both with hashes).
    private func siblingLibcryptoVersion(of path: String) -> OpenSSLVersion? {
        guard let slash = path.lastIndex(of: "/") else { return nil }
        let directory = String(path[..<slash]), name = String(path[path.index(after: slash)...])
        let suffix = name.firstRange(of: ".so").map { String(name[$0.lowerBound...]) } ?? ""
        let candidates = directoryEntries(directory).filter { $0.hasPrefix("libcrypto") && $0.contains(".so") }
            .sorted { ($0.hasSuffix(suffix) ? 0 : 1, $0) < ($1.hasSuffix(suffix) ? 0 : 1, $1) }
        for candidate in candidates {
            if let image = try? ELFImage(path: directory + "/" + candidate), let version = OpenSSLVersion.find(in: image) {
                return version
            }
        }
        return nil
    }

    // MARK: - Where to look

    struct Mapping {
        var device: UInt64
        var inode: UInt64
        var path: String
    }

    /// Executable file mappings of one process, from `/proc/PID/maps`; empty if it is gone.
    func executableMappings(of pid: Int32) -> [Mapping] {
        guard let text = try? readWholeFile("\(procRoot)/\(pid)/maps") else { return [] }
        var seen: Set<UInt64> = []
        var result: [Mapping] = []
        for line in text.split(separator: "\n") {
            // address perms offset dev inode path
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count == 6, fields[1].contains("x"), let inode = UInt64(fields[4]), inode != 0 else { continue }
            let path = fields[5].trimmingPrefixSpaces()
            guard path.hasPrefix("/"), !path.hasSuffix(" (deleted)") else { continue }
            let dev = fields[3].split(separator: ":").compactMap { UInt64($0, radix: 16) }
            guard dev.count == 2, seen.insert(inode).inserted else { continue }
            result.append(Mapping(device: encodeDevice(major: dev[0], minor: dev[1]), inode: inode, path: path))
        }
        return result
    }

    private func allPIDs() -> [Int32] {
        directoryEntries(procRoot).compactMap { Int32($0) }
    }

    /// `ldconfig -p` entries named libssl, plus libssl files in the usual library directories.
    private func systemLibSSLPaths() -> [String] {
        var paths: [String] = []
        if let pipe = popen("ldconfig -p 2>/dev/null", "r") {
            var line = [CChar](repeating: 0, count: 4096)
            while fgets(&line, Int32(line.count), pipe) != nil {
                let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                guard text.contains("libssl"), let arrow = text.firstRange(of: "=> ") else { continue }
                paths.append(text[arrow.upperBound...].trimmingCharacters())
            }
            pclose(pipe)
        }
        for directory in ["/lib", "/usr/lib", "/usr/local/lib", "/lib64", "/usr/lib64",
                          "/lib/\(Self.multiarch)", "/usr/lib/\(Self.multiarch)"] {
            for name in directoryEntries(directory) where name.hasPrefix("libssl") && name.contains(".so") {
                paths.append(directory + "/" + name)
            }
        }
        return paths
    }

    /// Large executables in the bin directories: the candidates for statically linked OpenSSL.
    private func staticExecutableCandidates() -> [String] {
        var paths: [String] = []
        for directory in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"] {
            for name in directoryEntries(directory) {
                let path = directory + "/" + name
                var info = stat()
                guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, info.st_mode & S_IXUSR != 0,
                      Int(info.st_size) >= Self.staticExecutableMinimumBytes else { continue }
                paths.append(path)
            }
        }
        return paths
    }

    static var multiarch: String {
        #if arch(x86_64)
        return "x86_64-linux-gnu"
        #elseif arch(arm64)
        return "aarch64-linux-gnu"
        #else
        return "unknown-linux-gnu"
        #endif
    }
}

/// glibc's makedev(3) encoding, which is what stat's st_dev holds (the macro is not imported).
func encodeDevice(major: UInt64, minor: UInt64) -> UInt64 {
    (major & 0xfffff000) << 32 | (major & 0xfff) << 8 | (minor & 0xffffff00) << 12 | (minor & 0xff)
}

// MARK: - Small file helpers (no Foundation in this module)

func directoryEntries(_ path: String) -> [String] {
    guard let directory = opendir(path) else { return [] }
    defer { closedir(directory) }
    var names: [String] = []
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

extension StringProtocol {
    func trimmingPrefixSpaces() -> String { String(drop { $0 == " " }) }
    func trimmingCharacters() -> String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\n" || $0 == "\t" }.reversed())
    }
}
