import Glibc
import Synchronization

/// What a path names, from its `st_mode`.
public enum FileKind: Sendable, Equatable {
    case regular, directory, fifo, socket, characterDevice, blockDevice, symbolicLink, unknown

    public init(mode: mode_t) {
        switch mode & S_IFMT {
        case S_IFREG: self = .regular
        case S_IFDIR: self = .directory
        case S_IFIFO: self = .fifo
        case S_IFSOCK: self = .socket
        case S_IFCHR: self = .characterDevice
        case S_IFBLK: self = .blockDevice
        case S_IFLNK: self = .symbolicLink
        default: self = .unknown
        }
    }

    /// `a FIFO (named pipe)`, `a character device`…, for error lines.
    public var phrase: String {
        switch self {
        case .regular: return "a regular file"
        case .directory: return "a folder"
        case .fifo: return "a FIFO (named pipe)"
        case .socket: return "a socket"
        case .characterDevice: return "a character device"
        case .blockDevice: return "a block device"
        case .symbolicLink: return "a symbolic link"
        case .unknown: return "not a regular file"
        }
    }

    /// The kind of `path` following links (`stat`), or `nil` if nothing is there.
    public static func of(path: String) -> FileKind? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return FileKind(mode: st.st_mode)
    }
}

/// The one place that decides which files the tool may read (see `docs/security.md`):
///
/// - only regular files are opened; a FIFO, socket, device or folder is refused before any read
///   (the open is non-blocking, so a FIFO never hangs the tool);
/// - inside a folder, a symbolic link is followed only when it resolves inside that folder, or
///   inside the Hugging Face cache's `blobs/` for a `snapshots/<rev>/` folder; anything else is
///   refused unless the caller opts in (`--follow-links`);
/// - names read from index and part files are plain file names, never paths.
public enum FilePolicy {
    /// Opens `path` for reading if it is a regular file; the caller closes the descriptor.
    ///
    /// The file is `stat`ed first, so a device or FIFO is never opened, and opened with
    /// `O_NONBLOCK` then checked again with `fstat`, so one swapped in meanwhile cannot block.
    ///
    /// - Throws: ``SystemError`` naming the path, with the file's type when it is not a regular file.
    public static func openRegularFile(_ path: String) throws(SystemError) -> Int32 {
        var st = stat()
        try retryingInterrupts("stat", path: path) { stat(path, &st) }
        try requireRegular(st, path: path)
        let fd = try retryingInterrupts("open", path: path) { open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY) }
        do {
            try retryingInterrupts("fstat", path: path) { fstat(fd, &st) }
            try requireRegular(st, path: path)
        } catch {
            close(fd)
            throw error
        }
        do { try checkConfinement(fd, path: path) } catch {
            close(fd)
            throw error
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return fd
    }

    /// Folders listed under the link rule (``checkEntry(_:in:followLinks:)`` without
    /// `--follow-links`), as the caller named them, without trailing slashes.
    private static let confinedFolders = Mutex<Set<String>>([])

    /// Puts the entries of `folder` under the link rule at open time too: a file opened as
    /// `folder/name` must then *be*, when opened, a file the rule allows, so an entry swapped for
    /// an outside link between the listing and the open is refused.
    public static func confine(folder: String) {
        let key = trimmingTrailingSlashes(folder)
        confinedFolders.withLock { _ = $0.insert(key) }
    }

    /// Throws if `path` is an entry of a confined folder and the open descriptor `fd` names a
    /// file outside it (the kernel's own path of the descriptor, `/proc/self/fd/N`).
    static func checkConfinement(_ fd: Int32, path: String) throws(SystemError) {
        let folder = trimmingTrailingSlashes(splitPath(path).directory)
        guard confinedFolders.withLock({ $0.contains(folder) }) else { return }
        guard let opened = resolvedPath("/proc/self/fd/\(fd)") else { return }
        if !linkTargetAllowed(opened, folder: folder) {
            throw SystemError(call: "open", path: path, code: ELOOP,
                explanation: "now leads to \(opened), outside the folder (changed after the folder was checked); refused")
        }
    }

    private static func trimmingTrailingSlashes(_ path: String) -> String {
        var p = Substring(path)
        while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
        return String(p)
    }

    /// Throws unless `st` describes a regular file.
    static func requireRegular(_ st: stat, path: String) throws(SystemError) {
        let kind = FileKind(mode: st.st_mode)
        guard kind == .regular else { throw SystemError.notRegularFile(path: path, kind: kind) }
    }

    /// Why a folder entry may not be read.
    public enum EntryVerdict: Sendable, Equatable {
        /// A regular file, or a link the policy allows to one.
        case regularFile
        /// A folder, or a link the policy allows to one (skipped, never read).
        case folder
        /// A link whose target does not exist.
        case danglingLink
    }

    /// Checks the top-level entry `name` of `folder`.
    ///
    /// - Parameter followLinks: Allow links that resolve anywhere (`--follow-links`).
    /// - Returns: What the entry is, once allowed.
    /// - Throws: ``SystemError`` naming the entry when it is a FIFO, socket or device, or a link
    ///   that resolves outside the folder (and outside the Hugging Face cache's `blobs/`).
    public static func checkEntry(_ name: String, in folder: String, followLinks: Bool) throws(SystemError) -> EntryVerdict {
        let path = "\(folder)/\(name)"
        var st = stat()
        try retryingInterrupts("lstat", path: path) { lstat(path, &st) }
        if FileKind(mode: st.st_mode) == .symbolicLink {
            guard let target = resolvedPath(path) else { return .danglingLink }
            if !followLinks && !linkTargetAllowed(target, folder: folder) {
                throw SystemError(call: "open", path: path, code: ELOOP,
                    explanation: "symbolic link to \(target), outside the folder; refused (a downloaded folder could copy any file into the output; --follow-links allows it)")
            }
            guard stat(path, &st) == 0 else { return .danglingLink }
        }
        switch FileKind(mode: st.st_mode) {
        case .regular: return .regularFile
        case .directory: return .folder
        case let kind: throw SystemError.notRegularFile(path: path, kind: kind)
        }
    }

    /// Whether a link in `folder` that resolves to `target` stays inside the folder, or is a
    /// Hugging Face cache link `<cache>/snapshots/<rev>/f -> ../../blobs/<hash>`.
    static func linkTargetAllowed(_ target: String, folder: String) -> Bool {
        guard let root = resolvedPath(folder) else { return false }
        if isInside(target, root) { return true }
        let (snapshots, _) = splitPath(root)
        let (cache, snapshotsName) = splitPath(snapshots)
        return snapshotsName == "snapshots" && isInside(target, (cache == "/" ? "" : cache) + "/blobs")
    }

    /// Whether `path` lies strictly inside `folder` (both resolved, absolute paths).
    public static func isInside(_ path: String, _ folder: String) -> Bool {
        folder == "/" ? path != "/" : path.hasPrefix(folder + "/")
    }

    /// The absolute path with every link resolved (`realpath`), or `nil` if it does not exist.
    public static func resolvedPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// Throws unless `name`, read from `file` (an index or a part file), is a plain file name:
    /// not empty, no path separator, not `.`/`..`, not hidden, no NUL.
    public static func checkPlainFileName(_ name: String, readFrom file: String) throws(SystemError) {
        let bad: String?
        if name.isEmpty { bad = "is empty" }
        else if name.contains("/") || name.contains("\\") { bad = "contains a path separator" }
        else if name.hasPrefix(".") { bad = "is hidden or a parent reference" }
        else if name.utf8.contains(0) { bad = "contains a NUL byte" }
        else { bad = nil }
        if let bad {
            throw SystemError(call: "open", path: file, code: EINVAL,
                explanation: "names file \"\(name)\", which \(bad); only plain file names in the same folder are accepted")
        }
    }
}

extension SystemError {
    /// A path that is not a regular file, named with its type.
    static func notRegularFile(path: String, kind: FileKind) -> SystemError {
        let hint = kind == .fifo ? " (give '-' to read a pipe on stdin)" : ""
        return SystemError(call: "open", path: path, code: kind == .directory ? EISDIR : EINVAL,
            explanation: "is \(kind.phrase), not a regular file; only regular files are read\(hint)")
    }
}
