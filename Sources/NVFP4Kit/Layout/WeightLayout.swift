extension CheckpointFormat {
    /// The layout writing weights in this format.
    public func layout(mode: ScalingMode, dynamicActivations: Bool) -> any WeightLayout {
        switch self {
        case .torchao: return TorchAOWeightLayout(TorchAOLayout(mode: mode, dynamicActivations: dynamicActivations))
        case .compressedTensors, .modelopt: return EngineWeightLayout(self)
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
    func fileMetadata<S: Collection<(tensor: TensorInfo, quantized: Bool, calibrated: Bool)>>(
        inputMetadata: [(key: String, value: String)], tensors: S
    ) -> [(key: String, value: String)]
}

extension WeightLayout {
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

    public func scalarValue(_ part: LayoutPart, scales: WeightScales) -> Float {
        switch part {
        case .weightGlobalScale: return scales.weight!
        case .inputGlobalScale: return scales.input!
        case .packed, .blockScales: preconditionFailure("not a scalar part")
        }
    }

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

    public func fileMetadata<S: Collection<(tensor: TensorInfo, quantized: Bool, calibrated: Bool)>>(
        inputMetadata: [(key: String, value: String)], tensors: S
    ) -> [(key: String, value: String)] {
        var described: [(key: String, value: String)] = []
        described.reserveCapacity(tensors.underestimatedCount)
        // One descriptor per (dtype, calibrated), shared by every weight: a million weights cost one string.
        var descriptors: [String: String] = [:]
        for (tensor, quantized, calibrated) in tensors {
            if quantized {
                let key = tensor.dtype.rawValue + (calibrated ? "+calibrated" : "")
                if descriptors[key] == nil {
                    descriptors[key] = !calibrated
                        ? torchao.weightMetadata(originalDtype: tensor.dtype) : torchao.calibratedWeightMetadata(originalDtype: tensor.dtype)
                }
                described.append((tensor.name, descriptors[key]!))
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

/// compressed-tensors `nvfp4-pack-quantized` (as llm-compressor writes it) and NVIDIA ModelOpt's
/// unified HF export: one writer, parameterized by the format table's row.
///
/// Block scales are row-major `[N, K/16]`. The per-tensor scales are stored as the row says:
/// compressed-tensors' `F32 [1]` divisors `1 / pts` (exactly what its own ModelOpt converter stores,
/// `1 / weight_scale_2`), ModelOpt's `F32 []` multipliers `pts`. The packed bytes are stored under
/// the row's packed suffix (ModelOpt keeps `<m>.weight`, U8 `[N, K/2]`). The input's metadata is
/// kept, with `format: pt` added where missing (some transformers versions require it).
public struct EngineWeightLayout: WeightLayout {
    /// The table row written.
    public let names: EngineLayoutNames

    public init(_ format: CheckpointFormat) { names = format.names }

    public var format: CheckpointFormat { names.layout.format! }
    public var scaleLayout: ScaleLayout { names.scaleLayout }

    public func storedParts(ofWeight name: String, rows: Int, columns: Int, calibrated: Bool) -> [StoredPart] {
        let module = moduleName(name)
        var parts = [StoredPart(part: .weightGlobalScale, tensor: PlannedTensor(name: sibling(module, names.globalScale), dtype: .f32, shape: names.scalarShape))]
        if calibrated {
            parts.append(StoredPart(part: .inputGlobalScale, tensor: PlannedTensor(name: sibling(module, names.inputScale), dtype: .f32, shape: names.scalarShape)))
        }
        parts.append(StoredPart(part: .packed, tensor: PlannedTensor(name: sibling(module, names.packed), dtype: .u8, shape: [rows, columns / 2])))
        parts.append(StoredPart(part: .blockScales, tensor: PlannedTensor(
            name: sibling(module, names.blockScales), dtype: .f8E4M3, shape: scaleLayout.storedShape(rows: rows, blocks: columns / 16))))
        return parts
    }

    public func scalarValue(_ part: LayoutPart, scales: WeightScales) -> Float {
        switch part {
        case .weightGlobalScale: return names.storedScalar(scales.weight!)
        case .inputGlobalScale: return names.storedScalar(scales.input!)
        case .packed, .blockScales: preconditionFailure("not a scalar part")
        }
    }

    public func fileMetadata<S: Collection<(tensor: TensorInfo, quantized: Bool, calibrated: Bool)>>(
        inputMetadata: [(key: String, value: String)], tensors: S
    ) -> [(key: String, value: String)] {
        var metadata = inputMetadata
        if !metadata.contains(where: { $0.key == "format" }) { metadata.insert(("format", "pt"), at: 0) }
        return metadata
    }
}

/// `module.suffix`, or `suffix` for a weight without a module (`weight`).
func sibling(_ module: String, _ suffix: String) -> String {
    module.isEmpty ? suffix : "\(module).\(suffix)"
}
