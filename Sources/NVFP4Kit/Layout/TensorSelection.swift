import Glibc

/// Why a tensor is left as it is.
public enum KeepReason: String, Sendable, CaseIterable {
    case notAWeight = "not a .weight tensor"
    case notTwoDimensional = "not a 2-D matrix"
    case unsupportedDtype = "dtype is not bf16, f16 or f32"
    case embedding = "embedding"
    case lmHead = "lm_head (output projection)"
    case norm = "normalization layer"
    case router = "MoE router"
    case notMultipleOf16 = "a dimension is not a multiple of 16"
    case excluded = "matched --exclude"
    case notIncluded = "not matched by --include"
    case visionOrAudio = "vision or audio tower"
    case multiTokenPrediction = "MTP / draft layer"
    case linearAttention = "linear-attention or convolution layer"
    case fusedPartnerKept = "a fused partner (q/k/v, gate/up, w1/w3) is kept"
    case notMultipleOf16AfterTensorParallel = "K / tensor-parallel size is not a multiple of 16 (row-parallel layer)"
    case stackedExpertsUnsupported = "stacked experts: torchao's 3-D layout needs N % 128 == 0, two-level scaling and no calibration"
    case mlaKVUpProjection = "MLA kv_b_proj (the engines absorb it into attention)"
    case mlaAttention = "MLA attention projection (NVIDIA's DeepSeek recipe keeps attention; --mla-attention quantize)"
    case fp8Scale = "FP8 scale (applied to its weight, not written)"
}

/// What happens to one input tensor.
public enum TensorDecision: Equatable, Sendable {
    case quantize
    case keep(KeepReason)
}

/// Decides which tensors become NVFP4.
///
/// The default rule quantizes 2-D `.weight` matrices of linear layers whose both dimensions are
/// multiples of 16, and keeps embeddings, `lm_head`, norms, MoE routers, biases and everything
/// else. `--include` globs make only matching tensors candidates; `--exclude` globs win over
/// everything. A glob matches the tensor name (`model.layers.0.mlp.up_proj.weight`) or its module
/// name (`model.layers.0.mlp.up_proj`); `*` crosses dots.
public struct TensorSelection: Sendable {
    public var include: [String]
    public var exclude: [String]

    public init(include: [String] = [], exclude: [String] = []) {
        self.include = include
        self.exclude = exclude
    }

    /// The decision for `tensor`.
    public func decide(_ tensor: TensorInfo) -> TensorDecision {
        let name = tensor.name
        if exclude.contains(where: { matches($0, name) }) { return .keep(.excluded) }
        let included = isIncluded(name)
        if !include.isEmpty && !included { return .keep(.notIncluded) }
        guard name.hasSuffix(".weight") || name == "weight" else { return .keep(.notAWeight) }
        if !included, let reason = TensorSelection.structuralReason(module: moduleName(name)) { return .keep(reason) }
        guard tensor.shape.count == 2 else { return .keep(.notTwoDimensional) }
        guard tensor.dtype.isQuantizable else { return .keep(.unsupportedDtype) }
        guard tensor.shape[0] % 16 == 0, tensor.shape[1] % 16 == 0 else { return .keep(.notMultipleOf16) }
        return .quantize
    }

    /// Whether an `--include` glob names `name`: it then wins over the keep rules (by name and by model).
    public func isIncluded(_ name: String) -> Bool { include.contains(where: { matches($0, name) }) }

    // The name rules' word lists, built once (this runs for every tensor of a million-tensor header).
    private static let embeddingLeaves: Set<String> = ["wte", "wpe", "shared", "tok_embeddings"]
    private static let normWords: Set<Substring> = ["norm", "layernorm", "rmsnorm", "groupnorm", "batchnorm", "ln", "layer_norm"]
    private static let routerParents: Set<String> = ["mlp", "moe", "block_sparse_moe", "feed_forward"]
    private static let towers: Set<String> = ["visual", "vision_tower", "vision_model", "multi_modal_projector", "audio_tower"]

    /// Layers the engines keep in high precision, recognised by name.
    static func structuralReason(module: String) -> KeepReason? {
        let parts = module.split(separator: ".").map { $0.lowercased() }
        guard let last = parts.last else { return nil }
        if let reason = towerReason(parts) { return reason }
        if last == "lm_head" || last == "output" && parts.count == 1 { return .lmHead }
        if last.contains("embed") || embeddingLeaves.contains(last) { return .embedding }
        let words = last.split(separator: "_")
        if words.contains(where: { word in
            normWords.contains(word)
                || (word.hasPrefix("norm") && word.dropFirst(4).allSatisfy(\.isNumber))
                || (word.hasPrefix("ln") && word.dropFirst(2).allSatisfy(\.isNumber))
        }) {
            return .norm
        }
        if last == "kv_b_proj" { return .mlaKVUpProjection }
        if last == "router" || last == "shared_expert_gate" || (last == "gate" && parts.dropLast().last.map { routerParents.contains($0) } == true) {
            return .router
        }
        return nil
    }

    /// Vision/audio towers, MTP layers and linear-attention blocks, which the engines build unquantized.
    static func towerReason(_ parts: [String]) -> KeepReason? {
        if parts.contains(where: { towers.contains($0) || $0.hasPrefix("embed_vision") }) { return .visionOrAudio }
        if parts.first == "mtp" || parts.contains("mtp") { return .multiTokenPrediction }
        if parts.contains("linear_attn") || parts.last?.contains("conv1d") == true { return .linearAttention }
        return nil
    }

    /// Leaf names of layers engines split along K (row-parallel) under tensor parallelism
    /// (vLLM `RowParallelLinear`).
    public static let rowParallelLeaves: Set<String> = ["o_proj", "down_proj", "w2", "out_proj", "wo", "dense_4h_to_h", "fc2", "c_proj"]

    /// Whether `module`'s K splits into per-rank slices that are multiples of 16 under
    /// `tensorParallel` ranks (always, for layers that are not row-parallel): vLLM and SGLang
    /// refuse row-parallel NVFP4 layers whose per-rank K is not.
    public static func splitsEvenly(module: String, columns: Int, tensorParallel: Int) -> Bool {
        guard tensorParallel > 1, rowParallelLeaves.contains(String(module.split(separator: ".").last ?? "")) else { return true }
        return columns % (16 * tensorParallel) == 0
    }

    /// Whether `pattern` matches any of `names` (tensor names; their module names count too).
    public func matchesAny(_ pattern: String, _ names: [String]) -> Bool {
        names.contains { matches(pattern, $0) }
    }

    private func matches(_ pattern: String, _ name: String) -> Bool {
        if fnmatch(pattern, name, 0) == 0 { return true }
        return fnmatch(pattern, moduleName(name), 0) == 0
    }
}

/// `model.layers.0.mlp.up_proj.weight` → `model.layers.0.mlp.up_proj`.
public func moduleName(_ tensorName: String) -> String {
    guard let dot = tensorName.lastIndex(of: ".") else { return "" }
    return String(tensorName[..<dot])
}
