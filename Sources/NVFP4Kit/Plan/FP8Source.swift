/// Where an FP8 weight's scale is and how it applies: recorded in the weight's ``TensorPlan``.
public struct FP8Source: Sendable, Equatable {
    /// The scale tensor (`<weight>_scale_inv` or `<weight>_scale`).
    public var scale: TensorInfo
    /// Index into ``QuantizePlan/shards`` of the shard that holds the scale (it may differ from the weight's).
    public var scaleShard: Int
    /// Which elements each scale covers and the dequantized dtype.
    public var scaling: FP8Scaling
    /// Which scheme the scale's shape showed.
    public var scheme: FP8Scheme
}

/// How an FP8 weight's scales are laid out.
public enum FP8Scheme: String, Sendable, Equatable {
    /// A grid of `bn × bk` blocks (DeepSeek's `weight_scale_inv`, compressed-tensors `block`).
    case block
    /// One scale per output row (`[N, 1]`).
    case channel
    /// One scale for the whole matrix.
    case tensor
}

/// What a checkpoint's `config.json` says about its FP8 weights, and the names FP8 checkpoints use.
public struct FP8Checkpoint: Sendable {
    /// The block `[rows, columns]` of block-scaled weights (`weight_block_size`, or a
    /// compressed-tensors group's `block_structure`), or `nil` where the config names none.
    public var blockSize: [Int]?
    /// Whether the config says `quant_method "fp8"` (its weights dequantize to bf16, as
    /// DeepSeek's `fp8_cast_bf16` writes them).
    public var fp8Method: Bool
    /// Several config groups name different block structures (no single block size applies).
    public var conflictingBlocks: Bool

    /// The suffixes of an FP8 weight's scale, in lookup order.
    static let scaleSuffixes = ["_scale_inv", "_scale"]

    /// Reads the `quantization_config` of `config`; `blockSize` (`--fp8-block-size`) names the
    /// block where no config does (a bare file) and must agree with the config where both do.
    init(config: JSONValue?, blockSize: [Int]?) {
        let quantization = config?["quantization_config"]
        fp8Method = quantization?["quant_method"]?.stringValue?.lowercased() == "fp8"
        var blocks: [[Int]] = []
        if let size = quantization?["weight_block_size"]?.arrayValue?.compactMap(FP8Checkpoint.blockExtent), size.count == 2 { blocks.append(size) }
        for (_, group) in quantization?["config_groups"]?.objectValue ?? [] {
            if let size = group["weights"]?["block_structure"]?.arrayValue?.compactMap(FP8Checkpoint.blockExtent), size.count == 2, !blocks.contains(size) {
                blocks.append(size)
            }
        }
        if let blockSize, !blocks.contains(blockSize) { blocks.append(blockSize) }
        conflictingBlocks = blocks.count > 1
        self.blockSize = blocks.count == 1 ? blocks[0] : nil
    }

    /// A block extent from the config: a positive integer of sane size, else `nil`.
    static func blockExtent(_ value: JSONValue) -> Int? {
        guard let v = value.unsignedValue, v > 0, v <= 1 << 24 else { return nil }
        return Int(v)
    }

    /// Whether a folder's `quantization_config` describes FP8 weights this tool converts:
    /// `quant_method "fp8"`, or compressed-tensors whose weight groups are all 8-bit floats.
    public static func isConvertible(quantizationConfig q: JSONValue) -> Bool {
        switch q["quant_method"]?.stringValue?.lowercased() {
        case "fp8": return true
        case "compressed-tensors":
            let groups = q["config_groups"]?.objectValue ?? []
            return !groups.isEmpty && groups.allSatisfy { _, group in
                group["weights"]?["type"]?.stringValue == "float" && group["weights"]?["num_bits"]?.unsignedValue == 8
            }
        default: return false
        }
    }

    /// Every tensor by name (the first of a name), for ``source(of:index:)``'s scale lookups; empty
    /// when no header holds an FP8 tensor, so inputs without FP8 never pay for an index of every
    /// tensor (a million names).
    static func lookupIndex(_ headers: [SafetensorsHeader]) -> [String: (shard: Int, tensor: TensorInfo)] {
        var index: [String: (shard: Int, tensor: TensorInfo)] = [:]
        guard headers.contains(where: { $0.tensors.contains { $0.dtype == .f8E4M3 } }) else { return index }
        for (s, header) in headers.enumerated() {
            for tensor in header.tensors where index[tensor.name] == nil { index[tensor.name] = (s, tensor) }
        }
        return index
    }

    /// The FP8 source of weight `tensor` (an `F8_E4M3` `.weight`), its scale found by name in
    /// `index` (every shard's tensors).
    ///
    /// - Throws: ``FP8Error`` when the scale is missing, of another dtype, or does not fit the weight.
    func source(of tensor: TensorInfo, index: [String: (shard: Int, tensor: TensorInfo)]) throws(FP8Error) -> FP8Source {
        guard tensor.shape.count == 2 || tensor.shape.count == 3 else {
            throw .unconvertible(tensor: tensor.name, problem: "an FP8 weight of \(tensor.shape.count) dimensions (2 or 3 are read)")
        }
        guard let suffix = FP8Checkpoint.scaleSuffixes.first(where: { index[tensor.name + $0] != nil }), let (shard, scale) = index[tensor.name + suffix] else {
            throw .missingScale(weight: tensor.name)
        }
        if FP8Checkpoint.scaleSuffixes.filter({ index[tensor.name + $0] != nil }).count > 1 {
            throw .unconvertible(tensor: tensor.name, problem: "it has both a _scale_inv and a _scale tensor; which one applies is ambiguous")
        }
        guard FP8Dequantizer.scaleDTypes.contains(scale.dtype) else {
            throw .unconvertible(tensor: scale.name, problem: "scale dtype \(scale.dtype.rawValue) (F32, BF16, F16 or F8_E8M0 are read)")
        }
        let matrices = tensor.shape.count == 3 ? tensor.shape[0] : 1
        let rows = tensor.shape[tensor.shape.count - 2], columns = tensor.shape[tensor.shape.count - 1]
        // DeepSeek's fp8_cast_bf16 (`_scale_inv`) and `quant_method "fp8"` checkpoints become bf16;
        // compressed-tensors' dequantize computes in the scale's dtype, the model dtype (bf16 or
        // f16); an fp32 result is stored into the model's bf16 parameters (a second rounding).
        let target: DType = suffix == "_scale" && !fp8Method && (scale.dtype == .bf16 || scale.dtype == .f16) ? scale.dtype : .bf16
        func expected(_ scaling: FP8Scaling) -> [Int] {
            let grid = scaling.grid(rows: rows, columns: columns)
            return matrices == 1 && tensor.shape.count == 2 ? [grid.rows, grid.columns] : [matrices, grid.rows, grid.columns]
        }
        if let block = blockSize, block.allSatisfy({ $0 > 0 }) {
            let scaling = FP8Scaling(blockRows: block[0], blockColumns: block[1], target: target)
            if scale.shape == expected(scaling) { return FP8Source(scale: scale, scaleShard: shard, scaling: scaling, scheme: .block) }
        }
        if scale.elementCount == matrices, tensor.shape.count == 2 || scale.shape.first == matrices {
            return FP8Source(scale: scale, scaleShard: shard, scaling: FP8Scaling(blockRows: rows, blockColumns: columns, target: target), scheme: .tensor)
        }
        let channel = FP8Scaling(blockRows: 1, blockColumns: columns, target: target)
        if scale.shape == expected(channel) || (tensor.shape.count == 2 && scale.shape == [rows]) {
            return FP8Source(scale: scale, scaleShard: shard, scaling: channel, scheme: .channel)
        }
        guard !conflictingBlocks else {
            throw .unconvertible(tensor: scale.name, problem: "block scales, and the config names several block structures")
        }
        guard let block = blockSize else {
            throw .unconvertible(tensor: scale.name, problem: "block scales \(scale.shape) and no block size: config.json's weight_block_size, or --fp8-block-size for a bare file")
        }
        throw .unconvertible(tensor: scale.name, problem: "scale shape \(scale.shape) does not fit weight \(tensor.shape) in blocks of \(block[0])x\(block[1])")
    }
}

/// An FP8 tensor the plan cannot convert; never passed through.
public enum FP8Error: Error, Sendable, CustomStringConvertible {
    case missingScale(weight: String)
    case unconvertible(tensor: String, problem: String)
    /// A stream holds a weight's scale after the weight.
    case scaleAfterWeight(weight: String, scale: String)

    public var description: String {
        switch self {
        case .missingScale(let weight):
            return "FP8 weight \"\(weight)\" has no scale (\"\(weight)_scale_inv\" or \"\(weight)_scale\") in any shard; it cannot be converted"
        case .unconvertible(let tensor, let problem):
            return "FP8 tensor \"\(tensor)\" cannot be converted: \(problem)"
        case .scaleAfterWeight(let weight, let scale):
            return "\"\(scale)\" follows its FP8 weight \"\(weight)\" in this stream; give a seekable file"
        }
    }
}
