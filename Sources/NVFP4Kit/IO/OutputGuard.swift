import Glibc

/// An output that would touch an input: refused before any work starts, `--force` included.
public struct OutputOverlapError: Error, Sendable, CustomStringConvertible {
    public enum Relation: Sendable, Equatable {
        /// The same file or folder (same path, a link, a hard link).
        case same
        /// The output is a folder that holds the input, at any depth.
        case containsInput
        /// The output would be written inside the input folder.
        case insideInput
    }

    public var input: String
    public var output: String
    public var relation: Relation
    /// Whether the input is a folder (for the wording).
    public var inputIsFolder: Bool

    public var description: String {
        let what = inputIsFolder ? "input folder" : "input file"
        switch relation {
        case .same: return "\(output) is the \(what) \(input) (same path, link or hard link); choose another output"
        case .containsInput: return "\(output) contains the \(what) \(input); writing or replacing it could move or delete the input; choose another output"
        case .insideInput: return "\(output) lies inside the input folder \(input); choose an output outside it"
        }
    }
}

/// Rules that keep outputs away from inputs and limit what `--force` may replace.
public enum OutputGuard {
    /// Refuses any output that is, contains, or lies inside any input, comparing resolved paths
    /// (`realpath`, so links are seen through) and device and inode numbers (hard links, bind
    /// mounts). `-` (stdin, stdout) is skipped; an output that does not exist yet is compared
    /// through its nearest existing folder.
    public static func refuseOverlap(inputs: [String], outputs: [String]) throws(OutputOverlapError) {
        for input in inputs where input != "-" {
            guard let inputPath = FilePolicy.resolvedPath(input), let inputID = FileIdentity.of(path: inputPath) else { continue }
            let inputIsFolder = FileKind.of(path: inputPath) == .directory
            let inputAncestors = ancestors(of: inputPath)
            for output in outputs where output != "-" {
                let outputPath = resolvedOutputPath(output)
                let outputID = FileIdentity.of(path: outputPath)
                func refuse(_ relation: OutputOverlapError.Relation) -> OutputOverlapError {
                    OutputOverlapError(input: input, output: output, relation: relation, inputIsFolder: inputIsFolder)
                }
                if output == input || outputPath == inputPath || outputID == inputID { throw refuse(.same) }
                if FilePolicy.isInside(inputPath, outputPath)
                    || (outputID != nil && inputAncestors.contains { FileIdentity.of(path: $0) == outputID })
                {
                    throw refuse(.containsInput)
                }
                if inputIsFolder
                    && (FilePolicy.isInside(outputPath, inputPath) || ancestors(of: outputPath).contains { FileIdentity.of(path: $0) == inputID })
                {
                    throw refuse(.insideInput)
                }
            }
        }
    }

    /// `path` with links resolved as far as it exists: `realpath` of the nearest existing
    /// ancestor, with the rest appended.
    static func resolvedOutputPath(_ path: String) -> String {
        if let resolved = FilePolicy.resolvedPath(path) { return resolved }
        var trimmed = path
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        let (parent, name) = splitPath(trimmed)
        guard parent != trimmed, !name.isEmpty else { return trimmed }
        let base = resolvedOutputPath(parent)
        return base == "/" ? "/" + name : base + "/" + name
    }

    /// The folders above an absolute path, nearest first, `/` last.
    static func ancestors(of path: String) -> [String] {
        var result: [String] = []
        var current = path
        while current != "/" && !current.isEmpty {
            current = splitPath(current).directory
            result.append(current)
        }
        return result
    }

    /// Throws unless `--force` may replace the existing folder at `path`: an empty folder, or one
    /// nvfp4 wrote (it has `nvfp4-manifest.json`) holding only files. A link, a folder with a
    /// subfolder, or a folder without the manifest is refused, so `--force` never moves or
    /// deletes what the tool did not write and leaves nothing hidden behind.
    /// What is at `path`, for a message about replacing it: "a file of 1.2 MB", "an empty
    /// folder", "an nvfp4 output folder of 6 files", "a folder of 3 entries", or `nil` when nothing is.
    public static func describeExisting(_ path: String, manifestName: String) -> String? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        let kind = FileKind(mode: st.st_mode)
        switch kind {
        case .regular: return "a file of \(st.st_size) bytes"
        case .directory:
            let entries = (try? ModelFolder.list(path)) ?? []
            if entries.isEmpty { return "an empty folder" }
            let ours = FileKind.of(path: "\(path)/\(manifestName)") == .regular
            return (ours ? "an nvfp4 output folder of " : "a folder of ") + "\(entries.count) entr\(entries.count == 1 ? "y" : "ies")"
        default: return kind.phrase
        }
    }

    public static func checkReplaceableFolder(_ path: String, manifestName: String) throws(SystemError) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        let rule = "--force replaces only an empty folder or a folder nvfp4 wrote (with \(manifestName))"
        let kind = FileKind(mode: st.st_mode)
        guard kind == .directory else {
            throw SystemError(call: "rename", path: path, code: ENOTDIR, explanation: "exists and is \(kind.phrase); \(rule)")
        }
        let entries: [String]
        do { entries = try ModelFolder.list(path) } catch { throw SystemError(call: "opendir", path: path, code: EACCES, explanation: error.reason) }
        guard !entries.isEmpty else { return }
        guard FileKind.of(path: "\(path)/\(manifestName)") == .regular else {
            throw SystemError(call: "rename", path: path, code: EEXIST, explanation: "exists and is not an nvfp4 output folder (no \(manifestName)); \(rule)")
        }
        for name in entries {
            var entry = stat()
            guard lstat("\(path)/\(name)", &entry) == 0 else { continue }
            let kind = FileKind(mode: entry.st_mode)
            if kind != .regular && kind != .symbolicLink {
                throw SystemError(call: "rename", path: path, code: ENOTEMPTY,
                    explanation: "holds \(name), \(kind.phrase) nvfp4 did not write; move it away first (\(rule), holding files only)")
            }
        }
    }
}
