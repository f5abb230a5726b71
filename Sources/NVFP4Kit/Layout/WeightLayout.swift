/// The checkpoint layouts `nvfp4 quantize` writes (`--format`).
///
/// All three store the same packed e2m1 bytes and the same e4m3 block scales (one codec, one set
/// of bytes); they differ in tensor names, in the block-scale layout (swizzled for torchao,
/// row-major otherwise) and in how the per-tensor ("global") scales are written.
public enum CheckpointFormat: String, Sendable, CaseIterable {
    /// torchao's flattened `NVFP4Tensor` (`_weight_qdata`, swizzled `_weight_scale`, `_weight_per_tensor_scale`).
    case torchao
    /// compressed-tensors `nvfp4-pack-quantized` (llm-compressor): `weight_packed`, `weight_scale`,
    /// `weight_global_scale` = 1 / pts, `input_global_scale` for W4A4.
    case compressedTensors = "compressed-tensors"
    /// NVIDIA ModelOpt's unified HF export: `weight` (packed), `weight_scale`, `weight_scale_2` = pts,
    /// `input_scale` for W4A4.
    case modelopt

    /// The layout writing weights in this format.
    public func layout(mode: ScalingMode, dynamicActivations: Bool) -> any WeightLayout {
        switch self {
        case .torchao: return TorchAOWeightLayout(TorchAOLayout(mode: mode, dynamicActivations: dynamicActivations))
        case .compressedTensors: return CompressedTensorsLayout()
        case .modelopt: return ModelOptLayout()
        }
    }
}

/// What one stored tensor of a quantized weight holds.
public enum LayoutPart: Sendable, Hashable {
    /// Packed e2m1 pairs, `U8 [N, K/2]`, even column in the low nibble.
    case packed
    /// The e4m3 block scales in the layout's ``WeightLayout/scaleLayout``.
    case blockScales
    /// The weight's fp32 per-tensor scale, as the layout stores it.
    case weightGlobalScale
    /// The calibrated activation's fp32 per-tensor scale, as the layout stores it (W4A4 only).
    case inputGlobalScale
}

/// One stored tensor of a quantized weight: what it holds and its header entry.
public struct StoredPart: Sendable, Equatable {
    public var part: LayoutPart
    public var tensor: PlannedTensor
}

/// The scales a quantized weight is written with, before a layout encodes them.
public struct WeightScales: Sendable, Equatable {
    /// The weight's per-tensor scale `pts` (amax / 2688 as the codec rounds it); `nil` in single-level mode.
    public var weight: Float?
    /// The activation's per-tensor scale (calibrated amax / 2688, same rounding); `nil` without calibration.
    public var input: Float?

    public init(weight: Float?, input: Float?) {
        self.weight = weight
        self.input = input
    }
}

/// How a checkpoint format names and encodes the parts of a quantized weight.
///
/// A layout is a small writer over the codec's output: it never changes the packed bytes or the
/// block scales, only where they go and how the per-tensor scales are expressed.
public protocol WeightLayout: Sendable {
    /// The format this layout writes.
    var format: CheckpointFormat { get }
    /// How block scales are laid out on disk.
    var scaleLayout: ScaleLayout { get }
    /// The stored tensors of weight `name` (`[rows, columns]`), in write order; `calibrated` adds
    /// the activation scale.
    func storedParts(ofWeight name: String, rows: Int, columns: Int, calibrated: Bool) -> [StoredPart]
    /// The fp32 value stored for a scalar part.
    func scalarValue(_ part: LayoutPart, scales: WeightScales) -> Float
    /// The `__metadata__` of an output file: `inputMetadata` merged with what the layout adds.
    func fileMetadata(
        inputMetadata: [(key: String, value: String)], tensors: [(tensor: TensorInfo, quantized: Bool, calibrated: Bool)]
    ) -> [(key: String, value: String)]
}

extension WeightLayout {
    /// The scales as they are (`amax / 2688` and the activation's): what torchao
    /// (`per_tensor_amax_to_scale`) and ModelOpt (`weight_scale_2`, `input_scale`) store.
    /// compressed-tensors stores reciprocals and overrides this.
    public func scalarValue(_ part: LayoutPart, scales: WeightScales) -> Float {
        switch part {
        case .weightGlobalScale: return scales.weight!
        case .inputGlobalScale: return scales.input!
        case .packed, .blockScales: preconditionFailure("not a scalar part")
        }
    }

    /// The stored tensor names of weight `name`, in write order.
    public func storedNames(ofWeight name: String, rows: Int, columns: Int, calibrated: Bool) -> [String] {
        storedParts(ofWeight: name, rows: rows, columns: columns, calibrated: calibrated).map(\.tensor.name)
    }
}

/// torchao's layout (``TorchAOLayout``), bytes and metadata unchanged.
public struct TorchAOWeightLayout: WeightLayout {
    public let torchao: TorchAOLayout

    public init(_ torchao: TorchAOLayout) { self.torchao = torchao }

    public var format: CheckpointFormat { .torchao }
    public var scaleLayout: ScaleLayout { torchao.scaleLayout }

    public func storedParts(ofWeight name: String, rows: Int, columns: Int, calibrated: Bool) -> [StoredPart] {
        var result: [StoredPart] = []
        for part in torchao.parts {
            let planned = torchao.plannedTensor(part, of: name, rows: rows, columns: columns)
            switch part {
            case .perTensorScale:
                result.append(StoredPart(part: .weightGlobalScale, tensor: planned))
                if calibrated {
                    let module = moduleName(name)
                    let parameter = name[name.index(after: name.lastIndex(of: ".")!)...]
                    result.append(StoredPart(part: .inputGlobalScale, tensor: PlannedTensor(
                        name: "\(module)._\(parameter)_act_per_tensor_scale", dtype: .f32, shape: [])))
                }
            case .packed: result.append(StoredPart(part: .packed, tensor: planned))
            case .blockScales: result.append(StoredPart(part: .blockScales, tensor: planned))
            }
        }
        return result
    }

    public func fileMetadata(
        inputMetadata: [(key: String, value: String)], tensors: [(tensor: TensorInfo, quantized: Bool, calibrated: Bool)]
    ) -> [(key: String, value: String)] {
        var described: [(key: String, value: String)] = []
        for (tensor, quantized, calibrated) in tensors {
            if quantized {
                described.append((tensor.name, !calibrated
                    ? torchao.weightMetadata(originalDtype: tensor.dtype)
                    : torchao.calibratedWeightMetadata(originalDtype: tensor.dtype)))
            } else {
                described.append((tensor.name, TorchAOLayout.plainTensorMetadata))
            }
        }
        let ours = Set(described.map(\.key) + ["tensor_names"])
        var metadata = inputMetadata.filter { !ours.contains($0.key) }
        metadata += described
        metadata.append(("tensor_names", JSONValue.array(tensors.map { .string($0.tensor.name) }).serialized(.python)))
        return metadata
    }
}

extension TorchAOLayout {
    /// The metadata of a weight with a static activation scale (torchao's prepare/convert flow):
    /// `use_dynamic_per_tensor_scale` false and `act_per_tensor_scale` among the data names.
    func calibratedWeightMetadata(originalDtype: DType) -> String {
        let value: JSONValue = .object([
            ("_type", "NVFP4Tensor"),
            ("_data", .object([
                ("is_swizzled_scales", true),
                ("use_triton_kernel", true),
                ("act_quant_kwargs", .object([
                    ("_type", "QuantizeTensorToNVFP4Kwargs"),
                    ("_data", .object([
                        ("block_size", 16),
                        ("is_swizzled_scales", true),
                        ("use_triton_kernel", true),
                        ("use_dynamic_per_tensor_scale", false),
                    ])),
                ])),
                ("block_size", 16),
                ("orig_dtype", .object([("_type", "torch.dtype"), ("_data", .string(TorchAOLayout.torchDtypeName(originalDtype)))])),
            ])),
            ("_tensor_data_names", .array(["per_tensor_scale", "act_per_tensor_scale", "qdata", "scale"])),
        ])
        return value.serialized(.python)
    }
}

/// The layouts the engines load (compressed-tensors, ModelOpt) keep the input's metadata and make
/// sure `format: pt` is present (some transformers versions require it).
private func engineFileMetadata(_ input: [(key: String, value: String)]) -> [(key: String, value: String)] {
    var metadata = input
    if !metadata.contains(where: { $0.key == "format" }) { metadata.insert(("format", "pt"), at: 0) }
    return metadata
}

/// compressed-tensors `nvfp4-pack-quantized`, as llm-compressor writes it.
///
/// `<m>.weight_global_scale` and `<m>.input_global_scale` are `F32 [1]` divisors: the fp32
/// reciprocal `1 / pts` of the scale the codec used, exactly what compressed-tensors' own
/// ModelOpt converter stores (`1 / weight_scale_2`). Block scales are row-major `[N, K/16]`.
public struct CompressedTensorsLayout: WeightLayout {
    public init() {}

    public var format: CheckpointFormat { .compressedTensors }
    public var scaleLayout: ScaleLayout { .rowMajor }

    public func storedParts(ofWeight name: String, rows: Int, columns: Int, calibrated: Bool) -> [StoredPart] {
        let module = moduleName(name)
        var parts = [StoredPart(part: .weightGlobalScale, tensor: PlannedTensor(name: sibling(module, "weight_global_scale"), dtype: .f32, shape: [1]))]
        if calibrated {
            parts.append(StoredPart(part: .inputGlobalScale, tensor: PlannedTensor(name: sibling(module, "input_global_scale"), dtype: .f32, shape: [1])))
        }
        parts.append(StoredPart(part: .packed, tensor: PlannedTensor(name: sibling(module, "weight_packed"), dtype: .u8, shape: [rows, columns / 2])))
        parts.append(StoredPart(part: .blockScales, tensor: PlannedTensor(name: sibling(module, "weight_scale"), dtype: .f8E4M3, shape: [rows, columns / 16])))
        return parts
    }

    public func scalarValue(_ part: LayoutPart, scales: WeightScales) -> Float {
        switch part {
        case .weightGlobalScale: return 1 / scales.weight!
        case .inputGlobalScale: return 1 / scales.input!
        case .packed, .blockScales: preconditionFailure("not a scalar part")
        }
    }

    public func fileMetadata(
        inputMetadata: [(key: String, value: String)], tensors: [(tensor: TensorInfo, quantized: Bool, calibrated: Bool)]
    ) -> [(key: String, value: String)] {
        engineFileMetadata(inputMetadata)
    }
}

/// NVIDIA ModelOpt's unified HF export (`quant_algo` `NVFP4` / `W4A16_NVFP4`).
///
/// The packed bytes keep the name `<m>.weight` (U8 `[N, K/2]`); `<m>.weight_scale_2` and
/// `<m>.input_scale` are `F32 []` multipliers (pts itself). Block scales are row-major `[N, K/16]`.
public struct ModelOptLayout: WeightLayout {
    public init() {}

    public var format: CheckpointFormat { .modelopt }
    public var scaleLayout: ScaleLayout { .rowMajor }

    public func storedParts(ofWeight name: String, rows: Int, columns: Int, calibrated: Bool) -> [StoredPart] {
        let module = moduleName(name)
        var parts = [StoredPart(part: .weightGlobalScale, tensor: PlannedTensor(name: sibling(module, "weight_scale_2"), dtype: .f32, shape: []))]
        if calibrated {
            parts.append(StoredPart(part: .inputGlobalScale, tensor: PlannedTensor(name: sibling(module, "input_scale"), dtype: .f32, shape: [])))
        }
        parts.append(StoredPart(part: .packed, tensor: PlannedTensor(name: name, dtype: .u8, shape: [rows, columns / 2])))
        parts.append(StoredPart(part: .blockScales, tensor: PlannedTensor(name: sibling(module, "weight_scale"), dtype: .f8E4M3, shape: [rows, columns / 16])))
        return parts
    }

    public func fileMetadata(
        inputMetadata: [(key: String, value: String)], tensors: [(tensor: TensorInfo, quantized: Bool, calibrated: Bool)]
    ) -> [(key: String, value: String)] {
        engineFileMetadata(inputMetadata)
    }
}

/// `module.suffix`, or `suffix` for a weight without a module (`weight`).
func sibling(_ module: String, _ suffix: String) -> String {
    module.isEmpty ? suffix : "\(module).\(suffix)"
}
