/// Everything decided about a model folder before any weight is written: the shards and their
/// headers, each tensor's decision, the fused groups and their shared amax, and the calibrated
/// activation amax. Deterministic for a given input and options, so every worker of a
/// `--shard I/N` run derives the same plan.
public struct FolderPlan: Sendable {
    /// One input shard.
    public struct Shard: Sendable {
        /// The file name inside the model folder (also the output file name).
        public var name: String
        public var header: SafetensorsHeader
    }

    /// A fused group and the amax its members share.
    public struct Group: Sendable {
        public var group: FusedGroup
        /// Whether the members are quantized (all) or kept (all).
        public var quantized: Bool
        /// Each member's own amax, in member order (quantized groups only).
        public var memberAmax: [Float]
        /// The max over the members (quantized groups only).
        public var sharedAmax: Float?
    }

    /// One output shard: the input shard it comes from and which of its tensors it holds.
    public struct OutputShard: Sendable {
        /// The output file name.
        public var name: String
        /// The input shard's file name.
        public var input: String
        /// The input tensors written into it; `nil` for all of the input shard's.
        public var tensors: Set<String>?
    }

    public var folder: ModelFolder
    public var shards: [Shard]
    /// The output shards, in order: one per input shard unless `maxShardSize` split them.
    public var outputShards: [OutputShard]
    public var fusion: FusedGroups
    public var groups: [Group]
    /// Options with the scale plan filled in.
    public var options: QuantizeOptions
    /// Module names kept and quantized (2-D `.weight` tensors only).
    /// The tensor-parallel size row-parallel layers were checked against.
    public var tensorParallel: Int
    public var keptModules: [String]
    public var quantizedModules: [String]

    /// Reads the shards' headers, decides every tensor and runs the amax pre-pass over fused groups.
    ///
    /// - Parameters:
    ///   - folder: The input folder.
    ///   - options: Selection, format, numerics, threads.
    ///   - calibration: Module name → calibrated max |input|, or `nil` for weight-only.
    ///   - calibrationPath: Where the calibration came from, for error messages.
    /// - Throws: ``ModelFolderError`` for an inconsistent folder, ``FileError`` for bad shards or
    ///   weights, ``CalibrationError`` (wrapped in ``FileError``) for missing calibration entries.
    ///   - maxShardSize: Split output shards so that each holds at most this many bytes of tensor
    ///     data (a single larger tensor gets a shard of its own); `nil` keeps the input's sharding.
    ///     Input shards are split, never merged.
    ///   - tensorParallel: The tensor-parallel size the model will be served with: row-parallel
    ///     layers (o_proj, down_proj, w2, …) whose `K / tensorParallel` is not a multiple of 16 are
    ///     kept, since vLLM and SGLang reject them.
    public init(
        folder: ModelFolder, options: QuantizeOptions, calibration: [String: Float]?, calibrationPath: String = "calibration",
        maxShardSize: Int? = nil, tensorParallel: Int = 1
    ) throws {
        self.folder = folder
        self.tensorParallel = tensorParallel
        if let method = folder.config?["quantization_config"]?["quant_method"]?.stringValue, FolderPlan.quantizedMethods.contains(method.lowercased()) {
            throw ModelFolderError(path: "\(folder.path)/config.json", reason: "the model is already quantized (quant_method \"\(method)\"); start from the bf16/fp16/fp32 checkpoint")
        }
        var shards: [Shard] = []
        var owner: [String: String] = [:]
        for name in folder.shards {
            let reader = try SafetensorsReader(path: "\(folder.path)/\(name)", hashing: false)
            for tensor in reader.header.tensors {
                if let other = owner[tensor.name] {
                    throw ModelFolderError(path: "\(folder.path)/\(name)", reason: "tensor \"\(tensor.name)\" is also in \(other)")
                }
                owner[tensor.name] = name
                if folder.indexName != nil, folder.weightMap[tensor.name] != name {
                    let listed = folder.weightMap[tensor.name].map { "maps it to \($0)" } ?? "does not list it"
                    throw ModelFolderError(path: "\(folder.path)/\(name)", reason: "holds tensor \"\(tensor.name)\" but the index \(listed)")
                }
            }
            shards.append(Shard(name: name, header: reader.header))
        }
        for (tensor, file) in folder.weightMap where owner[tensor] == nil {
            throw ModelFolderError(path: "\(folder.path)/\(ModelFolder.indexFileName)", reason: "lists tensor \"\(tensor)\" in \(file), which does not hold it")
        }
        self.shards = shards

        // Decisions, then whole-group consistency.
        let all = shards.flatMap(\.header.tensors)
        var decisions: [String: TensorDecision] = [:]
        var options = options
        for tensor in all {
            decisions[tensor.name] = options.selection.decide(tensor)
            if tensorParallel > 1, decisions[tensor.name] == .quantize, tensor.shape.count == 2,
                FolderPlan.rowParallelLeaves.contains(String(moduleName(tensor.name).split(separator: ".").last ?? "")),
                tensor.shape[1] % (16 * tensorParallel) != 0
            {
                decisions[tensor.name] = .keep(.notMultipleOf16AfterTensorParallel)
                options.scalePlan.forcedDecisions[tensor.name] = .keep(.notMultipleOf16AfterTensorParallel)
            }
            // torchao's 3-D path: stacked experts [E, N, K] with one scale per expert (folders only).
            if options.format == .torchao, options.mode == .twoLevel, calibration == nil,
                decisions[tensor.name] == .keep(.notTwoDimensional), StackedExperts.isEligible(tensor)
            {
                decisions[tensor.name] = .quantize
                options.scalePlan.forcedDecisions[tensor.name] = .quantize
            }
        }
        fusion = FusedGroups(config: folder.config)
        let found = fusion.groups(in: all.map(\.name))
        var groups: [Group] = []
        for group in found {
            let quantized = group.weights.allSatisfy { decisions[$0] == .quantize }
            if !quantized {
                for member in group.weights where decisions[member] == .quantize {
                    decisions[member] = .keep(.fusedPartnerKept)
                    options.scalePlan.forcedDecisions[member] = .keep(.fusedPartnerKept)
                }
            }
            groups.append(Group(group: group, quantized: quantized, memberAmax: [], sharedAmax: nil))
        }

        // The amax pre-pass: only fused members are read, shard by shard.
        var memberAmax: [String: Float] = [:]
        let members = Set(groups.filter(\.quantized).flatMap(\.group.weights))
        // (The pre-pass also runs for torchao, so that the manifest reports every group's amax.)
        for shard in shards where shard.header.tensors.contains(where: { members.contains($0.name) }) {
            let reader = try SafetensorsReader(path: "\(folder.path)/\(shard.name)", hashing: false)
            for tensor in shard.header.tensors where members.contains(tensor.name) {
                // Only finiteness is checked here: a member may be all zero, as long as its group is not.
                memberAmax[tensor.name] = try reader.withBytes(of: tensor) { bytes in
                    let matrix = DenseMatrix(bytes: bytes, dtype: tensor.dtype, rows: tensor.shape[0], columns: tensor.shape[1])
                    let (amax, bad) = ParallelLoop.magnitudeMaximum(matrix, threads: options.threads)
                    if let bad {
                        throw FileError(path: reader.displayPath, cause: WeightError.nonFinite(
                            tensor: tensor.name, index: bad, row: bad / matrix.columns, column: bad % matrix.columns))
                    }
                    return amax
                }
                reader.release(tensor)
            }
        }
        for i in groups.indices where groups[i].quantized {
            let amaxes = groups[i].group.weights.map { memberAmax[$0]! }
            let shared = amaxes.max()!
            groups[i].memberAmax = amaxes
            groups[i].sharedAmax = shared
            // torchao has no fused layers: its weights keep their own per-tensor scales.
            if options.format != .torchao {
                for member in groups[i].group.weights { options.scalePlan.sharedAmax[member] = shared }
            }
        }
        self.groups = groups

        // Calibration: every quantized module needs an entry; a group shares the max.
        var kept: [String] = []
        var quantized: [String] = []
        for tensor in all where tensor.name.hasSuffix(".weight") && tensor.shape.count >= 2 {
            if decisions[tensor.name] == .quantize { quantized.append(moduleName(tensor.name)) } else { kept.append(moduleName(tensor.name)) }
        }
        if let calibration {
            for module in quantized {
                guard let amax = calibration[module] else {
                    throw FileError(path: calibrationPath, cause: CalibrationError.missing(module: module))
                }
                guard amax.isFinite, amax > 0 else {
                    throw FileError(path: calibrationPath, cause: CalibrationError.invalidAmax(module: module, amax: amax))
                }
                options.scalePlan.inputAmax[module + ".weight"] = amax
            }
            for group in groups where group.quantized {
                let shared = group.group.weights.compactMap { options.scalePlan.inputAmax[$0] }.max()!
                for member in group.group.weights { options.scalePlan.inputAmax[member] = shared }
            }
        }
        if options.format == .torchao {
            options.metadataTensors = all.map { tensor in
                let quantized = (options.scalePlan.decision(for: tensor) ?? options.selection.decide(tensor)) == .quantize
                return (tensor, quantized, quantized && options.scalePlan.inputAmax[tensor.name] != nil)
            }
        }
        self.options = options
        outputShards = FolderPlan.split(shards, options: options, maxShardSize: maxShardSize)
        keptModules = kept
        quantizedModules = quantized
    }

    /// Leaf names of layers engines split along K (row-parallel) under tensor parallelism.
    static let rowParallelLeaves: Set<String> = ["o_proj", "down_proj", "w2", "out_proj", "wo", "dense_4h_to_h", "fc2", "c_proj"]

    /// `quant_method`s whose checkpoints hold quantized weights. (`gguf` is not among them: a folder
    /// converted from GGUF keeps that block, but its safetensors hold dense weights.)
    static let quantizedMethods: Set<String> = [
        "compressed-tensors", "modelopt", "modelopt_fp4", "torchao", "fp8", "gptq", "awq", "bitsandbytes", "mxfp4", "quark", "fbgemm_fp8",
    ]

    /// Cuts each input shard into output shards of at most `maxShardSize` data bytes, in file order.
    static func split(_ shards: [Shard], options: QuantizeOptions, maxShardSize: Int?) -> [OutputShard] {
        guard let maxShardSize else { return shards.map { OutputShard(name: $0.name, input: $0.name, tensors: nil) } }
        let layout = options.layout
        var pieces: [(input: String, tensors: [String])] = []
        for shard in shards {
            var current: [String] = []
            var bytes = 0
            for tensor in shard.header.tensors {
                let decision = options.scalePlan.decision(for: tensor) ?? options.selection.decide(tensor)
                let size = decision == .quantize
                    ? layout.storedParts(ofWeight: tensor.name, rows: tensor.shape[0], columns: tensor.shape[1],
                                         calibrated: options.scalePlan.inputAmax[tensor.name] != nil).reduce(0) { $0 + $1.tensor.byteCount }
                    : tensor.byteCount
                if !current.isEmpty && bytes + size > maxShardSize {
                    pieces.append((shard.name, current))
                    current = []
                    bytes = 0
                }
                current.append(tensor.name)
                bytes += size
            }
            pieces.append((shard.name, current))
        }
        if pieces.count == 1 { return [OutputShard(name: ModelFolder.singleFileName, input: pieces[0].input, tensors: nil)] }
        let digits = max(5, String(pieces.count).count)
        func padded(_ n: Int) -> String { String(repeating: "0", count: max(0, digits - String(n).count)) + String(n) }
        return pieces.enumerated().map { i, piece in
            OutputShard(name: "model-\(padded(i + 1))-of-\(padded(pieces.count)).safetensors", input: piece.input, tensors: Set(piece.tensors))
        }
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
}
