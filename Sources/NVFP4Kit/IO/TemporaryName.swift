import Glibc

/// Names of the temporary files and folders the tool writes beside a destination:
/// `.<name>.nvfp4-<pid>-<host>.XXXXXX`. The process id and a tag of the host name say who owns
/// one, so a later run can tell the leftovers of a killed run from those of a live one.
public enum TemporaryName {
    static let marker = ".nvfp4-"

    /// The `mkstemp`/`mkdtemp` template for a temporary sibling of `destination`.
    static func template(for destination: String) -> [CChar] {
        let (directory, name) = splitPath(destination)
        // Room for the marker, pid, host tag and suffix within NAME_MAX (255).
        let shortName = String(decoding: name.utf8.prefix(200), as: UTF8.self)
        return Array("\(directory)/.\(shortName)\(marker)\(getpid())-\(hostTag).XXXXXX".utf8CString)
    }

    /// The owning process of a temporary entry named `name`, or `nil` if the name is not one
    /// of this tool's temporary names or was made on another host.
    public static func owner(of name: String) -> pid_t? {
        let bytes = Array(name.utf8), mark = Array(marker.utf8)
        guard bytes.first == UInt8(ascii: "."), bytes.count > mark.count,
            let start = (0...(bytes.count - mark.count)).last(where: { bytes[$0..<($0 + mark.count)].elementsEqual(mark) })
        else { return nil }
        let rest = String(decoding: bytes[(start + mark.count)...], as: UTF8.self)  // <pid>-<host>.XXXXXX
        let parts = rest.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[1].count == 6 else { return nil }
        let owner = parts[0].split(separator: "-", omittingEmptySubsequences: false)
        guard owner.count == 2, String(owner[1]) == hostTag, let pid = pid_t(owner[0]), pid > 0 else { return nil }
        return pid
    }

    /// Eight hex digits of the host name's FNV-1a hash: a process id means nothing on another
    /// machine (or container) sharing the folder.
    static let hostTag: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count - 1)
        var hash: UInt32 = 2_166_136_261
        for byte in String(cString: buffer).utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 8 - hex.count) + hex
    }()

    /// Whether process `pid` exists (`kill(pid, 0)`; a process of another user counts as live).
    static func isAlive(_ pid: pid_t) -> Bool {
        kill(pid, 0) == 0 || errno != ESRCH
    }
}

/// Removes what killed runs left behind (SIGKILL, power loss: no handler ran).
public enum CrashLeftovers {
    /// Removes, in `folder`, the temporary files and folders of this tool whose owning process no
    /// longer exists; a live run's are never touched, nor entries of other users.
    ///
    /// - Returns: The paths removed, for the command line to report.
    public static func remove(in folder: String) -> [String] {
        guard let names = try? ModelFolder.list(folder) else { return [] }
        var removed: [String] = []
        for name in names {
            guard let pid = TemporaryName.owner(of: name), !TemporaryName.isAlive(pid) else { continue }
            let path = "\(folder)/\(name)"
            var st = stat()
            guard lstat(path, &st) == 0, st.st_uid == geteuid() else { continue }
            switch FileKind(mode: st.st_mode) {
            case .regular: if unlink(path) == 0 { removed.append(path) }
            case .directory:
                path.withCString { TemporaryFileRegistry.removeFlatFolder($0) }
                if FileKind.of(path: path) == nil { removed.append(path) }
            default: continue
            }
        }
        return removed
    }

    /// ``remove(in:)`` for the folders the given outputs are written into: each output's parent,
    /// and the output itself when it is a folder (a `--shard` run or `merge` writes inside it).
    public static func remove(near outputs: [String]) -> [String] {
        var folders: [String] = []
        for output in outputs where output != "-" {
            var trimmed = output
            while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
            folders.append(splitPath(trimmed).directory)
            if FileKind.of(path: trimmed) == .directory { folders.append(trimmed) }
        }
        var seen = Set<String>()
        return folders.filter { seen.insert($0).inserted }.flatMap { remove(in: $0) }
    }
}
