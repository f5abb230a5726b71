import Glibc

/// An output folder built under a hidden temporary name beside its destination and moved into
/// place in one `rename`, so the destination either does not exist or is complete.
///
/// The folder holds files only. It is registered with ``TemporaryFileRegistry``: Ctrl-C or
/// SIGTERM removes it, and ``abort()`` (or deinit before ``publish()``) removes it on failure.
public final class TemporaryFolder {
    /// The destination as the user named it.
    public let destination: String
    /// The temporary folder (`<parent>/.<name>.nvfp4-<pid>-<host>.XXXXXX`, ``TemporaryName``).
    public let path: String
    private let replace: Bool
    private var slot: Int?
    private var finished = false

    /// Creates the temporary folder.
    ///
    /// - Parameters:
    ///   - destination: The final folder.
    ///   - replace: Whether an existing destination may be replaced (`--force`): only an empty
    ///     folder or one this tool wrote, holding files only.
    /// - Throws: ``SystemError`` if the destination exists (without `replace`, or not replaceable)
    ///   or the parent is not writable.
    public init(destination: String, replace: Bool) throws(SystemError) {
        var trimmed = destination
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.destination = trimmed
        self.replace = replace
        if !replace, access(trimmed, F_OK) == 0 { throw SystemError(call: "create", path: destination, code: EEXIST) }
        if replace { try OutputGuard.checkReplaceableFolder(trimmed, manifestName: FolderQuantizeJob.manifestFileName) }
        var template = TemporaryName.template(for: trimmed)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw SystemError(call: "mkdir", path: destination)
        }
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        slot = TemporaryFileRegistry.registerFolder(path)
        let mask = umask(0)
        umask(mask)
        chmod(path, 0o777 & ~mask)
    }

    deinit {
        if !finished { abort() }
    }

    /// The path of `name` inside the temporary folder.
    public func file(_ name: String) -> String { "\(path)/\(name)" }

    /// Moves the folder to its destination. Without `replace` the move fails if the destination
    /// appeared meanwhile (`RENAME_NOREPLACE`); with it, an existing destination is swapped out
    /// (`RENAME_EXCHANGE`) and then removed.
    public func publish() throws(SystemError) {
        precondition(!finished, "publish() on a finished folder")
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
        if LinuxSyscall.rename(path, destination, flags: LinuxSyscall.renameNoReplace) != 0 {
            let code = errno
            guard replace, code == EEXIST else {
                abort()
                throw SystemError(call: "rename", path: destination, code: code)
            }
            guard isDirectory(destination) else {
                abort()
                throw SystemError(call: "rename", path: destination, code: ENOTDIR)
            }
            if LinuxSyscall.rename(path, destination, flags: LinuxSyscall.renameExchange) != 0 {
                let code = errno
                abort()
                throw SystemError(call: "rename", path: destination, code: code)
            }
            // `path` now holds the old destination's files.
            path.withCString { TemporaryFileRegistry.removeFlatFolder($0) }
        }
        finished = true
        TemporaryFileRegistry.unregisterFolder(slot)
        let parent = open(splitPath(destination).directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if parent >= 0 {
            fsync(parent)
            close(parent)
        }
    }

    /// Removes the temporary folder and everything in it.
    public func abort() {
        guard !finished else { return }
        finished = true
        path.withCString { TemporaryFileRegistry.removeFlatFolder($0) }
        TemporaryFileRegistry.unregisterFolder(slot)
    }
}
