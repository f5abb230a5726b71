/// How one planned tensor is written.
public enum TensorWriteKind: Sendable, Equatable {
    /// Copied as it is.
    case kept
    /// Kept in high precision, written as its exact dequantization (an FP8 weight that stays:
    /// ``TensorPlan/fp8`` says how).
    case dequantized
    /// Read, not written: an FP8 weight's scale (or static input scale), applied by the weight's entry.
    case consumed
    /// A 2-D weight quantized as one matrix.
    case matrix
    /// Stacked experts `[E, N, K]` quantized expert by expert into one 3-D tensor set, one
    /// per-tensor scale per expert (torchao's 3-D `NVFP4Tensor`).
    case stackedExperts
    /// Stacked experts written as each expert's 2-D projections (compressed-tensors, ModelOpt):
    /// the modules of ``StackedExpertNaming/slices``, each expert's slices sharing one global scale.
    /// (Stored out of line: a plan of a million tensors keeps one small entry each.)
    indirect case expertSlices(StackedExpertNaming)

    /// The name the manifest and the dry-run view give this kind.
    public var label: String {
        switch self {
        case .kept: return "kept"
        case .dequantized: return "dequantized"
        case .consumed: return "consumed"
        case .matrix: return "matrix"
        case .stackedExperts: return "stacked-experts"
        case .expertSlices: return "per-expert-slices"
        }
    }
}

/// Everything decided about one input tensor before any byte is written.
public struct TensorPlan: Sendable {
    // Stored small-first after the tensor (whose last field is one byte) so a million-tensor plan
    // packs each entry into 80 bytes (PlanFootprintTests pins it).

    /// The input tensor.
    public var tensor: TensorInfo
    /// Quantize or keep, with the reason.
    public var decision: TensorDecision
    private var inputShardStorage: Int32
    private var groupStorage: Int32
    private var outputShardStorage: Int32
    /// How it is written.
    public var kind: TensorWriteKind

    init(tensor: TensorInfo, inputShard: Int, decision: TensorDecision, kind: TensorWriteKind, group: Int?, outputShard: Int) {
        self.tensor = tensor
        self.decision = decision
        self.kind = kind
        inputShardStorage = Int32(inputShard)
        groupStorage = Int32(group ?? -1)
        outputShardStorage = Int32(outputShard)
    }

    /// Index into ``QuantizePlan/shards``.
    public var inputShard: Int {
        get { Int(inputShardStorage) }
        set { inputShardStorage = Int32(newValue) }
    }
    /// Index into ``QuantizePlan/groups`` of the fused group it belongs to, if any.
    public var group: Int? {
        get { groupStorage < 0 ? nil : Int(groupStorage) }
        set { groupStorage = Int32(newValue ?? -1) }
    }
    /// Index into ``QuantizePlan/outputShards``.
    public var outputShard: Int {
        get { Int(outputShardStorage) }
        set { outputShardStorage = Int32(newValue) }
    }
    /// The output tensors written for it, in write order.
    public var outputs: [PlannedTensor] {
        get { outputStorage ?? [PlannedTensor(name: tensor.name, dtype: source.dtype, shape: tensor.shape)] }
        set { outputStorage = newValue == [PlannedTensor(name: tensor.name, dtype: source.dtype, shape: tensor.shape)] ? nil : newValue }
    }
    /// How many tensors ``outputs`` lists.
    var outputCount: Int { outputStorage?.count ?? 1 }

    /// The name of output `index` (``outputs``'s, without building the list).
    func outputName(_ index: Int) -> String { outputStorage?[index].name ?? tensor.name }

    /// ``outputs``, or `nil` for the one output most tensors have, the tensor itself as it is
    /// written (kept): a plan of a million tensors keeps no list for them.
    var outputStorage: [PlannedTensor]? = []
    /// How an FP8 input weight is dequantized before it is quantized or written (`nil`: the
    /// tensor is read as it is stored).
    public var fp8: FP8Source? {
        get { fp8Storage?.source }
        set { fp8Storage = newValue.map(FP8SourceBox.init) }
    }
    /// ``fp8``, out of line: most tensors have none, and a plan keeps one entry per tensor.
    var fp8Storage: FP8SourceBox? = nil

    /// The tensor as the codec and the writers see it: an FP8 weight in its dequantized dtype.
    public var source: TensorInfo {
        guard let fp8 else { return tensor }
        var view = tensor
        view.dtype = fp8.scaling.target
        let start = tensor.dataOffsets.lowerBound
        view.dataOffsets = start..<(start + UInt64(tensor.elementCount * view.dtype.bitWidth / 8))
        return view
    }

    /// Keeps it for `reason`: copied as it is, or, for an FP8 weight, written as its dequantization.
    public mutating func keep(_ reason: KeepReason) {
        decision = .keep(reason)
        kind = fp8 == nil ? .kept : .dequantized
    }

    /// Whether it becomes NVFP4.
    public var isQuantized: Bool { decision == .quantize }

    /// Bytes of output data.
    public var outputByteCount: Int { outputStorage.map { $0.reduce(0) { $0 + $1.byteCount } } ?? source.byteCount }

    /// The names of the 2-D weights it is quantized as: itself, or each expert slice's weight name.
    /// (A torchao stacked tensor is one 3-D weight: its own name.)
    public var quantizedWeightNames: [String] {
        switch kind {
        case .kept, .dequantized, .consumed: return []
        case .matrix, .stackedExperts: return [tensor.name]
        case .expertSlices(let naming): return naming.slices.map(StackedExpertNaming.weightName)
        }
    }
}

/// An ``FP8Source`` stored out of line (``TensorPlan/fp8``).
final class FP8SourceBox: Sendable {
    let source: FP8Source
    init(_ source: FP8Source) { self.source = source }
}
