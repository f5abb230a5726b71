import Glibc

/// Why a model folder cannot be used.
public struct ModelFolderError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file or folder concerned.
    public var path: String
    public var reason: String

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    public var description: String { "\(path): \(reason)" }
}

/// A Hugging Face model folder as input: `config.json`, one `model.safetensors` or shards listed
/// by `model.safetensors.index.json`, and other files (tokenizer, generation config…) that are
/// copied unchanged.
///
/// Every top-level entry passes ``FilePolicy/checkEntry(_:in:followLinks:)`` first: a FIFO,
/// socket or device is refused, and a symlink is read through only when it resolves inside the
/// folder (or, for a Hugging Face cache `snapshots/<rev>/` folder, into its `blobs/`), so a
/// downloaded folder cannot smuggle `/etc/…` or `~/.ssh/…` into the output. Shard names from an
/// index are plain file names: a name with a path separator, `..`, or that is empty or hidden is
/// rejected, so a hostile index can never make the tool read outside the input folder or write
/// outside the output folder.
public struct ModelFolder: Sendable {
    /// The folder as the user named it.
    public var path: String
    /// The parsed `config.json`, if present.
    public var config: JSONValue?
    /// The index file name, when the weights are sharded through one.
    public var indexName: String?
    /// The weight files in index order (first appearance in `weight_map`), or the single file.
    public var shards: [String]
    /// Tensor name → shard, from the index (empty without one).
    public var weightMap: [String: String]
    /// Other regular files at the top of the folder, copied as they are (sorted).
    public var otherFiles: [String]
    /// Entries that are not copied: subfolders and anything else that is not a regular file, and
    /// `.safetensors` files the index does not list (sorted).
    public var skippedEntries: [String]

    /// The standard index and single-file names.
    public static let indexFileName = "model.safetensors.index.json"
    public static let singleFileName = "model.safetensors"

    /// Reads and validates the folder's layout (not the shards' contents).
    ///
    /// - Parameter followLinks: Follow symlinks that leave the folder (`--follow-links`).
    public init(path: String, followLinks: Bool = false) throws(ModelFolderError) {
        self.path = path
        guard isDirectory(path) else { throw ModelFolderError(path: path, reason: "not a folder") }
        let checked = try ModelFolder.checkedList(path, followLinks: followLinks)
        let entries = checked.map(\.name)
        let regularFiles = Set(checked.filter { $0.verdict == .regularFile }.map(\.name))
        if entries.contains("config.json") {
            let text = try ModelFolder.readText("\(path)/config.json")
            do {
                config = try JSONParser.parse(text)
            } catch {
                throw ModelFolderError(path: "\(path)/config.json", reason: "invalid JSON: \(error)")
            }
            guard config?.objectValue != nil else { throw ModelFolderError(path: "\(path)/config.json", reason: "not a JSON object") }
        }
        var weightMap: [String: String] = [:]
        var shards: [String] = []
        if entries.contains(ModelFolder.indexFileName) {
            indexName = ModelFolder.indexFileName
            let indexPath = "\(path)/\(ModelFolder.indexFileName)"
            let index: JSONValue
            do {
                index = try JSONParser.parse(try ModelFolder.readText(indexPath))
            } catch let error as ModelFolderError {
                throw error
            } catch {
                throw ModelFolderError(path: indexPath, reason: "invalid JSON: \(error)")
            }
            guard let map = index["weight_map"]?.objectValue else {
                throw ModelFolderError(path: indexPath, reason: "no \"weight_map\" object")
            }
            for (tensor, file) in map {
                guard let file = file.stringValue else {
                    throw ModelFolderError(path: indexPath, reason: "weight_map entry \"\(tensor)\" is not a file name")
                }
                try ModelFolder.checkShardName(file, index: indexPath)
                guard entries.contains(file) else {
                    throw ModelFolderError(path: indexPath, reason: "weight_map entry \"\(tensor)\" names \"\(file)\", which is not in the folder")
                }
                weightMap[tensor] = file
                if !shards.contains(file) { shards.append(file) }
            }
            guard !shards.isEmpty else { throw ModelFolderError(path: indexPath, reason: "weight_map is empty") }
        } else if entries.contains(ModelFolder.singleFileName) {
            shards = [ModelFolder.singleFileName]
        } else {
            throw ModelFolderError(path: path, reason: "no \(ModelFolder.singleFileName) or \(ModelFolder.indexFileName)")
        }
        self.weightMap = weightMap
        self.shards = shards
        let weights = Set(shards + [ModelFolder.indexFileName, "config.json"])
        otherFiles = entries.filter { name in
            !weights.contains(name) && !name.hasSuffix(".safetensors") && regularFiles.contains(name)
        }.sorted()
        let copied = Set(otherFiles)
        skippedEntries = entries.filter { !weights.contains($0) && !copied.contains($0) }.sorted()
    }

    /// A shard name must be a plain file name inside the folder.
    static func checkShardName(_ name: String, index: String) throws(ModelFolderError) {
        do { try FilePolicy.checkPlainFileName(name, readFrom: index) } catch { throw ModelFolderError(path: index, reason: error.reason) }
        if !name.hasSuffix(".safetensors") {
            throw ModelFolderError(path: index, reason: "shard name \"\(name)\" does not end in .safetensors")
        }
    }

    /// The names in a folder, without `.` and `..`.
    static func list(_ path: String) throws(ModelFolderError) -> [String] {
        guard let dir = opendir(path) else { throw ModelFolderError(path: path, reason: "cannot list: \(String(cString: strerror(errno)))") }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// The names in a folder, each passed through ``FilePolicy/checkEntry(_:in:followLinks:)``.
    ///
    /// - Throws: ``ModelFolderError`` naming the first entry the policy refuses.
    static func checkedList(_ path: String, followLinks: Bool = false) throws(ModelFolderError) -> [(name: String, verdict: FilePolicy.EntryVerdict)] {
        var result: [(name: String, verdict: FilePolicy.EntryVerdict)] = []
        if !followLinks { FilePolicy.confine(folder: path) }
        for name in try list(path) {
            do { result.append((name, try FilePolicy.checkEntry(name, in: path, followLinks: followLinks))) } catch {
                throw ModelFolderError(path: "\(path)/\(name)", reason: error.reason)
            }
        }
        return result
    }

    /// A small text file's contents (config, index), at most 64 MiB.
    static func readText(_ path: String) throws(ModelFolderError) -> String {
        let file: MappedFile
        do {
            file = try MappedFile(path: path)
        } catch {
            throw ModelFolderError(path: path, reason: error.reason)
        }
        guard file.bytes.count <= 64 << 20 else { throw ModelFolderError(path: path, reason: "larger than 64 MiB") }
        guard let text = String(validating: file.bytes, as: UTF8.self) else {
            throw ModelFolderError(path: path, reason: "not UTF-8 text")
        }
        return text
    }
}

/// Whether `path` is (or links to) a folder.
func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}
