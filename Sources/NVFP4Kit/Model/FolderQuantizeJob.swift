import Glibc

/// What was written for one output shard: the record the index, the manifest and `merge` use.
public struct ShardRecord: Sendable {
    /// The input shard's file name (also the output's).
    public var name: String
    public var input: FileSummary
    public var output: FileSummary
    /// Bytes of tensor data (the index's `total_size` sums these).
    public var dataBytes: Int
    /// Output tensor names, in file order.
    public var tensorNames: [String]
    public var reports: TensorReports

    /// The manifest entry (also what a `--shard` worker's part file holds).
    public var json: JSONValue {
        .object([
            ("name", .string(name)),
            ("input", .object([("bytes", .int(input.byteCount)), ("sha256", input.sha256.map { .string($0) } ?? .null)])),
            ("output", .object([("bytes", .int(output.byteCount)), ("sha256", output.sha256.map { .string($0) } ?? .null), ("data_bytes", .int(dataBytes))])),
            ("tensor_names", .array(tensorNames.map { .string($0) })),
            ("tensors", .array(reports.map(Manifest.tensorEntry))),
        ])
    }

    /// Reads back ``json`` (the parts `merge` needs: names, sizes and digests; reports stay JSON).
    static func parse(_ value: JSONValue) -> (name: String, dataBytes: Int, tensorNames: [String], json: JSONValue)? {
        guard let name = value["name"]?.stringValue,
            let data = value["output"]?["data_bytes"]?.unsignedValue,
            let names = value["tensor_names"]?.arrayValue?.compactMap(\.stringValue)
        else { return nil }
        return (name, Int(data), names, value)
    }
}

/// Which share of the output shards one worker writes (`--shard I/N`): shards whose position in
/// the input order is `I` modulo `N`.
public struct WorkerShare: Sendable, Equatable {
    public var index: Int
    public var count: Int

    public init(index: Int, count: Int) {
        self.index = index
        self.count = count
    }

    /// Parses `I/N` with `0 <= I < N`.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), n >= 1, n <= 100_000, i >= 0, i < n else { return nil }
        self.init(index: i, count: n)
    }

    public func owns(shardAt position: Int) -> Bool { position % count == index }

    /// The part file a worker leaves in the output folder for `merge`.
    public var partFileName: String { "nvfp4-part-\(index)-of-\(count).json" }
}

/// Quantizes a Hugging Face model folder into a complete folder the engines load: quantized
/// shards (same names and split as the input), the rewritten index, `config.json` with the
/// format's `quantization_config`, ModelOpt's `hf_quant_config.json`, every other file copied,
/// and `nvfp4-manifest.json`.
///
/// It writes the ``QuantizePlan`` with ``PlanExecutor``, one output shard at a time. The
/// output is built in a temporary folder beside the destination and renamed into place at the
/// end; on failure or Ctrl-C nothing is left.
public enum FolderQuantizeJob {
    public static let manifestFileName = "nvfp4-manifest.json"
    public static let hfQuantConfigFileName = EngineLayoutNames.ConfigStrings.hfQuantConfigFile

    /// Runs the whole conversion into `output` (which must not exist unless `replace`).
    ///
    /// - Parameters:
    ///   - progress: Told of each shard and tensor (sized by input bytes).
    /// - Returns: The manifest document and what each shard recorded.
    @discardableResult
    public static func run(
        plan: QuantizePlan, output: String, replace: Bool, invocation: [String], progress: JobProgress? = nil
    ) throws -> (manifest: JSONValue, records: [ShardRecord]) {
        let folder = try TemporaryFolder(destination: output, replace: replace)
        do {
            var records: [ShardRecord] = []
            for (index, shard) in plan.outputShards.enumerated() {
                progress?.startFile(shard.name, bytes: plan.inputBytes(ofOutputShard: index))
                records.append(try writeShard(index, plan: plan, into: folder.file(shard.name), progress: progress))
                progress?.finishFile()
            }
            let manifest = try writeFolderFiles(summary: plan.summary, records: records.map(\.json), into: folder.path, invocation: invocation)
            try folder.publish()
            return (manifest, records)
        } catch {
            folder.abort()
            throw error
        }
    }

    /// A `--shard I/N` worker: writes its share of the shards into `output` (created if missing)
    /// and the part file `merge` reads. Files appear atomically, one by one.
    public static func runWorker(plan: QuantizePlan, share: WorkerShare, output: String, progress: JobProgress? = nil) throws {
        if mkdir(output, 0o777) != 0 && errno != EEXIST { throw SystemError(call: "mkdir", path: output) }
        guard isDirectory(output) else { throw SystemError(call: "mkdir", path: output, code: ENOTDIR) }
        var records: [JSONValue] = []
        for (position, shard) in plan.outputShards.enumerated() where share.owns(shardAt: position) {
            progress?.startFile(shard.name, bytes: plan.inputBytes(ofOutputShard: position))
            records.append(try writeShard(position, plan: plan, into: "\(output)/\(shard.name)", progress: progress).json)
            progress?.finishFile()
        }
        let part: JSONValue = .object([
            ("schema_version", .int(Manifest.schemaVersion)),
            ("worker", .string("\(share.index)/\(share.count)")),
            ("summary", plan.summary.json),
            ("shards", .array(records)),
        ])
        let sink = try sealedTextFile(part.serialized(.pretty), to: "\(output)/\(share.partFileName)", replace: true)
        try sink.publish()
    }

    /// Writes output shard `index` of `plan` into an atomic file.
    static func writeShard(_ index: Int, plan: QuantizePlan, into path: String, progress: JobProgress? = nil) throws -> ShardRecord {
        let shard = plan.outputShards[index]
        let input = plan.shards[shard.input].name
        let reader = try SafetensorsReader(path: "\(plan.folder.path)/\(input)", hashing: plan.options.hashes.hashesInput)
        let sink = try AtomicFileSink(path: path, replace: true, hashing: false, io: plan.options.outputIO)  // the executor hashes
        let result = try PlanExecutor.writeShard(index, of: plan, reader: reader, sink: sink, progress: progress)
        try sink.publish()
        return ShardRecord(
            name: shard.name, input: result.input, output: result.output, dataBytes: result.dataBytes,
            tensorNames: plan.outputTensorNames(ofOutputShard: index), reports: result.tensors)
    }

    /// Writes the index, `config.json`, `hf_quant_config.json`, the copies and the manifest into
    /// `directory` (each file atomically), from the shard records. Shared by single runs and `merge`.
    static func writeFolderFiles(summary: FolderSummary, records: [JSONValue], into directory: String, invocation: [String]) throws -> JSONValue {
        var parsed: [(name: String, dataBytes: Int, tensorNames: [String], json: JSONValue)] = []
        for record in records {
            guard let p = ShardRecord.parse(record) else {
                throw ModelFolderError(path: directory, reason: "a shard record is malformed")
            }
            parsed.append(p)
        }
        let folder = summary.folder
        var files: [(name: String, text: String)] = []
        if folder.indexName != nil || parsed.count > 1 {
            var map: [(String, String)] = []
            for p in parsed { for t in p.tensorNames { map.append((t, p.name)) } }
            map.sort { $0.0 < $1.0 }
            let index: JSONValue = .object([
                ("metadata", .object([("total_size", .int(parsed.reduce(0) { $0 + $1.dataBytes }))])),
                ("weight_map", .object(map.map { ($0.0, JSONValue.string($0.1)) })),
            ])
            files.append((ModelFolder.indexFileName, index.serialized(.pretty)))
        }
        let quantization = summary.quantization
        if let config = folder.config {
            files.append(("config.json", quantization.updating(config: config).serialized(.pretty)))
        }
        if let hf = quantization.hfQuantConfig {
            files.append((hfQuantConfigFileName, hf.serialized(.pretty)))
        }
        for (name, text) in files {
            let sink = try sealedTextFile(text, to: "\(directory)/\(name)", replace: true)
            try sink.publish()
        }
        for name in folder.otherFiles where !files.contains(where: { $0.name == name }) && name != manifestFileName {
            try copyFile(from: "\(folder.path)/\(name)", to: "\(directory)/\(name)")
        }
        let manifest = Manifest.folderDocument(summary: summary, records: parsed.map(\.json), invocation: invocation)
        let sink = try sealedTextFile(manifest.serialized(.pretty), to: "\(directory)/\(manifestFileName)", replace: true)
        try sink.publish()
        return manifest
    }

    /// Copies a file into an atomic destination, never with wider permissions than the source.
    static func copyFile(from source: String, to destination: String) throws {
        try copyRegularFile(from: source, to: destination)
    }
}

/// What the folder-level files (index, config, manifest) are made from besides the shard records:
/// the input folder, the quantization config, and the options and fusion entries of the manifest.
/// A `--shard` worker stores it in its part file so that `merge` needs no other input.
public struct FolderSummary: Sendable {
    public var folder: ModelFolder
    public var quantization: QuantizationConfig
    /// The manifest's `options` entry.
    public var options: JSONValue
    /// The manifest's `fusion` entry.
    public var fusion: JSONValue
    /// The output shard names, in order.
    public var outputShards: [String]

    /// As stored in a worker's part file.
    public var json: JSONValue {
        .object([
            ("input_folder", .string(folder.path)),
            ("format", .string(quantization.format.rawValue)),
            ("calibrated", .bool(quantization.calibrated)),
            ("dynamic_activations", .bool(quantization.dynamicActivations)),
            ("ignore", .array(quantization.ignore.map { .string($0) })),
            ("options", options),
            ("fusion", fusion),
            ("output_shards", .array(outputShards.map { .string($0) })),
        ])
    }

    /// Reads ``json`` back, re-reading the input folder's layout (config, index, other files).
    public init(json: JSONValue, path: String) throws {
        guard let input = json["input_folder"]?.stringValue,
            let format = json["format"]?.stringValue.flatMap(CheckpointFormat.init(rawValue:)),
            let calibrated = json["calibrated"]?.boolValue,
            let dynamic = json["dynamic_activations"]?.boolValue,
            let ignore = json["ignore"]?.arrayValue?.compactMap(\.stringValue),
            let options = json["options"], let fusion = json["fusion"],
            let outputShards = json["output_shards"]?.arrayValue?.compactMap(\.stringValue)
        else { throw ModelFolderError(path: path, reason: "not an nvfp4 worker part file (summary missing or malformed)") }
        folder = try ModelFolder(path: input)
        quantization = QuantizationConfig(format: format, calibrated: calibrated, dynamicActivations: dynamic, ignore: ignore)
        self.options = options
        self.fusion = fusion
        self.outputShards = outputShards
    }

    public init(folder: ModelFolder, quantization: QuantizationConfig, options: JSONValue, fusion: JSONValue, outputShards: [String]) {
        self.folder = folder
        self.quantization = quantization
        self.options = options
        self.fusion = fusion
        self.outputShards = outputShards
    }
}

extension QuantizePlan {
    /// The folder-level summary of this plan.
    public var summary: FolderSummary {
        FolderSummary(
            folder: folder, quantization: quantizationConfig, options: Manifest.optionsEntry(self),
            fusion: Manifest.fusionEntry(self), outputShards: outputShards.map(\.name))
    }
}

extension FolderQuantizeJob {
    /// `nvfp4 merge OUT_DIR`: checks that every worker's part file is present and from the same
    /// run, then writes the index, config, copies and manifest, and removes the part files.
    ///
    /// - Returns: The manifest.
    @discardableResult
    /// - Parameter progress: Given the number of shards, the progress to tell of each shard checked.
    public static func merge(output: String, invocation: [String], progress makeProgress: (Int) -> JobProgress? = { _ in nil }) throws -> JSONValue {
        let names = try ModelFolder.checkedList(output).map(\.name).filter { $0.hasPrefix("nvfp4-part-") && $0.hasSuffix(".json") }
        guard let first = names.first else {
            throw ModelFolderError(path: output, reason: "no nvfp4-part-I-of-N.json files; run the workers with --shard I/N first")
        }
        var parts: [(share: WorkerShare, json: JSONValue)] = []
        for name in names {
            let path = "\(output)/\(name)"
            let json: JSONValue
            do { json = try JSONParser.parse(try ModelFolder.readText(path)) } catch let e as ModelFolderError { throw e } catch {
                throw ModelFolderError(path: path, reason: "invalid JSON: \(error)")
            }
            guard let share = json["worker"]?.stringValue.flatMap(WorkerShare.init), name == share.partFileName else {
                throw ModelFolderError(path: path, reason: "not an nvfp4 worker part file")
            }
            parts.append((share, json))
        }
        let count = parts[0].share.count
        let present = Set(parts.map(\.share.index))
        guard parts.allSatisfy({ $0.share.count == count }) else {
            throw ModelFolderError(path: "\(output)/\(first)", reason: "part files of different worker counts are mixed")
        }
        let missing = (0..<count).filter { !present.contains($0) }
        guard missing.isEmpty else {
            throw ModelFolderError(path: output, reason: "missing part files of workers \(missing.map { "\($0)/\(count)" }.joined(separator: ", ")); wait for them or rerun them")
        }
        parts.sort { $0.share.index < $1.share.index }
        let summaryJSON = parts[0].json["summary"] ?? .null
        for part in parts where part.json["summary"] != summaryJSON {
            throw ModelFolderError(path: "\(output)/\(part.share.partFileName)", reason: "written by a different run (options, input or plan differ from worker 0)")
        }
        let summary = try FolderSummary(json: summaryJSON, path: "\(output)/\(parts[0].share.partFileName)")
        for name in summary.outputShards { try FilePolicy.checkPlainFileName(name, readFrom: "\(output)/\(parts[0].share.partFileName)") }
        var byName: [String: JSONValue] = [:]
        for part in parts {
            for record in part.json["shards"]?.arrayValue ?? [] {
                guard let p = ShardRecord.parse(record) else { throw ModelFolderError(path: "\(output)/\(part.share.partFileName)", reason: "malformed shard record") }
                byName[p.name] = record
            }
        }
        var records: [JSONValue] = []
        let progress = makeProgress(summary.outputShards.count)
        for name in summary.outputShards {
            progress?.startFile(name, bytes: byName[name]?["output"]?["bytes"]?.unsignedValue ?? 0)
            defer { progress?.finishFile() }
            guard let record = byName[name] else {
                throw ModelFolderError(path: output, reason: "no worker wrote shard \(name)")
            }
            guard let bytes = record["output"]?["bytes"]?.unsignedValue, fileSize("\(output)/\(name)") == bytes else {
                throw ModelFolderError(path: "\(output)/\(name)", reason: "missing or not the size its worker recorded")
            }
            records.append(record)
            progress?.advance(bytes, item: name)
        }
        let manifest = try writeFolderFiles(summary: summary, records: records, into: output, invocation: invocation)
        for part in parts { unlink("\(output)/\(part.share.partFileName)") }
        return manifest
    }
}

/// The size of a regular file, or `nil`.
public func fileSize(_ path: String) -> UInt64? {
    var st = stat()
    guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
    return UInt64(st.st_size)
}
