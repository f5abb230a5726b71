import CNVFP4Kernel
import Crypto
import Glibc

/// Where output bytes go, written front to back and hashed on the way.
///
/// ``AtomicFileSink`` writes a hidden temporary file beside the destination and moves it into
/// place only on ``commit()``; ``StandardOutputSink`` streams to stdout.
public protocol OutputSink: AnyObject {
    /// The destination as the user named it.
    var displayPath: String { get }
    /// Appends bytes.
    func write(_ bytes: UnsafeRawBufferPointer) throws
    /// Flushes and makes the output durable, but not yet visible; returns its SHA-256 (`nil` when
    /// the sink was made without hashing) and size.
    func seal() throws -> (sha256: String?, byteCount: UInt64)
    /// Makes a sealed output visible under its name.
    func publish() throws
    /// Discards everything written; nothing is left behind.
    func abort()
}

extension OutputSink {
    /// Seals and publishes in one step; returns the SHA-256 and size.
    public func commit() throws -> (sha256: String?, byteCount: UInt64) {
        let result = try seal()
        try publish()
        return result
    }

    /// Appends an array's bytes.
    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }
}

/// Buffered sequential writes to a descriptor, with SHA-256 of everything written (optional).
final class BufferedDescriptorWriter {
    let fd: Int32
    let path: String
    private var buffer: UnsafeMutableRawBufferPointer
    private var used = 0
    private(set) var written: UInt64 = 0
    private var hasher: SHA256?
    /// Start the kernel's writeback of each written range at once (`sync_file_range`), so dirty
    /// pages never pile up and the final `fsync` has little left to wait for.
    private let startsWriteback: Bool
    private var flushedOffset: Int64 = 0
    /// Whether writes bypass the page cache (`O_DIRECT`); then every write but the last is a whole
    /// number of blocks from the aligned buffer.
    private(set) var isDirect = false
    /// Bytes written around the page cache.
    private(set) var directByteCount: UInt64 = 0
    /// The alignment direct I/O needs of addresses, offsets and lengths.
    static let directBlock = 4096

    /// - Parameters:
    ///   - direct: Write around the page cache (`O_DIRECT`) when the file system allows it.
    init(fd: Int32, path: String, hashing: Bool = true, startsWriteback: Bool = false, direct: Bool = false, capacity: Int = 8 << 20) {
        self.fd = fd
        self.path = path
        self.startsWriteback = startsWriteback
        hasher = hashing ? SHA256() : nil
        buffer = .allocate(byteCount: capacity, alignment: Self.directBlock)
        if direct { isDirect = nvfp4_set_direct_io(fd, 1) == 0 }
    }

    deinit { buffer.deallocate() }

    func write(_ bytes: UnsafeRawBufferPointer) throws(SystemError) {
        hasher?.update(bufferPointer: bytes)
        written += UInt64(bytes.count)
        if isDirect {
            try stage(bytes)
            return
        }
        // Large writes go straight to the descriptor: copying them first only costs time.
        if bytes.count >= buffer.count / 2 {
            try flush()
            try writeAll(bytes)
            return
        }
        if used + bytes.count <= buffer.count {
            if bytes.count > 0 {
                (buffer.baseAddress! + used).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            }
            used += bytes.count
            return
        }
        try flush()
        buffer.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        used = bytes.count
    }

    func flush() throws(SystemError) {
        guard used > 0 else { return }
        if isDirect {
            let whole = used / Self.directBlock * Self.directBlock
            if whole > 0 {
                try writeAll(UnsafeRawBufferPointer(rebasing: buffer[0..<whole]))
                buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + whole, byteCount: used - whole)
                used -= whole
            }
            guard used > 0 else { return }
            // A last partial block cannot go around the cache: from here on the file is written normally.
            leaveDirectMode()
        }
        try writeAll(UnsafeRawBufferPointer(rebasing: buffer[0..<used]))
        used = 0
    }

    /// Direct mode: gathers bytes into the aligned buffer and writes it whenever it is full.
    private func stage(_ bytes: UnsafeRawBufferPointer) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let n = min(buffer.count - used, bytes.count - offset)
            (buffer.baseAddress! + used).copyMemory(from: bytes.baseAddress! + offset, byteCount: n)
            used += n
            offset += n
            if used == buffer.count {
                try writeAll(UnsafeRawBufferPointer(buffer))
                used = 0
            }
        }
    }

    private func leaveDirectMode() {
        isDirect = false
        _ = nvfp4_set_direct_io(fd, 0)
    }

    /// The SHA-256 of everything written, or `nil` without hashing.
    func digest() -> String? { hasher?.finalize().hexString }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let n: Int
            do {
                n = try retryingInterrupts("write", path: path) {
                    Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                }
            } catch where isDirect && error.code == EINVAL {
                // The file system refuses direct I/O (or a short write broke the alignment):
                // write normally from here on.
                leaveDirectMode()
                continue
            }
            offset += n
        }
        if isDirect { directByteCount += UInt64(bytes.count) }
        if startsWriteback && !isDirect {
            // Advisory: a failure here changes nothing (fsync reports real write errors).
            _ = nvfp4_start_writeback(fd, flushedOffset, Int64(bytes.count))
        }
        flushedOffset += Int64(bytes.count)
    }
}

/// How an output file's data reaches the disk (`--io`); the bytes written do not depend on it.
public enum OutputIO: String, Sendable, CaseIterable {
    /// Around the page cache (`O_DIRECT`), from an aligned buffer, where the file system allows it
    /// (else as `.buffered`). The output is fsynced before it is published anyway, so the cache
    /// copy only costs time; and a large model's output does not evict the input from the cache.
    case direct
    /// Through the page cache, as `cp` writes: the output stays cached for an immediate re-read.
    case buffered
}

/// Writes a file atomically: a temporary sibling (``TemporaryName``), `fsync`, then a move into place.
///
/// Without `replace`, the move uses `link(2)`, which fails if the destination appeared meanwhile,
/// so an existing file is never clobbered. Interrupting signals remove the temporary file
/// (``TemporaryFileRegistry``).
public final class AtomicFileSink: OutputSink {
    public let displayPath: String
    private let destination: String
    private let temporaryPath: String
    private let replace: Bool
    private let writer: BufferedDescriptorWriter
    private var slot: Int?
    private var finished = false
    private var sealed = false

    /// Creates the temporary file.
    ///
    /// - Parameters:
    ///   - path: The destination.
    ///   - replace: Whether an existing destination may be replaced (`--force`).
    ///   - hashing: Whether ``seal()`` reports the output's SHA-256.
    ///   - io: Whether the data goes through the page cache or around it.
    ///   - permissions: The file's mode before the umask (default 0666, as a plain create).
    /// - Throws: ``SystemError`` if the destination exists (without `replace`) or the folder is not writable.
    public init(path: String, replace: Bool, hashing: Bool = true, io: OutputIO = .buffered, permissions: mode_t = 0o666) throws(SystemError) {
        displayPath = path
        destination = path
        self.replace = replace
        if !replace, access(path, F_OK) == 0 { throw SystemError(call: "create", path: path, code: EEXIST) }
        var template = TemporaryName.template(for: path)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw SystemError(call: "create", path: path) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        temporaryPath = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        slot = TemporaryFileRegistry.register(temporaryPath)
        // mkstemp creates 0600; give the file the permissions a plain create would.
        let mask = umask(0)
        umask(mask)
        fchmod(fd, permissions & 0o777 & ~mask)
        writer = BufferedDescriptorWriter(fd: fd, path: path, hashing: hashing, startsWriteback: true, direct: io == .direct)
    }

    deinit {
        if !finished { abort() }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws { try writer.write(bytes) }

    /// Bytes written so far around the page cache (`.direct`, where the file system allows it).
    public var directByteCount: UInt64 { writer.directByteCount }

    public func seal() throws -> (sha256: String?, byteCount: UInt64) {
        do {
            try writer.flush()
            try retryingInterrupts("fsync", path: displayPath) { fsync(writer.fd) }
        } catch {
            finished = true
            close(writer.fd)
            unlink(temporaryPath)
            TemporaryFileRegistry.unregister(slot)
            throw error
        }
        // Never retried: on Linux the descriptor is released even when close reports EINTR, and a
        // retry could close a descriptor another thread has just opened. (fsync above reported
        // any write error.)
        if close(writer.fd) != 0 && errno != EINTR {
            let error = SystemError(call: "close", path: displayPath)
            finished = true
            unlink(temporaryPath)
            TemporaryFileRegistry.unregister(slot)
            throw error
        }
        sealed = true
        return (writer.digest(), writer.written)
    }

    public func publish() throws {
        precondition(sealed && !finished, "publish() needs a sealed, unpublished sink")
        do {
            if replace {
                try retryingInterrupts("rename", path: displayPath) { rename(temporaryPath, destination) }
            } else {
                try retryingInterrupts("link", path: displayPath) { link(temporaryPath, destination) }
                unlink(temporaryPath)
            }
        } catch {
            finished = true
            unlink(temporaryPath)
            TemporaryFileRegistry.unregister(slot)
            throw error
        }
        finished = true
        TemporaryFileRegistry.unregister(slot)
        syncDirectory(of: destination)
    }

    public func abort() {
        guard !finished else { return }
        finished = true
        if !sealed { close(writer.fd) }
        unlink(temporaryPath)
        TemporaryFileRegistry.unregister(slot)
    }
}

/// Streams to standard output.
public final class StandardOutputSink: OutputSink {
    public let displayPath = "<stdout>"
    private let writer: BufferedDescriptorWriter

    /// - Parameter hashing: Whether ``seal()`` reports the SHA-256 of everything written.
    public init(hashing: Bool = true) {
        writer = BufferedDescriptorWriter(fd: 1, path: "<stdout>", hashing: hashing)
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws { try writer.write(bytes) }

    public func seal() throws -> (sha256: String?, byteCount: UInt64) {
        try writer.flush()
        return (writer.digest(), writer.written)
    }

    public func publish() throws {}

    public func abort() { try? writer.flush() }
}

/// Splits a path into its folder (`.` when there is none) and file name.
func splitPath(_ path: String) -> (directory: String, name: String) {
    guard let slash = path.lastIndex(of: "/") else { return (".", path) }
    let directory = String(path[..<slash])
    return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
}

/// Makes a rename durable by syncing the folder that holds it.
private func syncDirectory(of path: String) {
    let fd = open(splitPath(path).directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return }
    fsync(fd)
    close(fd)
}

/// Writes a small text file to a sealed, unpublished sink (or stdout for `-`); the caller publishes it.
public func sealedTextFile(_ text: String, to path: String, replace: Bool) throws -> any OutputSink {
    try sealedFile(to: path, replace: replace) { try $0.write(Array(text.utf8)) }
}

/// A sealed, unpublished sink (or stdout for `-`) that `write` filled; aborted if `write` throws.
/// The caller publishes it.
func sealedFile(to path: String, replace: Bool, _ write: (any OutputSink) throws -> Void) throws -> any OutputSink {
    let sink: any OutputSink = path == "-" ? StandardOutputSink() : try AtomicFileSink(path: path, replace: replace)
    do {
        try write(sink)
        _ = try sink.seal()
    } catch {
        sink.abort()
        throw error
    }
    return sink
}
