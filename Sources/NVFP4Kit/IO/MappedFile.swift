import Glibc

/// A read-only memory mapping of a whole regular file.
///
/// Pages are requested sequentially (`MADV_SEQUENTIAL`) and can be released behind the reader
/// (``release(_:)``), so resident memory stays bounded however large the file is.
public final class MappedFile: @unchecked Sendable {
    /// The path the file was opened from.
    public let path: String
    /// The mapped bytes; empty for an empty file.
    public let bytes: UnsafeRawBufferPointer
    /// Device and inode, to recognise the same file behind another name.
    public let identity: FileIdentity
    /// Size and timestamps when mapped, to notice a file that changes while it is read.
    private let fingerprint: FileFingerprint
    /// A duplicate of the descriptor, kept open for ``changedSinceMapped()``.
    private let descriptor: Int32
    /// The slot of this mapping in ``MappedRegionRegistry`` (SIGBUS reports name the file).
    private var regionSlot: Int?

    /// Maps `path` for reading.
    ///
    /// - Throws: ``SystemError`` if the file cannot be opened, is not a regular file (refused
    ///   before any read, see ``FilePolicy``), or cannot be mapped.
    ///
    /// The corresponding C functions are `open`, `fstat`, `mmap` and `madvise`.
    public convenience init(path: String) throws(SystemError) {
        let fd = try FilePolicy.openRegularFile(path)
        defer { close(fd) }
        try self.init(fd: fd, path: path)
    }

    /// Maps an open descriptor of a regular file; the caller keeps ownership of `fd`.
    public init(fd: Int32, path: String) throws(SystemError) {
        self.path = path
        var st = stat()
        try retryingInterrupts("fstat", path: path) { fstat(fd, &st) }
        try FilePolicy.requireRegular(st, path: path)
        identity = FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
        fingerprint = FileFingerprint(st)
        descriptor = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        let size = Int(st.st_size)
        if size == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let base, base != MAP_FAILED else {
            let error = SystemError(call: "mmap", path: path)
            if descriptor >= 0 { close(descriptor) }  // deinit does not run for a failed init
            throw error
        }
        madvise(base, size, MADV_SEQUENTIAL)
        bytes = UnsafeRawBufferPointer(start: base, count: size)
        regionSlot = MappedRegionRegistry.register(UnsafeRawBufferPointer(bytes), path: path)
    }

    deinit {
        MappedRegionRegistry.unregister(regionSlot)
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
        if descriptor >= 0 { close(descriptor) }
    }

    /// Whether the file's size or modification time differs from when it was mapped (someone
    /// wrote to or truncated it while it was being read).
    ///
    /// The corresponding C function is `fstat`.
    public func changedSinceMapped() -> Bool {
        guard descriptor >= 0 else { return false }
        var st = stat()
        guard fstat(descriptor, &st) == 0 else { return true }
        return FileFingerprint(st) != fingerprint
    }

    /// Drops the pages of `range` from this process (they stay in the page cache).
    ///
    /// The corresponding C function is `madvise(MADV_DONTNEED)`.
    public func release(_ range: Range<Int>) {
        guard let base = bytes.baseAddress else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (range.lowerBound / page) * page
        let end = min(bytes.count, range.upperBound)
        guard end > start else { return }
        madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }
}

/// A file's device and inode numbers.
public struct FileIdentity: Hashable, Sendable {
    public var device: UInt64
    public var inode: UInt64

    /// The identity of the file at `path`, following symbolic links, or `nil` if there is none.
    public static func of(path: String) -> FileIdentity? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }
}

extension MappedFile {
    /// Copies a stream into an anonymous temporary file and maps it, for commands that need random
    /// access to an input that arrives on a pipe. The file is unlinked at once, so nothing is left behind.
    ///
    /// - Throws: ``SystemError`` naming `TMPDIR` before anything is written when the stream
    ///   declares more bytes (a zstd frame's content size) than `TMPDIR` has free.
    public static func spooling(_ stream: any ByteStream, displayPath: String) throws -> MappedFile {
        let directory = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        if let needed = stream.declaredRemainingBytes, let free = freeBytes(in: directory), needed > free {
            throw SystemError(call: "spool", path: directory, code: ENOSPC,
                explanation: "TMPDIR has \(free) bytes free, but \(displayPath) declares \(needed) bytes of content, which must be copied there for random access; set TMPDIR to a folder with room")
        }
        var template = Array("\(directory)/nvfp4-spool.XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw SystemError(call: "mkstemp", path: directory) }
        defer { close(fd) }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 8 << 20, alignment: 4096)
        defer { chunk.deallocate() }
        while true {
            let n = try stream.read(into: chunk)
            if n == 0 { break }
            var done = 0
            while done < n {
                let w = try retryingInterrupts("write", path: directory) { write(fd, chunk.baseAddress! + done, n - done) }
                done += w
            }
        }
        return try MappedFile(fd: fd, path: displayPath)
    }
}

/// The bytes an unprivileged process may still write in the file system holding `path`, or `nil`.
///
/// The corresponding C function is `statvfs`.
func freeBytes(in path: String) -> UInt64? {
    var st = statvfs()
    guard statvfs(path, &st) == 0 else { return nil }
    return UInt64(st.f_bavail) &* UInt64(st.f_frsize)
}
