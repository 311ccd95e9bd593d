import Glibc
import TapCore

/// Where a function starts in a shared object's file, for a uprobe at that offset. libbpf 1.1's own
/// lookup by name refuses libc's `dlopen`, which glibc 2.34+ exports twice (dlopen@GLIBC_2.2.5 and
/// dlopen@@GLIBC_2.34, the same code), so tlstap reads the symbol itself.
public enum ELFFunction {
    public static func fileOffset(of function: String, in path: String) throws(SystemError) -> UInt64 {
        let image = try ELFImage(path: path)
        guard let address = image.functionAddress(named: function), let offset = image.fileOffset(ofAddress: address) else {
            throw SystemError("find function \(function) in \(path)", errno: ENOENT)
        }
        return UInt64(offset)
    }
}
