/// One file that carries OpenSSL's libssl code: a shared `libssl.so*` (distro, container image, or a
/// copy bundled in an application such as a Python wheel's `libssl-<hash>.so.3`) or an executable
/// with OpenSSL linked in statically (node). Uprobes attach per inode, so (device, inode) identifies it.
public struct LibSSLTarget: Hashable, Sendable {
    public enum Kind: String, Hashable, Sendable {
        case shared
        case `static`
    }

    public enum State: Hashable, Sendable {
        /// Found and hookable; the loader has not attached it yet.
        case found
        case attached
        case refused(reason: String)
    }

    public struct FileID: Hashable, Sendable {
        public var device: UInt64
        public var inode: UInt64
        public init(device: UInt64, inode: UInt64) {
            self.device = device
            self.inode = inode
        }
    }

    /// A path that opens the file from tlstap's mount namespace (`/proc/PID/root/…` for a container's).
    public var path: String
    /// The file's path as the process that maps it sees it (what `status` shows).
    public var displayPath: String
    public var id: FileID
    public var kind: Kind
    public var version: OpenSSLVersion?
    /// Where the uprobe goes; nil when refused.
    public var hook: KeyLogHook?
    public var state: State

    public var device: UInt64 { id.device }
    public var inode: UInt64 { id.inode }

    public init(path: String, displayPath: String, id: FileID, kind: Kind, version: OpenSSLVersion?,
                hook: KeyLogHook?, state: State) {
        self.path = path
        self.displayPath = displayPath
        self.id = id
        self.kind = kind
        self.version = version
        self.hook = hook
        self.state = state
    }
}
