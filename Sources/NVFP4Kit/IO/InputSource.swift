import Glibc

/// How an input path is read: a regular file is memory-mapped; stdin (`-`, which may be a pipe)
/// and zstd data (named `*.zst` or starting with a zstd frame) are read front to back as a stream.
/// A path that names a FIFO, socket or device is refused (``FilePolicy``).
public enum InputSource {
    /// A regular, uncompressed file.
    case mapped(MappedFile)
    /// Bytes read in order: stdin, or decompressed zstd frames.
    case stream(any ByteStream, displayPath: String)

    /// Opens `path` (`-` for stdin), sniffing for zstd.
    ///
    /// - Throws: ``FileError`` naming the path when it cannot be opened or read.
    public static func open(_ path: String) throws(FileError) -> InputSource {
        do {
            if path == "-" {
                return .stream(try sniffed(FileDescriptorStream(fd: 0, path: "<stdin>")), displayPath: "<stdin>")
            }
            let file = OwnedFileStream(fd: try FilePolicy.openRegularFile(path), path: path)
            if !path.hasSuffix(".zst") && !startsWithZstdMagic(fd: file.fd) {
                return .mapped(try MappedFile(fd: file.fd, path: path))
            }
            return .stream(try sniffed(file), displayPath: path)
        } catch let error as FileError {
            throw error
        } catch let error as SystemError {
            throw FileError(path: path, cause: error)
        } catch let error as ZstdError {
            throw FileError(path: path, cause: error)
        } catch {
            throw FileError(path: path, cause: SystemError(call: "read", path: nil, code: EIO))
        }
    }

    /// Whether a regular file begins with a zstd frame or skippable frame (read with `pread`, offset unchanged).
    static func startsWithZstdMagic(fd: Int32) -> Bool {
        var head: (UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0)
        let n = withUnsafeMutableBytes(of: &head) { pread(fd, $0.baseAddress, 4, 0) }
        return n == 4 && ZstdFrames.startsFrame([head.0, head.1, head.2, head.3])
    }

    /// Reads the first four bytes of `stream`; returns a stream that yields all of it again,
    /// decompressed if those bytes are zstd's magic number.
    static func sniffed(_ stream: any ByteStream) throws -> any ByteStream {
        var head = [UInt8](repeating: 0, count: 4)
        let n = try head.withUnsafeMutableBytes { try stream.readFully(into: $0) }
        head.removeLast(4 - n)
        let replay = ReplayStream(prefix: head, rest: stream)
        return ZstdFrames.startsFrame(head) ? try ZstdDecompressingStream(source: replay) : replay
    }
}

/// A file opened for reading, closed when this object goes away.
final class OwnedFileStream: ByteStream {
    let fd: Int32
    private let stream: FileDescriptorStream

    /// Takes ownership of `fd`.
    init(fd: Int32, path: String) {
        self.fd = fd
        stream = FileDescriptorStream(fd: fd, path: path)
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
    }

    deinit { close(fd) }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int { try stream.read(into: buffer) }
}

/// Yields `prefix`, then the rest of another stream.
public final class ReplayStream: ByteStream {
    private var prefix: [UInt8]
    private var offset = 0
    private let rest: any ByteStream

    public init(prefix: [UInt8], rest: any ByteStream) {
        self.prefix = prefix
        self.rest = rest
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard buffer.count > 0 else { return 0 }
        if offset < prefix.count {
            let n = min(buffer.count, prefix.count - offset)
            prefix.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
            offset += n
            if offset == prefix.count { (prefix, offset) = ([], 0) }
            return n
        }
        return try rest.read(into: buffer)
    }

    public var declaredRemainingBytes: UInt64? {
        rest.declaredRemainingBytes.map { $0 + UInt64(prefix.count - offset) }
    }
}

/// Keeps a copy of every byte read through it until ``stopRecording()``.
final class RecordingStream: ByteStream {
    private let source: any ByteStream
    private(set) var recorded: [UInt8] = []
    private var recording = true

    init(_ source: any ByteStream) { self.source = source }

    func stopRecording() { recording = false }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = try source.read(into: buffer)
        if recording { recorded.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[0..<n])) }
        return n
    }

    var declaredRemainingBytes: UInt64? { source.declaredRemainingBytes }
}

/// Yields at most `limit` bytes of another stream.
public final class LimitedStream: ByteStream {
    private let source: any ByteStream
    private var remaining: Int

    public init(_ source: any ByteStream, limit: Int) {
        self.source = source
        remaining = limit
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard remaining > 0, buffer.count > 0 else { return 0 }
        let n = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<min(buffer.count, remaining)]))
        remaining -= n
        return n
    }

    /// What the source declares, capped at the limit; the limit itself when the source declares
    /// nothing (a limit is set from a header's declared size).
    public var declaredRemainingBytes: UInt64? { min(UInt64(remaining), source.declaredRemainingBytes ?? UInt64(remaining)) }
}
