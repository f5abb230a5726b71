import Glibc

/// A failed system call: which call, on which path, and the `errno` it returned.
public struct SystemError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The C function that failed (`open`, `pwrite`, `rename`…).
    public var call: String
    /// The file the call worked on, if any.
    public var path: String?
    /// The `errno` value.
    public var code: Int32
    /// A sentence that replaces the `errno` text where the tool knows better (a FIFO refused, a
    /// link leaving the folder).
    public var explanation: String?

    public init(call: String, path: String?, code: Int32 = errno, explanation: String? = nil) {
        self.call = call
        self.path = path
        self.code = code
        self.explanation = explanation
    }

    /// The C library's text for the code (`No space left on device`), or the explanation.
    public var reason: String { explanation ?? String(cString: strerror(code)) }

    public var description: String {
        if let path, let explanation { return "\(path): \(explanation)" }
        if let path { return "\(path): \(call): \(reason)" }
        return "\(call): \(reason)"
    }
}

/// Runs a system call, retrying on `EINTR`, and throws ``SystemError`` for a negative result.
@discardableResult
func retryingInterrupts<T: SignedInteger>(
    _ call: String, path: String?, _ body: () -> T
) throws(SystemError) -> T {
    while true {
        let result = body()
        if result >= 0 { return result }
        if errno == EINTR { continue }
        throw SystemError(call: call, path: path)
    }
}
