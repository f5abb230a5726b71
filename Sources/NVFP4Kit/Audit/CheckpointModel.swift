/// A checkpoint read as NVFP4 modules, whatever its layout: the one recognizer of the read side
/// (`inspect`, `verify`, `check`, `dequantize`), driven by the format table.
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
    /// Tensors that belong to no quantized module (including kept weights), read from the headers.
    public var plain: LocatedTensorSubset
    /// Scale-like tensors whose packed partner is missing (`X.weight_scale` without `X.weight_packed`).
    public var orphans: [LocatedTensor]

    /// Fused groups among quantized and kept modules.
    public var fusedGroups: [FusedModuleGroup] {
        FusedModulePatterns.groups(in: modules.map(\.name) + kept.map(\.name))
    }

    /// The quantized module named `name` (its `weight`).
    public func module(named name: String) -> QuantizedModule? { moduleIndex[name].map { modules[$0] } }

    /// The quantized module standing for dense tensor `name` (`<m>.weight`, `<m>.gate_up_proj`).
    public func module(forOriginal name: String) -> QuantizedModule? { originalIndex[name].map { modules[$0] } }

    private var moduleIndex: [String: Int] = [:]
    private var originalIndex: [String: Int] = [:]

    /// Reads the tensor names of `source` and groups them.
    public init(source: CheckpointSource) {
        let tensors = source.allTensors
        var modules: [QuantizedModule] = []
        var consumed = Set<String>()
        var counts: [CheckpointLayout: Int] = [:]
        for t in tensors {
            guard !consumed.contains(t.name), let (names, module, parameter) = EngineLayoutNames.packedTensor(t.info) else { continue }
            let scales = source.tensor(named: names.name(names.blockScales, of: module))
            let header = source.shards[t.shard].reader.header
            let descriptor = header.metadataValue(EngineLayoutNames.originalName(module: module, parameter: parameter))
                .flatMap { try? JSONParser.parse($0) }?["_data"]
            let m = QuantizedModule(
                name: module, parameter: parameter, names: names, packed: t, blockScales: scales,
                scaleLayout: CheckpointModel.scaleLayout(names: names, packed: t.info, scales: scales?.info, descriptor: descriptor),
                globalScale: source.tensor(named: names.name(names.globalScale, of: module)),
                inputScale: source.tensor(named: names.name(names.inputScale, of: module)),
                originalDtype: descriptor?["orig_dtype"]?["_data"]?.stringValue.flatMap(TorchAOLayout.dtype(torchName:)))
            modules.append(m)
            consumed.formUnion(m.tensors.map(\.name))
            counts[names.layout, default: 0] += 1
        }
        // Scales of an FP8 weight (`<m>.weight` F8_E4M3: `weight_scale`, `input_scale`) belong to
        // that weight, not to missing NVFP4 data.
        let fp8Modules = Set(tensors.filter { $0.info.dtype == .f8E4M3 && $0.name.hasSuffix(".weight") }.map { moduleName($0.name) })
        let orphans = tensors.filter {
            !consumed.contains($0.name) && EngineLayoutNames.hasScaleSuffix($0.name) && !fp8Modules.contains(moduleName($0.name))
        }
        let orphanNames = Set(orphans.map(\.name))
        plain = tensors.subset(tensors.indices.compactMap { i in
            let name = tensors[i].name
            return consumed.contains(name) || orphanNames.contains(name) ? nil : Int32(i)
        })
        kept = plain.compactMap { t in
            guard t.name.hasSuffix(".weight"), t.info.shape.count == 2, t.info.dtype.isQuantizable else { return nil }
            let name = String(t.name.dropLast(".weight".count))
            return KeptModule(name: name, weight: t, structuralReason: TensorSelection.structuralReason(module: name)?.rawValue)
        }
        self.orphans = orphans
        self.modules = modules
        for (i, m) in modules.enumerated() {
            if m.parameter == EngineLayoutNames.defaultParameter, moduleIndex[m.name] == nil { moduleIndex[m.name] = i }
            if originalIndex[m.originalName] == nil { originalIndex[m.originalName] = i }
        }
        layoutsFound = CheckpointLayout.allCases.filter { counts[$0] != nil }
        layout = counts.max { ($0.value, $1.key.rawValue) < ($1.value, $0.key.rawValue) }?.key ?? .unquantized
    }

    /// How block scales are stored: the row's layout, unless the row may vary (torchao's
    /// `is_swizzled_scales`) and the metadata, else the scale shape, says otherwise (swizzled when
    /// ambiguous, as torchao writes).
    static func scaleLayout(names: EngineLayoutNames, packed: TensorInfo, scales: TensorInfo?, descriptor: JSONValue?) -> ScaleLayout {
        guard names.scaleLayoutMayVary else { return names.scaleLayout }
        if let swizzled = descriptor?["is_swizzled_scales"]?.boolValue { return swizzled ? .swizzled : .rowMajor }
        guard let scales, packed.shape.count >= 2 else { return names.scaleLayout }
        let rows = packed.shape[packed.shape.count - 2]
        let blocks = packed.shape[packed.shape.count - 1] * 2 / 16
        let stacked = Array(packed.shape.dropLast(2))
        for layout in [names.scaleLayout, .swizzled, .rowMajor] where stacked + layout.storedShape(rows: rows, blocks: blocks) == scales.shape {
            return layout
        }
        return names.scaleLayout
    }

    /// What is wrong with an orphan scale tensor.
    static let orphanReason = "a scale tensor without its packed NVFP4 data (no matching weight_packed, U8 weight or _weight_qdata)"

    /// Throws the first structural problem of any module, or a scale tensor without its packed
    /// data, as one error naming the file and tensor: what the commands that decode need.
    ///
    /// - Throws: ``FileError`` wrapping a ``LayoutProblem``.
    public func requireDecodable(in source: CheckpointSource) throws(FileError) {
        for m in modules {
            if let problem = m.problems.first {
                throw FileError(path: source.path(of: m.packed), cause: LayoutProblem(tensor: problem.tensor, reason: problem.reason))
            }
        }
        if let orphan = orphans.first {
            throw FileError(path: source.path(of: orphan), cause: LayoutProblem(tensor: orphan.name, reason: CheckpointModel.orphanReason))
        }
    }
}
