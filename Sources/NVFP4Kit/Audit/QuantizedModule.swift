/// One NVFP4-quantized Linear module, described the same way whatever the layout.
public struct QuantizedModule: Sendable {
    /// The module name (`model.layers.0.self_attn.q_proj`).
    public var name: String
    /// The layout its tensors follow.
    public var layout: CheckpointLayout
    /// The packed e2m1 data; its shape gives N and K/2.
    public var packed: LocatedTensor
    /// The e4m3 block scales, if present.
    public var blockScales: LocatedTensor?
    /// How the block scales are stored (swizzled for torchao, row-major otherwise).
    public var scaleLayout: ScaleLayout
    /// The stored per-tensor weight scale, if present.
    public var globalScale: LocatedTensor?
    /// The stored per-tensor input (activation) scale, if present.
    public var inputScale: LocatedTensor?

    /// Rows (out_features), from the packed shape; 0 if the packed tensor is not 2-D.
    public var rows: Int { packed.info.shape.count == 2 ? packed.info.shape[0] : 0 }
    /// Columns (in_features), twice the packed width; 0 if the packed tensor is not 2-D.
    public var columns: Int { packed.info.shape.count == 2 ? packed.info.shape[1] * 2 : 0 }
    /// Bytes of packed e2m1 data.
    public var packedBytes: Int { packed.info.byteCount }

    /// The stored tensors, packed first.
    public var tensors: [LocatedTensor] { [packed, blockScales, globalScale, inputScale].compactMap { $0 } }

    /// Whether the global and input scales are stored as `2688/amax` (compressed-tensors).
    public var storesReciprocalScales: Bool { EngineLayoutNames.of(layout)?.storesReciprocalScales ?? false }

    /// The weight's global scale as `amax/2688` (ModelOpt's convention, whatever the layout), or `nil`
    /// if absent or unreadable.
    public func weightScale(in source: CheckpointSource) -> Float? {
        globalScale.flatMap(source.scalar).map { storesReciprocalScales ? 1 / $0 : $0 }
    }

    /// The input scale as `amax/2688`, or `nil` if absent or unreadable.
    public func inputScaleValue(in source: CheckpointSource) -> Float? {
        inputScale.flatMap(source.scalar).map { storesReciprocalScales ? 1 / $0 : $0 }
    }

    /// The stored code of block scale `(row, block)` in a row-major view, whatever the stored layout.
    @inline(__always)
    public func blockScaleCode(_ stored: UnsafeRawBufferPointer, row: Int, block: Int) -> UInt8 {
        stored[scaleLayout.offset(row: row, block: block, blocks: columns / 16)]
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

/// A checkpoint read as NVFP4 modules, whatever its layout.
public struct CheckpointModel {
    /// The layout of the quantized tensors (the most common if several are mixed), or
    /// ``CheckpointLayout/unquantized``.
    public var layout: CheckpointLayout
    /// Every layout found in the tensors (more than one is a defect).
    public var layoutsFound: [CheckpointLayout]
    /// Quantized modules, in shard and file order of their packed data.
    public var modules: [QuantizedModule]
    /// 2-D `.weight` tensors left unquantized.
    public var kept: [KeptModule]
    /// Tensors that belong to no quantized module (including kept weights).
    public var plain: [LocatedTensor]
    /// Scale-like tensors whose packed partner is missing (`X.weight_scale` without `X.weight_packed`).
    public var orphans: [LocatedTensor]

    /// Fused groups among quantized and kept modules.
    public var fusedGroups: [FusedModuleGroup] {
        FusedModulePatterns.groups(in: modules.map(\.name) + kept.map(\.name))
    }

    /// The quantized module named `name`.
    public func module(named name: String) -> QuantizedModule? { moduleIndex[name].map { modules[$0] } }

    private var moduleIndex: [String: Int] = [:]

    /// Reads the tensor names of `source` and groups them.
    public init(source: CheckpointSource) {
        let tensors = source.allTensors
        var modules: [QuantizedModule] = []
        var consumed = Set<String>()
        var counts: [CheckpointLayout: Int] = [:]
        for t in tensors {
            guard let (layout, module) = CheckpointModel.packedTensor(t) else { continue }
            guard let names = EngineLayoutNames.of(layout), !consumed.contains(t.name) else { continue }
            let scales = source.tensor(named: names.name(names.blockScales, of: module))
            var scaleLayout = ScaleLayout.rowMajor
            if layout == .torchao {
                scaleLayout = CheckpointModel.torchaoScaleLayout(module: module, packed: t, scales: scales, source: source)
            }
            let m = QuantizedModule(
                name: module, layout: layout, packed: t, blockScales: scales, scaleLayout: scaleLayout,
                globalScale: source.tensor(named: names.name(names.globalScale, of: module)),
                inputScale: source.tensor(named: names.name(names.inputScale, of: module)))
            modules.append(m)
            consumed.formUnion(m.tensors.map(\.name))
            counts[layout, default: 0] += 1
        }
        // Scale tensors without their packed partner.
        var orphans: [LocatedTensor] = []
        let scaleSuffixes = Set([EngineLayoutNames.compressedTensors, .modelopt, .torchao].flatMap { $0.suffixes.dropFirst() })
        for t in tensors where !consumed.contains(t.name) {
            if scaleSuffixes.contains(where: { t.name.hasSuffix("." + $0) }) { orphans.append(t) }
        }
        let orphanNames = Set(orphans.map(\.name))
        plain = tensors.filter { !consumed.contains($0.name) && !orphanNames.contains($0.name) }
        kept = plain.compactMap { t in
            guard t.name.hasSuffix(".weight"), t.info.shape.count == 2, t.info.dtype.isQuantizable else { return nil }
            let name = String(t.name.dropLast(".weight".count))
            return KeptModule(name: name, weight: t, structuralReason: TensorSelection.structuralReason(module: name)?.rawValue)
        }
        self.orphans = orphans
        self.modules = modules
        moduleIndex = Dictionary(modules.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        layoutsFound = CheckpointLayout.allCases.filter { counts[$0] != nil }
        layout = counts.max { ($0.value, $1.key.rawValue) < ($1.value, $0.key.rawValue) }?.key ?? .unquantized
    }

    /// The layout and module of a tensor that holds packed NVFP4 data, or `nil`.
    ///
    /// compressed-tensors: `<m>.weight_packed`. torchao: `<m>._weight_qdata`. ModelOpt: a U8
    /// `<m>.weight` (an unquantized weight is never U8, and the name alone is ModelOpt's only marker).
    static func packedTensor(_ t: LocatedTensor) -> (CheckpointLayout, String)? {
        if let m = EngineLayoutNames.compressedTensors.module(of: t.name, suffix: "weight_packed") { return (.compressedTensors, m) }
        if let m = EngineLayoutNames.torchao.module(of: t.name, suffix: "_weight_qdata") { return (.torchao, m) }
        if let m = EngineLayoutNames.modelopt.module(of: t.name, suffix: "weight"), t.info.dtype == .u8 { return (.modelopt, m) }
        return nil
    }

    /// torchao records `is_swizzled_scales` in the shard's metadata; without it, the scale shape decides.
    static func torchaoScaleLayout(module: String, packed: LocatedTensor, scales: LocatedTensor?, source: CheckpointSource) -> ScaleLayout {
        let header = source.shards[packed.shard].reader.header
        if let text = header.metadataValue(module + ".weight"), let json = try? JSONParser.parse(text),
            let swizzled = json["_data"]?["is_swizzled_scales"]?.boolValue
        {
            return swizzled ? .swizzled : .rowMajor
        }
        guard let scales, packed.info.shape.count == 2 else { return .swizzled }
        let rows = packed.info.shape[0]
        let blocks = packed.info.shape[1] * 2 / 16
        return scales.info.shape == ScaleLayout.rowMajor.storedShape(rows: rows, blocks: blocks)
            && scales.info.shape != ScaleLayout.swizzled.storedShape(rows: rows, blocks: blocks) ? .rowMajor : .swizzled
    }
}
