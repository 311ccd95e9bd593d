import Glibc

/// A failed system or library call, with what was being done ("attach tc ingress to eth0 in netns …").
public struct SystemError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String { "\(operation): \(String(cString: strerror(errno)))" }
}

/// The one gateway for raw syscalls: retries EINTR and turns -1/errno into a typed error.
@discardableResult
public func syscall<T: FixedWidthInteger>(_ operation: @autoclosure () -> String, _ body: () -> T) throws(SystemError) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = Glibc.errno
        if code == EINTR { continue }
        throw SystemError(operation(), errno: code)
    }
}

/// For libbpf calls, which return a negative errno instead of setting errno.
@discardableResult
public func libbpfCall(_ operation: @autoclosure () -> String, _ body: () -> Int32) throws(SystemError) -> Int32 {
    let result = body()
    if result < 0 { throw SystemError(operation(), errno: -result) }
    return result
}
