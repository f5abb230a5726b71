/// Where a plan's input comes from: a model folder, or one safetensors file (a file, `-`, or
/// `.zst`), which is planned as a folder of one shard.
public enum PlanSource: Sendable {
    case folder(ModelFolder)
    case file(displayPath: String)

    /// The folder's path or the file's display path.
    public var displayPath: String {
        switch self {
        case .folder(let f): return f.path
        case .file(let p): return p
        }
    }

    /// The folder, for folder inputs.
    public var folder: ModelFolder? {
        if case .folder(let f) = self { return f }
        return nil
    }
}

/// Everything decided about a quantization before any weight is written: for every input tensor
/// its decision and reason, how it is written, its fused group and the global scale it uses, its
/// output names and output shard; the shards and their byte sizes. Deterministic for a given
/// input and options, so every worker of a `--shard I/N` run derives the same plan.
///
/// Quantize, the summary, the manifest, `--shard`/`merge` and the dry-run view all read this one
/// value; ``PlanExecutor`` writes it.
public struct QuantizePlan: Sendable {
    /// One input shard.
    public struct Shard: Sendable {
        /// The file name inside the model folder (also the output file name), or the file's display path.
        public var name: String
        public var header: SafetensorsHeader
    }

    /// A fused group and the global scale its members use.
    public struct Group: Sendable {
        public var group: FusedGroup
        /// Whether the members are quantized (all) or kept (all).
        public var quantized: Bool
        /// Whether the members are written with one global scale (the format's rule; quantized groups only).
        public var sharesScale: Bool
        /// Each member's own amax, in member order (shared groups only).
        public var memberAmax: [Float]
        /// The max over the members, which every member's global scale derives from (shared groups only).
        public var sharedAmax: Float?
    }

    /// One output shard: the input shard it comes from and which planned tensors it holds.
    public struct OutputShard: Sendable {
        /// The output file name.
        public var name: String
        /// Index into ``shards``.
        public var input: Int
        /// Indices into ``tensors``, in write order.
        public var tensors: [Int]
    }

    public var source: PlanSource
    public var shards: [Shard]
    /// Every input tensor, shard by shard in file order.
    public var tensors: [TensorPlan]
    public var groups: [Group]
    public var outputShards: [OutputShard]
    public var fusion: FusedGroups
    /// Options with the scale plan (shared and calibrated amax) filled in.
    public var options: QuantizeOptions
    /// The tensor-parallel size row-parallel layers were checked against.
    public var tensorParallel: Int
    /// `--exclude` patterns that match no tensor (a warning: `--include` patterns that match
    /// nothing are an error).
    public var unmatchedExcludes: [String]
    /// Whether the shared scales were measured (``sharedAmaxPrePass``); a dry run plans without.
    public var measured: Bool

    /// Plans the quantization of `shards`.
    ///
    /// - Parameters:
    ///   - config: The model's `config.json` (fusion rules), if any.
    ///   - calibration: Module name → calibrated max |input|, or `nil` for weight-only.
    ///   - maxShardSize: Split output shards so that each holds at most this many bytes of tensor
    ///     data (a larger tensor gets a shard of its own); `nil` keeps the input's sharding.
    ///   - tensorParallel: Row-parallel layers whose `K / tensorParallel` is not a multiple of 16 are kept.
    ///   - measure: Read the members of fused groups that share a scale for their amax (what the
    ///     writer needs); a dry run leaves it out and reads no tensor data.
    ///   - open: Opens input shard `i` for the amax pre-pass over fused groups that share a scale.
    /// - Throws: ``PlanError`` (wrapped in ``FileError``) for an `--include` that matches nothing or
    ///   a plan that quantizes nothing; ``FileError`` for non-finite weights, calibration problems
    ///   or colliding output names.
    public init(
        source: PlanSource, shards: [Shard], config: JSONValue?, options: QuantizeOptions, calibration: [String: Float]?,
        calibrationPath: String = "calibration", maxShardSize: Int? = nil, tensorParallel: Int = 1, measure: Bool = true,
        open: (Int) throws -> SafetensorsReader
    ) throws {
        self.source = source
        self.shards = shards
        self.tensorParallel = tensorParallel
        fusion = FusedGroups(config: config)
        var options = options
        let names = shards.flatMap { $0.header.tensors.map(\.name) }
        if let pattern = options.selection.include.first(where: { !options.selection.matchesAny($0, names) }) {
            throw FileError(path: source.displayPath, cause: PlanError.includeMatchesNothing(pattern: pattern))
        }
        unmatchedExcludes = options.selection.exclude.filter { !options.selection.matchesAny($0, names) }
        let folderPath = source.folder?.path
        var tensors = try QuantizePlan.decide(
            shards: shards, config: config, options: options, calibrated: calibration != nil, tensorParallel: tensorParallel,
            path: { s in folderPath.map { "\($0)/\(shards[s].name)" } ?? shards[s].name })
        var groups = QuantizePlan.fusedGroups(&tensors, fusion: fusion, format: options.format)
        if !tensors.contains(where: \.isQuantized) {
            throw FileError(path: source.displayPath, cause: PlanError.nothingToQuantize(reasons: QuantizePlan.reasonCounts(tensors)))
        }
        measured = measure
        if measure {
            try QuantizePlan.sharedAmaxPrePass(&groups, tensors: tensors, shards: shards, threads: options.threads, open: open)
        }
        for group in groups where group.sharesScale {
            for member in group.group.weights { options.scalePlan.sharedAmax[member] = group.sharedAmax }
        }
        if let calibration {
            try QuantizePlan.applyCalibration(calibration, path: calibrationPath, tensors: tensors, groups: groups, into: &options.scalePlan)
        }
        let layout = options.layout
        for i in tensors.indices {
            tensors[i].outputs = QuantizePlan.outputs(of: tensors[i], layout: layout, scalePlan: options.scalePlan)
        }
        try QuantizePlan.checkUniqueOutputs(tensors, source: source)
        outputShards = QuantizePlan.split(&tensors, shards: shards, maxShardSize: maxShardSize, single: source.folder == nil)
        self.tensors = tensors
        self.groups = groups
        self.options = options
        try checkHeaderLimits()
        FreedMemory.release()
    }

    /// A folder of one shard: `reader`'s file. Fused groups that share a scale are read twice, so
    /// such a plan needs a random-access reader (``SafetensorsReader/randomAccess(path:hashing:)``).
    public init(
        file reader: SafetensorsReader, options: QuantizeOptions, calibration: [String: Float]? = nil, calibrationPath: String = "calibration",
        tensorParallel: Int = 1, measure: Bool = true
    ) throws {
        try self.init(
            source: .file(displayPath: reader.displayPath), shards: [Shard(name: reader.displayPath, header: reader.header)],
            config: nil, options: options, calibration: calibration, calibrationPath: calibrationPath, tensorParallel: tensorParallel,
            measure: measure
        ) { _ in
            guard reader.isRandomAccess else {
                throw FileError(path: reader.displayPath, cause: PlanError.needsRandomAccess)
            }
            return reader
        }
    }

    /// The planned tensors of output shard `index`, in write order (a view: a million-tensor plan
    /// is never copied).
    public func tensors(ofOutputShard index: Int) -> LazyMapSequence<[Int], TensorPlan> {
        let tensors = tensors
        return outputShards[index].tensors.lazy.map { tensors[$0] }
    }

    /// Input bytes of the tensors written into output shard `index` (the work of that shard).
    public func inputBytes(ofOutputShard index: Int) -> UInt64 {
        tensors(ofOutputShard: index).reduce(0) { $0 + UInt64($1.tensor.byteCount) }
    }

    /// Output bytes of tensor data in output shard `index` (the header not included).
    public func outputDataBytes(ofOutputShard index: Int) -> Int {
        tensors(ofOutputShard: index).reduce(0) { $0 + $1.outputByteCount }
    }

    /// Writes output shard `index`'s header (length prefix and padded JSON) to `sink`, streamed:
    /// a million-tensor header is never held whole.
    ///
    /// - Returns: The size of the data section it describes.
    public func writeOutputHeader(ofOutputShard index: Int, to sink: any OutputSink) throws -> Int {
        let (tensors, metadata) = headerParts(ofOutputShard: index)
        return try SafetensorsLayoutPlan.writeHeader(tensors: tensors, metadata: metadata, to: sink)
    }

    /// The output header of output shard `index`, built whole (for views and tests; writers
    /// stream it with ``writeOutputHeader(ofOutputShard:to:)``).
    public func layoutPlan(ofOutputShard index: Int) -> SafetensorsLayoutPlan {
        let (tensors, metadata) = headerParts(ofOutputShard: index)
        return SafetensorsLayoutPlan(tensors: Array(tensors), metadata: metadata)
    }

    /// Output tensor names of output shard `index`, in file order.
    public func outputTensorNames(ofOutputShard index: Int) -> [String] {
        tensors(ofOutputShard: index).flatMap { $0.outputs.map(\.name) }
    }

    /// The tensors (a lazy view, in file order) and `__metadata__` of output shard `index`'s header.
    func headerParts(ofOutputShard index: Int) -> (tensors: some Collection<PlannedTensor>, metadata: [(key: String, value: String)]) {
        let entries = tensors(ofOutputShard: index)
        let header = shards[outputShards[index].input].header
        // Consumed FP8 scales are not written; an FP8 weight is described as its dequantized dtype.
        let tensors = tensors
        let described = options.format == .torchao ? Array(tensors.indices) : outputShards[index].tensors
        let metadata = options.layout.fileMetadata(
            inputMetadata: header.metadata,
            tensors: described.lazy.compactMap { i in
                let t = tensors[i]
                return t.kind == .consumed ? nil : (t.source, t.isQuantized, t.isQuantized && self.options.scalePlan.inputAmax[t.tensor.name] != nil)
            })
        return (entries.lazy.flatMap(\.outputs), metadata)
    }

    /// Kept tensors by reason (``KeepReason`` text), in the order reasons first appear; the names
    /// are read from the plan when asked (4 bytes a tensor, not a list of names).
    public var keptByReason: [(reason: String, names: PlannedNames)] {
        var order: [KeepReason] = []
        var positions: [KeepReason: [Int32]] = [:]
        for (i, t) in tensors.enumerated() {
            guard case .keep(let reason) = t.decision else { continue }
            if positions[reason] == nil { order.append(reason) }
            positions[reason, default: []].append(Int32(i))
        }
        return order.map { ($0.rawValue, PlannedNames(tensors: tensors, positions: positions[$0]!)) }
    }

    /// Module names of the quantized weights (expert slices count one each).
    public var quantizedModules: [String] { tensors.flatMap(\.quantizedWeightNames).map(moduleName) }

    /// Module names of kept Linear-like weights (`.weight` tensors of two or more dimensions).
    public var keptModules: [String] {
        tensors.filter { !$0.isQuantized && $0.tensor.name.hasSuffix(".weight") && $0.tensor.shape.count >= 2 }.map { moduleName($0.tensor.name) }
    }

    /// The names the ignore list must never be a substring of: quantized modules and the fused
    /// modules the engines build from them.
    public var quantizedNamesForMatching: [String] {
        quantizedModules + groups.filter(\.quantized).compactMap(\.group.fusedModule)
    }

    /// The `quantization_config` for this plan.
    public var quantizationConfig: QuantizationConfig {
        QuantizationConfig(
            format: options.format, calibrated: !options.scalePlan.inputAmax.isEmpty,
            dynamicActivations: options.dynamicActivations,
            ignore: IgnoreList.entries(kept: keptModules, quantized: quantizedNamesForMatching, format: options.format))
    }

    /// Weights kept only because a fused partner is kept, each with the partners that are kept for
    /// their own reason (excluded, not included, …).
    public var keptFusedPartners: [(kept: String, because: [String])] {
        let kept = groups.filter { !$0.quantized }
        guard !kept.isEmpty else { return [] }
        // Decisions of the kept groups' weights only: a million-tensor plan builds no name table.
        let members = Set(kept.flatMap(\.group.weights))
        var decisions: [String: TensorDecision] = [:]
        for t in tensors where members.contains(t.tensor.name) && decisions[t.tensor.name] == nil { decisions[t.tensor.name] = t.decision }
        return kept.flatMap { group in
            let causes = group.group.weights.filter { decisions[$0] != .keep(.fusedPartnerKept) }
            return group.group.weights.filter { decisions[$0] == .keep(.fusedPartnerKept) }.map { ($0, causes) }
        }
    }
}

/// Why a plan cannot be made.
public enum PlanError: Error, Sendable, CustomStringConvertible {
    /// Fused groups must be read twice, and the input is a stream.
    case needsRandomAccess
    /// Two input tensors would be written under the same name.
    case outputNameCollision(name: String, first: String, second: String)
    /// An `--include` pattern matches no tensor or module name.
    case includeMatchesNothing(pattern: String)
    /// No tensor would be quantized; the reasons, most common first.
    case nothingToQuantize(reasons: [(reason: String, count: Int)])
    /// An output shard's header would be larger than any safetensors reader (this one included) accepts
    /// (`atLeast`: `length` is a lower bound, measured without building torchao's metadata).
    case outputHeaderTooLarge(shard: String?, length: UInt64, atLeast: Bool, tensors: Int, describesAll: Bool)

    public var description: String {
        switch self {
        case .needsRandomAccess:
            return "fused layers share a global scale, so their weights are read twice; this input is a stream (open it with random access)"
        case .outputNameCollision(let name, let first, let second):
            return "tensors \"\(first)\" and \"\(second)\" would both be written as \"\(name)\"; rename one or --exclude it"
        case .includeMatchesNothing(let pattern):
            return "--include '\(pattern)' matches no tensor or module name (patterns match whole names; '*' crosses dots: try '*\(pattern)*')"
        case .nothingToQuantize(let reasons):
            let listed = reasons.prefix(4).map { "\($0.count) \($0.reason)" }.joined(separator: ", ")
            return "no tensor would be quantized (\(listed)); nothing to do — check --include/--exclude, or inspect the file with 'nvfp4 inspect'"
        case .outputHeaderTooLarge(let shard, let length, let atLeast, let tensors, let describesAll):
            let advice = describesAll
                ? "torchao's metadata describes every tensor in every shard, so use an engine layout (--format) or fewer tensors (--exclude)"
                : "split it with --max-shard-size or write fewer tensors (--exclude)"
            return "\(shard.map { "output shard \($0)" } ?? "the output") would have a \(atLeast ? "header of at least \(length) bytes" : "\(length)-byte header") (\(tensors) input tensors), over the \(SafetensorsHeader.maxHeaderLength)-byte limit of safetensors readers (nvfp4 included); nothing was written; \(advice)"
        }
    }
}

/// Input tensor names of some of a plan's entries, read from the plan on access.
public struct PlannedNames: RandomAccessCollection, Sendable {
    let tensors: [TensorPlan]
    let positions: [Int32]
    public var startIndex: Int { 0 }
    public var endIndex: Int { positions.count }
    public subscript(position: Int) -> String { tensors[Int(positions[position])].tensor.name }
}
