import Glibc

/// A model id as the Hugging Face Hub spells it, with an optional revision: `org/name`,
/// `org/name@main`, `org/name@<commit>` (full or a unique prefix of at least 7 hex digits).
public struct HubModelID: Sendable, Equatable, CustomStringConvertible {
    public var organization: String
    public var name: String
    /// A branch or tag (a file under `refs/`) or a commit hash; `nil` means `main`.
    public var revision: String?

    /// Parses `org/name[@revision]`; `nil` for anything else (paths, file names, `..`).
    public init?(_ text: String) {
        var id = Substring(text)
        var revision: String?
        if let at = text.firstIndex(of: "@") {
            revision = String(text[text.index(after: at)...])
            id = text[..<at]
            guard let r = revision, !r.isEmpty, HubModelID.isPlainName(r) else { return nil }
        }
        let parts = id.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2, parts.allSatisfy(HubModelID.isPlainName) else { return nil }
        guard !parts[1].hasSuffix(".safetensors"), !parts[1].hasSuffix(".zst"), !parts[1].hasSuffix(".json") else { return nil }
        (organization, name, self.revision) = (parts[0], parts[1], revision)
    }

    /// Letters, digits, `-`, `_`, `.`; not starting with `.` or `-` (so never `.`, `..` or an option).
    static func isPlainName(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, first != ".", first != "-" else { return false }
        return s.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_.".unicodeScalars.contains($0)) }
    }

    /// The cache folder's name: `models--org--name`.
    public var cacheFolderName: String { "models--\(organization)--\(name)" }

    /// The command that downloads it into the cache.
    public var downloadCommand: String { "hf download \(organization)/\(name)" + (revision.map { " --revision \($0)" } ?? "") }

    public var description: String { "\(organization)/\(name)" + (revision.map { "@\($0)" } ?? "") }
}

/// Why a model id cannot be found in the cache.
public struct HubCacheError: Error, Sendable, CustomStringConvertible {
    public var id: HubModelID
    public var cache: String
    public var problem: String

    public var description: String { "\(id): \(problem)" }
}

/// Resolves model ids in the local Hugging Face cache, offline, the way `huggingface_hub` lays it
/// out: `<cache>/models--org--name/refs/<branch>` holds a commit hash and
/// `<cache>/models--org--name/snapshots/<commit>/` the files (links into `../../blobs`).
public enum HubCache {
    /// The cache folder: `HF_HUB_CACHE` (or the older `HUGGINGFACE_HUB_CACHE`), else
    /// `HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
    public static func root(environment: (String) -> String? = HubCache.processEnvironment) -> String {
        if let cache = nonEmpty(environment("HF_HUB_CACHE")) ?? nonEmpty(environment("HUGGINGFACE_HUB_CACHE")) { return expand(cache, environment) }
        if let home = nonEmpty(environment("HF_HOME")) { return expand(home, environment) + "/hub" }
        if let xdg = nonEmpty(environment("XDG_CACHE_HOME")) { return expand(xdg, environment) + "/huggingface/hub" }
        return (nonEmpty(environment("HOME")) ?? "/root") + "/.cache/huggingface/hub"
    }

    /// The snapshot folder `argument` names, or `nil` when `argument` is not a model id or a local
    /// file or folder of that name exists (a local path always wins).
    ///
    /// - Throws: ``HubCacheError`` when it is a model id that is not cached (with the download
    ///   command), or whose revision is not cached or is ambiguous.
    public static func resolve(_ argument: String, environment: (String) -> String? = HubCache.processEnvironment) throws(HubCacheError) -> String? {
        guard let id = HubModelID(argument), !exists(argument) else { return nil }
        let cache = root(environment: environment)
        let repo = "\(cache)/\(id.cacheFolderName)"
        guard isDirectory("\(repo)/snapshots") else {
            throw HubCacheError(id: id, cache: cache, problem: "not a file or folder here, and not in the Hugging Face cache \(cache); download it with: \(id.downloadCommand)")
        }
        let snapshots = list("\(repo)/snapshots").filter { isDirectory("\(repo)/snapshots/\($0)") }
        let revision = id.revision ?? "main"
        if HubModelID.isPlainName(revision), let commit = readRef("\(repo)/refs/\(revision)") {
            guard snapshots.contains(commit) else {
                throw HubCacheError(id: id, cache: cache, problem: "refs/\(revision) points to \(commit), which is not in \(repo)/snapshots; download it again with: \(id.downloadCommand)")
            }
            return "\(repo)/snapshots/\(commit)"
        }
        let hex = revision.lowercased()
        if hex.count >= 7, hex.count <= 40, hex.allSatisfy(\.isHexDigit) {
            let matches = snapshots.filter { $0.hasPrefix(hex) }
            if matches.count == 1 { return "\(repo)/snapshots/\(matches[0])" }
            if matches.count > 1 {
                throw HubCacheError(id: id, cache: cache, problem: "revision \(revision) matches several cached commits (\(matches.sorted().joined(separator: ", "))); give more digits")
            }
        }
        let refs = list("\(repo)/refs").sorted()
        let known = (refs.map { "refs/\($0)" } + snapshots.sorted().map { String($0.prefix(12)) }).joined(separator: ", ")
        throw HubCacheError(id: id, cache: cache, problem: "revision \(revision) is not in the cache (cached: \(known.isEmpty ? "nothing" : known)); download it with: \(id.downloadCommand)")
    }

    /// `getenv`.
    public static let processEnvironment: @Sendable (String) -> String? = { name in getenv(name).map { String(cString: $0) } }

    private static func nonEmpty(_ s: String?) -> String? { s.flatMap { $0.isEmpty ? nil : $0 } }

    /// `~` and `~/x` expanded with `HOME`.
    private static func expand(_ path: String, _ environment: (String) -> String?) -> String {
        guard path == "~" || path.hasPrefix("~/") else { return path }
        return (environment("HOME") ?? "/root") + path.dropFirst()
    }

    private static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    private static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// A ref file's commit hash (40 hex digits), or `nil`.
    private static func readRef(_ path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size <= 256, let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 257)
        guard fgets(&buffer, 257, file) != nil else { return nil }
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).trimmingSpaces
        return text.count == 40 && text.allSatisfy(\.isHexDigit) ? text.lowercased() : nil
    }

    private static func list(_ folder: String) -> [String] {
        guard let dir = opendir(folder) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        String(drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}
