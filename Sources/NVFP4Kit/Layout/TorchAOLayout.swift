/// What one output tensor of a quantized weight holds.
public enum QuantizedPart: String, Sendable {
    /// Packed e2m1 pairs, `U8 [N, K/2]`.
    case packed = "qdata"
    /// e4m3 block scales.
    case blockScales = "scale"
    /// The fp32 per-tensor scale.
    case perTensorScale = "per_tensor_scale"
}

/// torchao's flattened safetensors layout (`flatten_tensor_state_dict`): each NVFP4 weight
/// `<module>.weight` becomes `<module>._weight_qdata`, `<module>._weight_scale` (swizzled) and, in
/// two-level mode, `<module>._weight_per_tensor_scale`; `__metadata__` describes every state-dict
/// entry so that `unflatten_tensor_state_dict` rebuilds `NVFP4Tensor`s.
public struct TorchAOLayout: Sendable {
    /// Whether activations are quantized dynamically at run time (`NVFP4DynamicActivationNVFP4WeightConfig`)
    /// or not at all (`NVFP4WeightOnlyConfig`).
    public var dynamicActivations: Bool
    public var mode: ScalingMode

    public init(mode: ScalingMode, dynamicActivations: Bool = true) {
        self.mode = mode
        self.dynamicActivations = dynamicActivations
    }

    /// The block-scale layout torchao stores.
    public var scaleLayout: ScaleLayout { .swizzled }

    /// The stored parts of a quantized weight, in the order they are written. The fp32 scale comes
    /// first so that every tensor stays aligned to its element size.
    public var parts: [QuantizedPart] {
        mode == .twoLevel ? [.perTensorScale, .packed, .blockScales] : [.packed, .blockScales]
    }

    /// The stored tensor name of `part` of weight `name` (`a.b.weight` → `a.b._weight_qdata`).
    public func storedName(_ part: QuantizedPart, of name: String) -> String {
        let module = moduleName(name)
        let parameter = name[name.index(after: name.lastIndex(of: ".")!)...]
        return "\(module)._\(parameter)_\(part.rawValue)"
    }

    /// The header entry of `part` for an `[rows, columns]` weight.
    public func plannedTensor(_ part: QuantizedPart, of name: String, rows: Int, columns: Int) -> PlannedTensor {
        let stored = storedName(part, of: name)
        switch part {
        case .packed: return PlannedTensor(name: stored, dtype: .u8, shape: [rows, columns / 2])
        case .blockScales:
            return PlannedTensor(name: stored, dtype: .f8E4M3, shape: scaleLayout.storedShape(rows: rows, blocks: columns / 16))
        case .perTensorScale: return PlannedTensor(name: stored, dtype: .f32, shape: [])
        }
    }

    /// The `__metadata__` value torchao writes for an NVFP4 weight (`json.dumps` of its attributes),
    /// byte for byte as torchao 0.18 writes it (key order included).
    public func weightMetadata(originalDtype: DType) -> String {
        let kwargs: JSONValue =
            dynamicActivations
            ? .object([
                ("_type", "QuantizeTensorToNVFP4Kwargs"),
                ("_data", .object([
                    ("block_size", 16),
                    ("is_swizzled_scales", true),
                    ("use_triton_kernel", true),
                    ("use_dynamic_per_tensor_scale", .bool(mode == .twoLevel)),
                ])),
            ]) : .null
        let value: JSONValue = .object([
            ("_type", "NVFP4Tensor"),
            ("_data", .object([
                ("is_swizzled_scales", true),
                ("use_triton_kernel", .bool(dynamicActivations)),
                ("act_quant_kwargs", kwargs),
                ("block_size", 16),
                ("orig_dtype", .object([("_type", "torch.dtype"), ("_data", .string(TorchAOLayout.torchDtypeName(originalDtype)))])),
            ])),
            ("_tensor_data_names", .array(parts.map { .string($0.rawValue) })),
        ])
        return value.serialized(.python)
    }

    /// The `__metadata__` value for a plain tensor.
    public static let plainTensorMetadata = JSONValue.object([("_type", "Tensor")]).serialized(.python)

    /// torch's name for a dtype (`bfloat16`).
    public static func torchDtypeName(_ dtype: DType) -> String {
        switch dtype {
        case .bf16: return "bfloat16"
        case .f16: return "float16"
        case .f32: return "float32"
        default: return dtype.shortName
        }
    }

    /// The dtype for a torch dtype name, for reading metadata.
    public static func dtype(torchName: String) -> DType? {
        switch torchName {
        case "bfloat16": return .bf16
        case "float16": return .f16
        case "float32": return .f32
        default: return nil
        }
    }
}
