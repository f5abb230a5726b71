/// Planning a Hugging Face model folder: its shards' headers, checked against each other and the index.
extension QuantizePlan {
    /// `quant_method`s whose checkpoints hold quantized weights. (`gguf` is not among them: a folder
    /// converted from GGUF keeps that block, but its safetensors hold dense weights.)
    static let quantizedMethods: Set<String> = [
        "compressed-tensors", "modelopt", "modelopt_fp4", "torchao", "fp8", "gptq", "awq", "bitsandbytes", "mxfp4", "quark", "fbgemm_fp8",
    ]

    /// Reads the shards' headers, decides every tensor and runs the amax pre-pass over fused groups.
    ///
    /// - Throws: ``ModelFolderError`` for an inconsistent or already quantized folder, ``FileError``
    ///   for bad shards or weights, ``CalibrationError`` (wrapped in ``FileError``) for missing
    ///   calibration entries.
    public init(
        folder: ModelFolder, options: QuantizeOptions, calibration: [String: Float]?, calibrationPath: String = "calibration",
        maxShardSize: Int? = nil, tensorParallel: Int = 1, measure: Bool = true
    ) throws {
        if let quantization = folder.config?["quantization_config"], let method = quantization["quant_method"]?.stringValue,
            QuantizePlan.quantizedMethods.contains(method.lowercased()), !FP8Checkpoint.isConvertible(quantizationConfig: quantization)
        {
            throw ModelFolderError(path: "\(folder.path)/config.json", reason: "the model is already quantized (quant_method \"\(method)\"); start from the bf16/fp16/fp32 checkpoint (FP8 checkpoints, quant_method \"fp8\" or compressed-tensors float 8-bit, are read)")
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
        let names = shards.map(\.name)
        try self.init(
            source: .folder(folder), shards: shards, config: folder.config, options: options, calibration: calibration,
            calibrationPath: calibrationPath, maxShardSize: maxShardSize, tensorParallel: tensorParallel, measure: measure
        ) { s in try QuantizePlan.openShard(names[s], of: folder) }
    }

    /// Opens input shard `name` of `folder` for random access, without hashing.
    static func openShard(_ name: String, of folder: ModelFolder) throws -> SafetensorsReader {
        try SafetensorsReader(path: "\(folder.path)/\(name)", hashing: false)
    }

    /// Opens input shard `index` of a folder plan (an FP8 weight's scale may lie in another shard
    /// than the weight). A single-file plan has one shard, which its caller holds open.
    func openInputShard(_ index: Int) throws -> SafetensorsReader {
        guard let folder = source.folder else { throw FileError(path: shards[index].name, cause: PlanError.needsRandomAccess) }
        return try QuantizePlan.openShard(shards[index].name, of: folder)
    }

    /// The input folder of a folder plan.
    public var folder: ModelFolder {
        guard let folder = source.folder else { preconditionFailure("a single-file plan has no folder") }
        return folder
    }
}
