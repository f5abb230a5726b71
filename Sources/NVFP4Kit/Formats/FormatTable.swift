/// The on-disk layouts of NVFP4 checkpoints that engines load.
///
/// The packed e2m1 bytes and the e4m3 block scales are the same in every layout; the layouts
/// differ in tensor names, in whether block scales are swizzled, and in how the fp32 per-tensor
/// ("global") scale is stored. See `docs/check.md` and the reference notes on checkpoint formats.
public enum CheckpointLayout: String, Sendable, CaseIterable {
    /// torchao's flattened `NVFP4Tensor`: `<m>._weight_qdata`, swizzled `<m>._weight_scale`.
    case torchao
    /// compressed-tensors `nvfp4-pack-quantized` (llm-compressor): `<m>.weight_packed`, `<m>.weight_global_scale = 2688/amax`.
    case compressedTensors = "compressed-tensors"
    /// NVIDIA ModelOpt unified HF export: `<m>.weight` (U8), `<m>.weight_scale_2 = amax/2688`.
    case modelopt
    /// No NVFP4 tensors at all.
    case unquantized

    /// The layout of a format.
    public init(_ format: CheckpointFormat) { self = CheckpointLayout(rawValue: format.rawValue)! }

    /// The format of this layout, or `nil` for ``unquantized``.
    public var format: CheckpointFormat? { CheckpointFormat(rawValue: rawValue) }
}

/// The checkpoint layouts `nvfp4 quantize` writes (`--format`): one row of the format table each.
///
/// All three store the same packed e2m1 bytes and the same e4m3 block scales (one codec, one set
/// of bytes); they differ in tensor names, in the block-scale layout (swizzled for torchao,
/// row-major otherwise) and in how the per-tensor ("global") scales are written. Everything that
/// differs is in ``names``; readers and writers look it up there.
public enum CheckpointFormat: String, Sendable, CaseIterable {
    /// torchao's flattened `NVFP4Tensor` (`_weight_qdata`, swizzled `_weight_scale`, `_weight_per_tensor_scale`).
    case torchao
    /// compressed-tensors `nvfp4-pack-quantized` (llm-compressor): `weight_packed`, `weight_scale`,
    /// `weight_global_scale` = 1 / pts, `input_global_scale` for W4A4.
    case compressedTensors = "compressed-tensors"
    /// NVIDIA ModelOpt's unified HF export: `weight` (packed), `weight_scale`, `weight_scale_2` = pts,
    /// `input_scale` for W4A4.
    case modelopt

    /// This format's row of the table.
    public var names: EngineLayoutNames {
        switch self {
        case .torchao: return .torchao
        case .compressedTensors: return .compressedTensors
        case .modelopt: return .modelopt
        }
    }
}

/// How one layout names and stores the tensors of a quantized Linear module `<m>`.
///
/// Each stored tensor is `<m>` + ``separator`` + a suffix. Shared by readers (``CheckpointReader``,
/// `nvfp4 check`) and meant for writers too, so that names are spelled in one place.
public struct EngineLayoutNames: Sendable, Equatable {
    /// The layout these names belong to.
    public var layout: CheckpointLayout
    /// Packed e2m1 pairs, `U8 [N, K/2]`, even column in the low nibble.
    public var packed: String
    /// e4m3 block scales, one per 16 elements along K.
    public var blockScales: String
    /// The fp32 per-tensor weight scale.
    public var globalScale: String
    /// The fp32 per-tensor activation (input) scale of W4A4 checkpoints.
    public var inputScale: String
    /// Whether ``globalScale`` and ``inputScale`` store `2688/amax` (compressed-tensors) instead of
    /// `amax/2688` (ModelOpt, torchao).
    public var storesReciprocalScales: Bool
    /// Whether the block scales are stored in cuBLAS's swizzled 128×4 tiles (torchao) rather than
    /// row-major `[N, K/16]`.
    public var swizzledBlockScales: Bool
    /// The shape of the stored fp32 scalars (global and input scale): `[]` or `[1]` (compressed-tensors).
    public var scalarShape: [Int]
    /// `quantization_config.quant_method` of this layout.
    public var quantMethod: String
    /// The `quantization_config` member that lists modules kept in high precision.
    public var ignoreListKey: String
    /// How stacked MoE experts `[E, N, K]` are stored: as one 3-D tensor set (torchao's 3-D
    /// `NVFP4Tensor`) or as each expert's 2-D projection (`experts.<e>.<proj>`), which is what
    /// vLLM's and SGLang's compressed-tensors and ModelOpt MoE loaders read.
    public var stacksExperts: Bool
    /// Whether the members of a fused group (q/k/v, gate/up, …) are written with one shared global
    /// scale, as the engines that fuse them need (compressed-tensors, ModelOpt); torchao keeps
    /// each weight's own per-tensor scale.
    public var sharesFusedScales: Bool

    /// The block-scale layout on disk.
    public var scaleLayout: ScaleLayout { swizzledBlockScales ? .swizzled : .rowMajor }

    /// The stored fp32 value of a per-tensor scale `pts` (`amax / 2688`): `pts` itself, or its
    /// reciprocal where the layout stores divisors.
    public func storedScalar(_ pts: Float) -> Float { storesReciprocalScales ? 1 / pts : pts }

    /// The per-tensor scale (`amax / 2688`) a stored scalar means.
    public func perTensorScale(stored: Float) -> Float { storesReciprocalScales ? 1 / stored : stored }

    /// The stored name of `suffix` for module `module` (`a.b` + `weight_packed` → `a.b.weight_packed`).
    public func name(_ suffix: String, of module: String) -> String { module + "." + suffix }

    /// All suffixes, packed first.
    public var suffixes: [String] { [packed, blockScales, globalScale, inputScale] }

    /// The module name of a tensor that ends in `.` + `suffix`, or `nil`.
    public func module(of tensorName: String, suffix: String) -> String? {
        let tail = "." + suffix
        guard tensorName.hasSuffix(tail), tensorName.utf8.count > tail.utf8.count else { return nil }
        return String(tensorName.dropLast(tail.count))
    }

    /// compressed-tensors `nvfp4-pack-quantized` (`compressors/nvfp4`, vLLM `compressed_tensors_w4a4_nvfp4.py`).
    public static let compressedTensors = EngineLayoutNames(
        layout: .compressedTensors, packed: "weight_packed", blockScales: "weight_scale",
        globalScale: "weight_global_scale", inputScale: "input_global_scale",
        storesReciprocalScales: true, swizzledBlockScales: false, scalarShape: [1],
        quantMethod: ConfigStrings.compressedTensorsMethod, ignoreListKey: "ignore", stacksExperts: false, sharesFusedScales: true)

    /// ModelOpt unified HF export (`unified_export_hf.py`, vLLM `modelopt.py`).
    public static let modelopt = EngineLayoutNames(
        layout: .modelopt, packed: "weight", blockScales: "weight_scale",
        globalScale: "weight_scale_2", inputScale: "input_scale",
        storesReciprocalScales: false, swizzledBlockScales: false, scalarShape: [],
        quantMethod: ConfigStrings.modeloptMethod, ignoreListKey: "ignore", stacksExperts: false, sharesFusedScales: true)

    /// torchao's `flatten_tensor_state_dict` names for the `weight` parameter of an `NVFP4Tensor`.
    public static let torchao = EngineLayoutNames(
        layout: .torchao, packed: "_weight_qdata", blockScales: "_weight_scale",
        globalScale: "_weight_per_tensor_scale", inputScale: "_weight_act_per_tensor_scale",
        storesReciprocalScales: false, swizzledBlockScales: true, scalarShape: [],
        quantMethod: ConfigStrings.torchaoMethod, ignoreListKey: "modules_to_not_convert", stacksExperts: true, sharesFusedScales: false)

    /// The names of `layout`, or `nil` for ``CheckpointLayout/unquantized``.
    public static func of(_ layout: CheckpointLayout) -> EngineLayoutNames? { layout.format?.names }

    /// Every entry of the table.
    public static let all: [EngineLayoutNames] = CheckpointFormat.allCases.map(\.names)

    /// The layout a `quant_method` declares (`modelopt_fp4` counts as ModelOpt), or `nil`.
    public static func format(quantMethod: String) -> CheckpointFormat? {
        let method = quantMethod.lowercased()
        if method.hasPrefix(ConfigStrings.modeloptMethod) { return .modelopt }
        return CheckpointFormat.allCases.first { $0.names.quantMethod == method }
    }

    /// `6 * 448`: e2m1's largest magnitude times e4m3's. A global scale is `amax / 2688`.
    public static let amaxPerGlobalScale: Float = 2688

    /// Config strings engines look for.
    public enum ConfigStrings {
        /// compressed-tensors `quant_method`.
        public static let compressedTensorsMethod = "compressed-tensors"
        /// compressed-tensors `format` that vLLM maps to NVFP4.
        public static let compressedTensorsFormat = "nvfp4-pack-quantized"
        /// compressed-tensors `strategy` of NVFP4 weights and inputs.
        public static let tensorGroupStrategy = "tensor_group"
        /// ModelOpt `quant_method` in config.json.
        public static let modeloptMethod = "modelopt"
        /// ModelOpt `quant_algo` for W4A4.
        public static let modeloptW4A4 = "NVFP4"
        /// ModelOpt `quant_algo` for weight-only NVFP4.
        public static let modeloptW4A16 = "W4A16_NVFP4"
        /// ModelOpt's list of modules kept in high precision in `hf_quant_config.json` (and, flat,
        /// in `config.json`, where SGLang reads it).
        public static let modeloptExcludeKey = "exclude_modules"
        /// The file ModelOpt writes beside config.json, which TensorRT-LLM prefers.
        public static let hfQuantConfigFile = "hf_quant_config.json"
        /// transformers' `quant_method` for torchao.
        public static let torchaoMethod = "torchao"
        /// The NVFP4 block size.
        public static let groupSize = 16
    }
}
