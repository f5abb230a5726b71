import Glibc

/// Why a checkpoint file or folder cannot be read at all.
public enum CheckpointSourceError: Error, Sendable, CustomStringConvertible {
    /// Nothing exists at the path.
    case notFound(path: String)
    /// A folder holds no `.safetensors` file and no index.
    case noSafetensors(folder: String)
    /// A JSON file (config, index) is not valid JSON.
    case invalidJSON(file: String, reason: String)
    /// `model.safetensors.index.json` does not have the shape loaders expect.
    case invalidIndex(file: String, reason: String)
    /// An index names a shard by a path, `..` or an absolute name instead of a plain file name.
    case unsafeShardName(file: String, name: String)
    /// An index names a shard that does not exist in the folder.
    case missingShard(file: String, shard: String)

    public var description: String {
        switch self {
        case .notFound(let path): return "\(path): no such file or folder"
        case .noSafetensors(let folder): return "\(folder): no .safetensors file and no model.safetensors.index.json in this folder"
        case .invalidJSON(let file, let reason): return "\(file): not valid JSON: \(reason)"
        case .invalidIndex(let file, let reason): return "\(file): \(reason)"
        case .unsafeShardName(let file, let name):
            return "\(file): weight_map names shard \"\(name)\", which is not a plain file name in this folder (paths, '..' and absolute names are refused)"
        case .missingShard(let file, let shard): return "\(file): weight_map names shard \"\(shard)\", which does not exist"
        }
    }
}

/// One safetensors file of a checkpoint.
public struct CheckpointShard {
    /// The file name inside the folder (or the path as given for a single file).
    public var fileName: String
    /// The path used to open it.
    public var path: String
    /// The open reader: memory-mapped, so tensors are read lazily, page by page.
    public var reader: SafetensorsReader
}

/// A tensor and the shard that holds it.
public struct LocatedTensor: Sendable, Equatable {
    /// Index into ``CheckpointSource/shards``.
    public var shard: Int
    public var info: TensorInfo
    /// The tensor's name.
    public var name: String { info.name }
}

/// The tensors of a checkpoint's shards in order, read from their headers on access (a
/// million-tensor checkpoint is never copied into one list).
public struct LocatedTensors: RandomAccessCollection, Sendable {
    private let headers: [[TensorInfo]]
    /// Index of each shard's first tensor, plus the total.
    private let starts: [Int]

    init(headers: [[TensorInfo]]) {
        self.headers = headers
        var starts = [0]
        for h in headers { starts.append(starts.last! + h.count) }
        self.starts = starts
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { starts.last! }

    public subscript(position: Int) -> LocatedTensor {
        // The last shard whose first tensor is at or before `position` (binary search; empty
        // shards share their start with the next one, which wins).
        var low = 0, high = headers.count - 1
        while low < high {
            let mid = (low + high + 1) / 2
            if starts[mid] <= position { low = mid } else { high = mid - 1 }
        }
        let shard = low
        return LocatedTensor(shard: shard, info: headers[shard][position - starts[shard]])
    }

    /// Some of these tensors, by position (4 bytes each).
    public func subset(_ positions: [Int32]) -> LocatedTensorSubset { LocatedTensorSubset(all: self, positions: positions) }
}

/// Some tensors of a ``LocatedTensors``, by position.
public struct LocatedTensorSubset: RandomAccessCollection, Sendable {
    let all: LocatedTensors
    let positions: [Int32]
    public var startIndex: Int { 0 }
    public var endIndex: Int { positions.count }
    public subscript(position: Int) -> LocatedTensor { all[Int(positions[position])] }
}

/// The `weight_map` of `model.safetensors.index.json`.
public struct ShardIndex: Sendable {
    /// The index file's path.
    public var path: String
    /// Tensor name → shard file name, in file order.
    public var weightMap: [(tensor: String, shard: String)]
    /// `metadata.total_size`, if present.
    public var totalSize: UInt64?
}

/// A checkpoint to read: a single `.safetensors` file, or a Hugging Face model folder
/// (`config.json`, `model.safetensors` or shards listed by `model.safetensors.index.json`,
/// `hf_quant_config.json` for ModelOpt). A Hugging Face cache snapshot, whose files are symbolic
/// links into `../../blobs`, reads like any folder.
///
/// Every shard is memory-mapped and only its header is parsed up front; tensor bytes are touched
/// only when asked for, so memory stays bounded by what a caller holds.
public final class CheckpointSource {
    /// The file or folder as given.
    public let path: String
    /// Whether ``path`` is a folder.
    public let isFolder: Bool
    /// The shards read, in index order (sorted by file name).
    public let shards: [CheckpointShard]
    /// `config.json`, if the folder has one.
    public let config: JSONValue?
    /// `hf_quant_config.json`, if the folder has one.
    public let hfQuantConfig: JSONValue?
    /// The shard index, if the folder has one.
    public let index: ShardIndex?
    /// `.safetensors` files in the folder that loaders will not read (not named by the index, or
    /// beside `model.safetensors` without an index).
    public let unreferencedFiles: [String]
    /// Tensor names that appear in more than one shard, with the shards' file names.
    public let duplicateTensors: [(name: String, shards: [String])]

    private var locations: [String: LocatedTensor] = [:]

    /// Opens a file (`.zst` decompressed), `-` for stdin (spooled to an unlinked temporary file), or a folder.
    ///
    /// - Throws: ``CheckpointSourceError`` or ``FileError`` naming the file that cannot be read.
    public convenience init(path: String) throws {
        if path == "-" {
            try self.init(singleFile: try SafetensorsReader.randomAccess(path: "-"), path: "-")
            return
        }
        var st = stat()
        guard stat(path, &st) == 0 else { throw CheckpointSourceError.notFound(path: path) }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            try self.init(folder: path)
        } else {
            // Mapped; a .zst file is decompressed into an anonymous temporary file first.
            try self.init(singleFile: try SafetensorsReader.randomAccess(path: path), path: path)
        }
    }

    /// Wraps one already-open file (a mapped file or a stream; a stream's tensors cannot be read
    /// out of order, so scalar values read as unknown).
    public init(singleFile reader: SafetensorsReader, path: String) throws {
        self.path = path
        isFolder = false
        shards = [CheckpointShard(fileName: reader.displayPath, path: path, reader: reader)]
        config = nil
        hfQuantConfig = nil
        index = nil
        unreferencedFiles = []
        duplicateTensors = []
        buildLocations()
    }

    private init(folder: String) throws {
        path = folder
        isFolder = true
        let names = try CheckpointSource.listFolder(folder)
        config = try CheckpointSource.readJSON(folder, "config.json", present: names)
        hfQuantConfig = try CheckpointSource.readJSON(folder, EngineLayoutNames.ConfigStrings.hfQuantConfigFile, present: names)
        let safetensors = names.filter { $0.hasSuffix(".safetensors") }.sorted()
        var shardNames: [String]
        if let indexJSON = try CheckpointSource.readJSON(folder, "model.safetensors.index.json", present: names) {
            let parsed = try CheckpointSource.parseIndex(indexJSON, path: folder + "/model.safetensors.index.json")
            for name in Set(parsed.weightMap.map(\.shard)) where !names.contains(name) {
                throw CheckpointSourceError.missingShard(file: parsed.path, shard: name)
            }
            index = parsed
            shardNames = Array(Set(parsed.weightMap.map(\.shard))).sorted()
        } else {
            index = nil
            if safetensors.contains("model.safetensors") {
                shardNames = ["model.safetensors"]
            } else {
                shardNames = safetensors
            }
        }
        guard !shardNames.isEmpty else { throw CheckpointSourceError.noSafetensors(folder: folder) }
        unreferencedFiles = safetensors.filter { !shardNames.contains($0) }
        var opened: [CheckpointShard] = []
        for name in shardNames {
            let file = folder + "/" + name
            let reader: SafetensorsReader
            do { reader = try SafetensorsReader(mappedFile: try MappedFile(path: file), hashing: false) } catch let e as SystemError {
                throw FileError(path: file, cause: e)
            }
            opened.append(CheckpointShard(fileName: name, path: file, reader: reader))
        }
        shards = opened
        var seen: [String: [String]] = [:]
        for shard in opened { for t in shard.reader.header.tensors { seen[t.name, default: []].append(shard.fileName) } }
        duplicateTensors = seen.filter { $0.value.count > 1 }.map { ($0.key, $0.value) }.sorted { $0.name < $1.name }
        buildLocations()
    }

    private func buildLocations() {
        // One shard: its header's own index answers (a million-tensor header is not indexed twice).
        guard shards.count > 1 else { return }
        for (i, shard) in shards.enumerated() {
            for t in shard.reader.header.tensors where locations[t.name] == nil {
                locations[t.name] = LocatedTensor(shard: i, info: t)
            }
        }
    }

    /// The tensor named `name` (its first shard if duplicated).
    public func tensor(named name: String) -> LocatedTensor? {
        guard shards.count > 1 else { return shards.first?.reader.header.tensor(named: name).map { LocatedTensor(shard: 0, info: $0) } }
        return locations[name]
    }

    /// Every tensor, shard by shard, in file order (a view of the shards' headers, not a copy).
    public var allTensors: LocatedTensors { LocatedTensors(headers: shards.map(\.reader.header.tensors)) }

    /// The path of the shard holding `tensor`.
    public func path(of tensor: LocatedTensor) -> String { shards[tensor.shard].path }

    /// A folder file's path, for findings about configs.
    public func file(_ name: String) -> String { isFolder ? path + "/" + name : path }

    /// Gives `body` the bytes of `tensor` (valid only inside `body`).
    public func withBytes<R>(of tensor: LocatedTensor, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try shards[tensor.shard].reader.withBytes(of: tensor.info, body)
    }

    /// The value of a one-element F32 tensor, or `nil` if it is not one or cannot be read out of order.
    public func scalar(_ tensor: LocatedTensor) -> Float? {
        guard tensor.info.dtype == .f32, tensor.info.elementCount == 1, shards[tensor.shard].reader.isRandomAccess else { return nil }
        return try? withBytes(of: tensor) { Float(bitPattern: UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self))) }
    }

    /// The values of an F32 tensor of at most `limit` elements (per-expert scales), or `nil` if it is
    /// not one or cannot be read out of order.
    public func scalars(_ tensor: LocatedTensor, limit: Int = 1 << 20) -> [Float]? {
        guard tensor.info.dtype == .f32, tensor.info.elementCount <= limit, shards[tensor.shard].reader.isRandomAccess else { return nil }
        return try? withBytes(of: tensor) { bytes in
            (0..<(bytes.count / 4)).map { Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
        }
    }

    /// Releases the mapped pages of `tensor` after it has been scanned.
    public func release(_ tensor: LocatedTensor) { shards[tensor.shard].reader.release(tensor.info) }

    // MARK: Folder reading

    /// A shard name an index may use: a plain file name, never a path, `.`, `..` or hidden
    /// (``FilePolicy/checkPlainFileName(_:readFrom:)``).
    public static func isPlainFileName(_ name: String) -> Bool {
        (try? FilePolicy.checkPlainFileName(name, readFrom: "")) != nil
    }

    /// The folder's names, each checked by ``FilePolicy/checkEntry(_:in:followLinks:)`` (no
    /// FIFO, device or socket; no link out of the folder).
    static func listFolder(_ folder: String) throws -> Set<String> {
        do {
            return Set(try ModelFolder.checkedList(folder).map(\.name))
        } catch {
            throw FileError(path: error.path, cause: SystemError(call: "open", path: error.path, code: EINVAL, explanation: error.reason))
        }
    }

    static func readJSON(_ folder: String, _ name: String, present: Set<String>) throws -> JSONValue? {
        guard present.contains(name) else { return nil }
        let file = folder + "/" + name
        let mapped: MappedFile
        do { mapped = try MappedFile(path: file) } catch { throw FileError(path: file, cause: error) }
        do { return try JSONParser.parse(mapped.bytes) } catch {
            throw CheckpointSourceError.invalidJSON(file: file, reason: "\(error)")
        }
    }

    static func parseIndex(_ json: JSONValue, path: String) throws -> ShardIndex {
        guard json.objectValue != nil else { throw CheckpointSourceError.invalidIndex(file: path, reason: "the index is not a JSON object") }
        guard let map = json["weight_map"]?.objectValue else {
            throw CheckpointSourceError.invalidIndex(file: path, reason: "\"weight_map\" is missing or not an object")
        }
        var entries: [(tensor: String, shard: String)] = []
        for (tensor, value) in map {
            guard let shard = value.stringValue else {
                throw CheckpointSourceError.invalidIndex(file: path, reason: "weight_map entry \"\(tensor)\" is not a string")
            }
            guard isPlainFileName(shard) else { throw CheckpointSourceError.unsafeShardName(file: path, name: shard) }
            entries.append((tensor, shard))
        }
        return ShardIndex(path: path, weightMap: entries, totalSize: json["metadata"]?["total_size"]?.unsignedValue)
    }
}
