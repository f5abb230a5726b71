import Glibc

/// The `config.json` `quantization_config` (and ModelOpt's `hf_quant_config.json`) that tell an
/// engine how a folder is quantized.
///
/// - compressed-tensors: the maximally compatible block of the format notes (§1.4): no
///   `scale_dtype`, `zp_dtype` or `observer`, which compressed-tensors 0.11–0.12 reject.
/// - ModelOpt: `quant_method: modelopt` with `quant_algo` `NVFP4` or `W4A16_NVFP4`, plus
///   `hf_quant_config.json` with `group_size`, `kv_cache_quant_algo` and `exclude_modules`.
/// - torchao: `TorchAoConfig.to_dict()` of `NVFP4DynamicActivationNVFP4WeightConfig`.
public struct QuantizationConfig: Sendable {
    public var format: CheckpointFormat
    /// W4A4 (calibrated input scales) rather than weight-only.
    public var calibrated: Bool
    /// Whether torchao's weights describe dynamic NVFP4 activations (torchao only).
    public var dynamicActivations: Bool
    /// Modules kept in their dtype, as written (exact names, or safe wildcards for ModelOpt).
    public var ignore: [String]

    /// The version written as `compressed-tensors` `version` (informational; not read by vLLM).
    public static let compressedTensorsVersion = "0.12.2"

    /// The `quantization_config` object.
    public var configBlock: JSONValue {
        switch format {
        case .compressedTensors:
            let args: (JSONValue) -> JSONValue = { dynamic in
                .object([
                    ("num_bits", 4), ("type", "float"), ("strategy", "tensor_group"),
                    ("group_size", 16), ("symmetric", true), ("dynamic", dynamic),
                ])
            }
            return .object([
                ("quant_method", .string(format.names.quantMethod)),
                ("format", .string(EngineLayoutNames.ConfigStrings.compressedTensorsFormat)),
                ("quantization_status", "compressed"),
                ("config_groups", .object([("group_0", .object([
                    ("targets", .array(["Linear"])),
                    ("format", .string(EngineLayoutNames.ConfigStrings.compressedTensorsFormat)),
                    ("weights", args(false)),
                    ("input_activations", calibrated ? args("local") : .null),
                    ("output_activations", .null),
                ]))])),
                (format.names.ignoreListKey, .array(ignore.map { .string($0) })),
                ("kv_cache_scheme", .null),
                ("sparsity_config", .object([])),
                ("transform_config", .object([])),
                ("version", .string(QuantizationConfig.compressedTensorsVersion)),
            ])
        case .modelopt:
            var group: [(key: String, value: JSONValue)] = []
            if calibrated {
                group.append(("input_activations", .object([("dynamic", false), ("num_bits", 4), ("type", "float"), ("group_size", 16)])))
            }
            group.append(("weights", .object([("dynamic", false), ("num_bits", 4), ("type", "float"), ("group_size", 16)])))
            group.append(("targets", .array(["Linear"])))
            return .object([
                ("config_groups", .object([("group_0", .object(group))])),
                (format.names.ignoreListKey, .array(ignore.map { .string($0) })),
                ("quant_algo", .string(modelOptAlgorithm)),
                ("producer", producer),
                ("quant_method", .string(format.names.quantMethod)),
                ("group_size", 16),
                ("kv_cache_quant_algo", .null),
                (EngineLayoutNames.ConfigStrings.modeloptExcludeKey, .array(ignore.map { .string($0) })),
            ])
        case .torchao:
            let type: JSONValue =
                dynamicActivations
                ? .object([
                    ("_type", "NVFP4DynamicActivationNVFP4WeightConfig"), ("_version", 1),
                    ("_data", .object([("use_triton_kernel", true), ("use_dynamic_per_tensor_scale", true), ("step", .null)])),
                ])
                : .object([
                    ("_type", "NVFP4WeightOnlyConfig"), ("_version", 1),
                    ("_data", .object([("use_dynamic_per_tensor_scale", true)])),
                ])
            return .object([
                ("quant_method", .string(format.names.quantMethod)),
                ("quant_type", .object([("default", type)])),
                (format.names.ignoreListKey, .array(ignore.map { .string($0) })),
            ])
        }
    }

    /// `NVFP4` (W4A4) or `W4A16_NVFP4`.
    public var modelOptAlgorithm: String {
        calibrated ? EngineLayoutNames.ConfigStrings.modeloptW4A4 : EngineLayoutNames.ConfigStrings.modeloptW4A16
    }

    private var producer: JSONValue { .object([("name", "nvfp4"), ("version", .string(nvfp4Version))]) }

    /// ModelOpt's `hf_quant_config.json`; `nil` for the other formats.
    public var hfQuantConfig: JSONValue? {
        guard format == .modelopt else { return nil }
        return .object([
            ("producer", producer),
            ("quantization", .object([
                ("quant_algo", .string(modelOptAlgorithm)),
                ("kv_cache_quant_algo", .null),
                ("group_size", 16),
                (EngineLayoutNames.ConfigStrings.modeloptExcludeKey, .array(ignore.map { .string($0) })),
            ])),
        ])
    }

    /// `config` with `quantization_config` set (replacing any existing one); other members keep their order.
    public func updating(config: JSONValue) -> JSONValue {
        var members = config.objectValue ?? []
        members.removeAll { $0.key == "quantization_config" }
        members.append(("quantization_config", configBlock))
        return .object(members)
    }
}

/// The list of modules kept unquantized, written so that engines match exactly those.
///
/// Entries are module names (the weight name without `.weight`) of every kept 2-D `.weight`
/// tensor, plus `lm_head` when the model has no quantized `lm_head` (tied embeddings still
/// build an `lm_head` Linear in transformers). vLLM matches ModelOpt excludes by plain substring,
/// so an entry that is a substring of a quantized module's name (or of a fused module such as
/// `…gate_up_proj`) is written as an fnmatch pattern that matches only that module but is not a
/// substring of anything: its last character in brackets (`model.layers.0.mlp.gat[e]`).
public enum IgnoreList {
    /// The entries for `kept` modules given the `quantized` ones (module names, fused names included).
    public static func entries(kept: [String], quantized: [String], format: CheckpointFormat) -> [String] {
        var modules = kept
        if !modules.contains("lm_head") && !quantized.contains("lm_head") { modules.append("lm_head") }
        let sorted = Array(Set(modules)).sorted()
        guard format == .modelopt else { return sorted }
        return sorted.map { module in
            let collides = quantized.contains { $0 != module && $0.contains(module) }
            guard collides, let last = module.last else { return module }
            return String(module.dropLast()) + "[\(last)]"
        }
    }

    /// Whether `entry` excludes `module` the way vLLM's ModelOpt loader decides it:
    /// exact name, plain substring, or fnmatch.
    public static func vllmModelOptExcludes(_ entry: String, module: String) -> Bool {
        entry == module || module.contains(entry) || fnmatchPattern(entry, module)
    }
}

/// POSIX `fnmatch` (Python's `fnmatch` has the same `*`, `?` and `[…]` for these names).
func fnmatchPattern(_ pattern: String, _ name: String) -> Bool { fnmatch(pattern, name, 0) == 0 }
