/// One NVFP4-quantized parameter of a module, described the same way whatever the layout: a 2-D
/// Linear weight, or (torchao) a stacked `[E, N, K]` expert tensor stored as one 3-D set.
public struct QuantizedModule: Sendable {
    /// The module name (`model.layers.0.self_attn.q_proj`; `model.layers.0.mlp.experts` for a
    /// stacked expert tensor).
    public var name: String
    /// The parameter: `weight`, or a stacked expert tensor's last name component (`gate_up_proj`).
    public var parameter: String
    /// The table row its tensors follow, for this parameter.
    public var names: EngineLayoutNames
    /// The packed e2m1 data; its shape gives (E,) N and K/2.
    public var packed: LocatedTensor
    /// The e4m3 block scales, if present.
    public var blockScales: LocatedTensor?
    /// How the block scales are stored (swizzled for torchao, row-major otherwise).
    public var scaleLayout: ScaleLayout
    /// The stored per-tensor weight scale (one per expert for a stacked tensor), if present.
    public var globalScale: LocatedTensor?
    /// The stored per-tensor input (activation) scale, if present.
    public var inputScale: LocatedTensor?
    /// The dtype the weight had before quantization, where the layout records it (torchao's `orig_dtype`).
    public var originalDtype: DType?

    /// The layout its tensors follow.
    public var layout: CheckpointLayout { names.layout }
    /// The dense tensor this module stands for (`<m>.weight`, `<m>.gate_up_proj`).
    public var originalName: String { EngineLayoutNames.originalName(module: name, parameter: parameter) }
    /// E for a stacked `[E, N, K]` tensor, `nil` for a 2-D weight.
    public var experts: Int? { packed.info.shape.count == 3 ? packed.info.shape[0] : nil }
    /// Rows (out_features), from the packed shape; 0 if the packed tensor has no usable shape.
    public var rows: Int { packed.info.shape.count >= 2 ? packed.info.shape[packed.info.shape.count - 2] : 0 }
    /// Columns (in_features), twice the packed width; 0 if the packed tensor has no usable shape.
    public var columns: Int { packed.info.shape.count >= 2 ? packed.info.shape[packed.info.shape.count - 1] * 2 : 0 }
    /// The dense shape: `[N, K]` or `[E, N, K]`.
    public var logicalShape: [Int] { (experts.map { [$0] } ?? []) + [rows, columns] }
    /// One `[N, K]` matrix (each expert's, for a stacked tensor).
    public var matrix: NVFP4Matrix { NVFP4Matrix(rows: rows, columns: columns, scaleLayout: scaleLayout) }
    /// How many matrices are stored back to back: E, or 1.
    public var matrixCount: Int { experts ?? 1 }
    /// Bytes of packed e2m1 data.
    public var packedBytes: Int { packed.info.byteCount }

    /// The stored tensors, packed first.
    public var tensors: [LocatedTensor] { [packed, blockScales, globalScale, inputScale].compactMap { $0 } }

    /// Whether the global and input scales are stored as `2688/amax` (compressed-tensors).
    public var storesReciprocalScales: Bool { names.storesReciprocalScales }

    /// The weight's global scale as `amax/2688` (whatever the layout stores), or `nil` if absent,
    /// unreadable or one per expert.
    public func weightScale(in source: CheckpointSource) -> Float? {
        globalScale.flatMap(source.scalar).map(names.perTensorScale(stored:))
    }

    /// Every matrix's per-tensor scale as `amax/2688`, in expert order; `nil` if there is none
    /// (torchao single-level) or it cannot be read.
    public func perTensorScales(in source: CheckpointSource) -> [Float]? {
        guard let globalScale, let stored = source.scalars(globalScale), stored.count == matrixCount else { return nil }
        return stored.map(names.perTensorScale(stored:))
    }

    /// The input scale as `amax/2688`, or `nil` if absent or unreadable.
    public func inputScaleValue(in source: CheckpointSource) -> Float? {
        inputScale.flatMap(source.scalar).map(names.perTensorScale(stored:))
    }

    /// The byte ranges of matrix `index` (an expert) inside the packed and the stored scale tensors.
    public func byteRanges(ofMatrix index: Int) -> (packed: Range<Int>, scales: Range<Int>) {
        let m = matrix
        return (index * m.packedByteCount..<(index + 1) * m.packedByteCount, index * m.scaleByteCount..<(index + 1) * m.scaleByteCount)
    }

    /// The stored code of block scale `(row, block)` of matrix `index` in a row-major view, whatever the stored layout.
    @inline(__always)
    public func blockScaleCode(_ stored: UnsafeRawBufferPointer, matrix index: Int = 0, row: Int, block: Int) -> UInt8 {
        stored[index * matrix.scaleByteCount + scaleLayout.offset(row: row, block: block, blocks: columns / 16)]
    }
}

/// Something about a module's stored tensors that makes it undecodable: the same rules for
/// `check` (a finding) and for the commands that decode (an error).
public struct ModuleProblem: Sendable, Equatable {
    /// The `check` rule it breaks.
    public var rule: CheckRule
    /// The tensor concerned.
    public var tensor: String
    /// What is wrong, without engine advice.
    public var reason: String
}

extension QuantizedModule {
    /// The structural problems of this module's tensors (dtypes, ranks, shapes, missing parts), in
    /// the order they are checked; empty when every matrix can be decoded.
    public var problems: [ModuleProblem] {
        var found: [ModuleProblem] = []
        let p = packed.info
        let ranks = names.stacksExperts ? [2, 3] : [2]
        guard p.dtype == .u8, ranks.contains(p.shape.count) else {
            let expected = names.stacksExperts ? "a 2-D U8 tensor [N, K/2] (or [E, N, K/2] for stacked experts)" : "a 2-D U8 tensor [N, K/2]"
            return [ModuleProblem(rule: .badPackedTensor, tensor: p.name, reason: "packed NVFP4 data must be \(expected), found \(p.dtype.rawValue) \(p.shape)")]
        }
        let blocksUsable = columns % 16 == 0
        if !blocksUsable {
            found.append(ModuleProblem(rule: .kNotMultipleOf16, tensor: p.name, reason: "K = \(columns) is not a multiple of 16 (packed \(p.shape))"))
        }
        if let scales = blockScales {
            let s = scales.info
            let expected = (experts.map { [$0] } ?? []) + scaleLayout.storedShape(rows: rows, blocks: columns / 16)
            if s.dtype != .f8E4M3 {
                found.append(ModuleProblem(rule: .badBlockScales, tensor: s.name, reason: "block scales must be F8_E4M3, found \(s.dtype.rawValue)"))
            } else if blocksUsable && s.shape != expected {
                found.append(ModuleProblem(
                    rule: .badBlockScales, tensor: s.name,
                    reason: "block scales have shape \(s.shape), expected \(expected) (\(scaleLayout.rawValue)) for packed \(p.shape), one per 16 columns"))
            }
        } else {
            found.append(ModuleProblem(
                rule: .missingBlockScales, tensor: p.name,
                reason: "NVFP4 data without its block scales \"\(names.name(names.blockScales, of: name))\""))
        }
        if let g = globalScale {
            if let problem = scalarProblem(g, role: "per-tensor scale", count: matrixCount) { found.append(problem) }
        } else if !names.perTensorScaleOptional {
            found.append(ModuleProblem(
                rule: .missingGlobalScale, tensor: p.name, reason: "no global scale \"\(names.name(names.globalScale, of: name))\""))
        }
        if let i = inputScale, let problem = scalarProblem(i, role: "input scale", count: 1) { found.append(problem) }
        return found
    }

    /// A scale tensor must be `count` F32 values: `[]` or `[1]` for one, `[E, 1, 1]` per expert.
    private func scalarProblem(_ t: LocatedTensor, role: String, count: Int) -> ModuleProblem? {
        let info = t.info
        if count == 1 {
            guard info.dtype != .f32 || info.elementCount != 1 || info.shape.count > 1 else { return nil }
            return ModuleProblem(rule: .badScaleTensor, tensor: info.name, reason: "\(role) must be one F32 value ([] or [1]), found \(info.dtype.rawValue) \(info.shape)")
        }
        guard info.dtype != .f32 || info.shape != [count, 1, 1] else { return nil }
        return ModuleProblem(rule: .badScaleTensor, tensor: info.name, reason: "\(role) must be \(count) F32 values [\(count), 1, 1], one per expert, found \(info.dtype.rawValue) \(info.shape)")
    }
}

/// A Linear weight kept in high precision: a 2-D `.weight` that is not NVFP4.
public struct KeptModule: Sendable {
    /// The module name.
    public var name: String
    /// Its `.weight` tensor.
    public var weight: LocatedTensor
    /// Why it is likely kept, recognised by name (embedding, lm_head, norm, router), if any.
    public var structuralReason: String?
}
