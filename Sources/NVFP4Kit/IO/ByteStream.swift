import Glibc

/// A source of bytes read front to back: a pipe, stdin, or a decompressor.
public protocol ByteStream: AnyObject {
    /// Fills as much of `buffer` as is available.
    ///
    /// - Returns: The number of bytes read; 0 only at the end of the stream.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int

    /// How many more bytes the stream's own framing says it will yield at least (a zstd frame
    /// header's content size), or `nil` when nothing says; checked against free space before a
    /// stream is spooled to a file.
    var declaredRemainingBytes: UInt64? { get }
}

extension ByteStream {
    public var declaredRemainingBytes: UInt64? { nil }

    /// Reads until `buffer` is full or the stream ends.
    ///
    /// - Returns: The number of bytes read; less than `buffer.count` only at the end of the stream.
    public func readFully(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        var filled = 0
        while filled < buffer.count {
            let n = try read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...]))
            if n == 0 { break }
            filled += n
        }
        return filled
    }
}

/// Reads a file descriptor with `read(2)`, retrying on `EINTR`.
public final class FileDescriptorStream: ByteStream {
    private let fd: Int32
    private let path: String

    /// Wraps an open descriptor; the caller keeps ownership.
    public init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard buffer.count > 0 else { return 0 }
        let n = try retryingInterrupts("read", path: path) { Glibc.read(fd, buffer.baseAddress, buffer.count) }
        return n
    }
}
