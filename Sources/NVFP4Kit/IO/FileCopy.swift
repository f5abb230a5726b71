import Glibc

/// Copies a regular file (``FilePolicy``: no FIFO or device) into an atomic destination
/// (``AtomicFileSink``, replacing what is there). The copy's permissions are the source's,
/// narrowed by the umask: never wider than the source (a 0600 key stays 0600).
///
/// - Throws: ``FileError`` naming the source when it cannot be read; ``SystemError`` for the destination.
public func copyRegularFile(from source: String, to destination: String) throws {
    let file: MappedFile
    var st = stat()
    do {
        let fd = try FilePolicy.openRegularFile(source)
        defer { close(fd) }
        try retryingInterrupts("fstat", path: source) { fstat(fd, &st) }
        file = try MappedFile(fd: fd, path: source)
    } catch {
        throw FileError(path: source, cause: error)
    }
    let sink = try AtomicFileSink(path: destination, replace: true, permissions: st.st_mode & 0o777)
    do {
        if file.bytes.count > 0 { try sink.write(file.bytes) }
        _ = try sink.seal()
        try sink.publish()
    } catch {
        sink.abort()
        throw error
    }
}
