/// `nvfp4 check`: audits an NVFP4 checkpoint (any layout, file or folder) for what makes engines
/// load it wrongly or silently compute garbage. Needs no original weights.
///
/// Reads headers and configs, every scalar scale, and every block scale (an eighth of the packed
/// size); packed bytes are read only behind zero block scales. Shard pages are released as they
/// are scanned, so memory stays bounded.
public struct CheckpointAudit {
    /// The largest weight amax (`2688 × global scale`) accepted as plausible: LLM Linear weights sit
    /// far below; a reciprocal stored in the wrong convention (`amax/2688` where `2688/amax` belongs)
    /// lands far above for any weight with amax below ~700.
    public static let largestPlausibleWeightAmax: Float = 10_000

    public let source: CheckpointSource
    public let model: CheckpointModel
    public let config: QuantizationConfigSummary
    /// What was found, in the order the checks run.
    public private(set) var findings: [CheckFinding] = []

    /// The tensor-parallel degree the checkpoint must load with (1: no split).
    public let tensorParallel: Int

    /// Runs every rule.
    ///
    /// - Parameter tensorParallel: Also require `(K / tensorParallel) % 16 == 0` for row-parallel layers.
    /// - Throws: ``FileError`` if a shard's bytes cannot be read.
    ///   - progress: Advanced by each module's stored bytes.
    public init(source: CheckpointSource, tensorParallel: Int = 1, progress: JobProgress? = nil) throws {
        self.source = source
        self.tensorParallel = max(1, tensorParallel)
        model = CheckpointModel(source: source)
        config = QuantizationConfigSummary(config: source.config, hfQuantConfig: source.hfQuantConfig)
        checkAnyQuantized()
        checkLayouts()
        for module in model.modules {
            try checkModule(module)
            progress?.advance(module.tensors.reduce(0) { $0 + UInt64($1.info.byteCount) }, item: module.name)
        }
        checkTorchAOMetadata()
        checkOrphans()
        checkInputScales()
        checkFusedGroups()
        checkConfig()
        checkIgnoreList()
        checkKeptByRule()
        checkShapesAgainstConfig()
        checkShards()
    }

    mutating func add(_ rule: CheckRule, _ path: String, _ subject: String, _ message: String) {
        findings.append(CheckFinding(rule, path: path, subject: subject, message))
    }

    private func location(_ module: QuantizedModule) -> String { source.path(of: module.packed) }

    // MARK: Structure

    private mutating func checkAnyQuantized() {
        guard model.modules.isEmpty else { return }
        let count = source.shards.reduce(0) { $0 + $1.reader.header.tensors.count }
        add(.noNVFP4Weights, source.path, "checkpoint",
            "no NVFP4 weights: none of its \(count) tensors is packed NVFP4 data in any layout (torchao, compressed-tensors, ModelOpt), so there is nothing to check; is this the original model?")
    }

    private mutating func checkLayouts() {
        guard model.layoutsFound.count > 1 else { return }
        let names = model.layoutsFound.map(\.rawValue).joined(separator: ", ")
        let odd = model.modules.filter { $0.layout != model.layout }
        let examples = odd.prefix(3).map(\.name).joined(separator: ", ")
        add(.mixedLayouts, source.path, "\(odd.count) modules",
            "tensors follow several NVFP4 layouts (\(names)); \(odd.count) modules are not \(model.layout.rawValue) (e.g. \(examples)); an engine loads one layout, so convert every module to one")
    }

    /// What an engine does with each structural problem, and what to do.
    static let advice: [CheckRule: String] = [
        .kNotMultipleOf16: "vLLM, SGLang and TensorRT-LLM refuse it: keep this module unquantized and list it in the ignore/exclude list",
        .missingBlockScales: "the module cannot be decoded",
        .missingGlobalScale: "vLLM allocates it with torch.empty and uses whatever memory holds",
    ]

    private mutating func checkModule(_ m: QuantizedModule) throws {
        let path = location(m)
        let problems = m.problems
        for problem in problems {
            let file = m.tensors.first { $0.name == problem.tensor }.map(source.path(of:)) ?? path
            let subject = [CheckRule.kNotMultipleOf16, .missingBlockScales, .missingGlobalScale].contains(problem.rule) ? m.name : problem.tensor
            add(problem.rule, file, subject, problem.reason + (CheckpointAudit.advice[problem.rule].map { "; " + $0 } ?? ""))
        }
        if problems.contains(where: { $0.rule == .badPackedTensor }) { return }
        let columns = m.columns
        if tensorParallel > 1, columns % 16 == 0, !TensorSelection.splitsEvenly(module: m.name, columns: columns, tensorParallel: tensorParallel) {
            add(.kNotMultipleOf16, path, m.name,
                "K = \(columns) split over \(tensorParallel) tensor-parallel ranks gives \(columns % tensorParallel == 0 ? "\(columns / tensorParallel)" : "an uneven split") per rank, not a multiple of 16; vLLM and SGLang refuse row-parallel NVFP4 layers whose per-rank K is not a multiple of 16: use another TP degree or keep this module unquantized")
        }
        let blockRules: Set<CheckRule> = [.kNotMultipleOf16, .badBlockScales, .missingBlockScales]
        if let scales = m.blockScales, !problems.contains(where: { blockRules.contains($0.rule) }) { try scanBlockScales(m, scales) }
        let badScalars = Set(problems.filter { $0.rule == .badScaleTensor }.map(\.tensor))
        if let g = m.globalScale, !badScalars.contains(g.name) { checkScalar(g, role: "global weight scale", m) }
        if let i = m.inputScale, !badScalars.contains(i.name) { checkScalar(i, role: "input scale", m) }
    }

    private mutating func checkScalar(_ t: LocatedTensor, role: String, _ m: QuantizedModule) {
        let path = source.path(of: t)
        guard let values = source.scalars(t) else { return }
        let rule: CheckRule = role.hasPrefix("input") ? .inputScaleInvalid : .globalScaleInvalid
        for (index, stored) in values.enumerated() {
            let which = values.count > 1 ? "expert \(index)'s \(role)" : role
            if !stored.isFinite || stored <= 0 {
                add(rule, path, t.name, "\(which) is \(stored); it must be finite and positive (a zero, NaN or uninitialized scale decodes the whole module to garbage)")
                return
            }
        }
        guard values.count == 1, let stored = values.first else { return }
        if rule == .globalScaleInvalid && m.layout != .torchao {
            let amax = m.names.perTensorScale(stored: stored) * EngineLayoutNames.amaxPerGlobalScale
            if !amax.isFinite || amax > CheckpointAudit.largestPlausibleWeightAmax {
                let convention = m.storesReciprocalScales ? "2688/amax" : "amax/2688"
                add(.globalScaleImplausible, path, t.name,
                    "global scale \(stored) implies a weight max |W| of \(amax); this layout stores \(convention), so the value was probably written in the other convention")
            }
        }
    }

    /// NaN codes, sign bits and zero scales over nonzero data, in a row-major view.
    private mutating func scanBlockScales(_ m: QuantizedModule, _ scales: LocatedTensor) throws {
        let blocks = m.columns / 16
        let rows = m.rows
        guard source.shards[scales.shard].reader.isRandomAccess else { return }
        var nan = 0, negative = 0, zero = 0
        var firstNaN: (Int, Int)?, firstNegative: (Int, Int)?, firstZero: (Int, Int)?
        var zeroCandidates: [(Int, Int)] = []
        // Rows of a stacked tensor count on across experts (row r is expert r / N's row r % N).
        try source.withBytes(of: scales) { stored in
            for row in 0..<(m.matrixCount * rows) {
                for block in 0..<blocks {
                    let code = m.blockScaleCode(stored, matrix: row / rows, row: row % rows, block: block)
                    if code & 0x7F == 0x7F {
                        nan += 1
                        if firstNaN == nil { firstNaN = (row, block) }
                    } else if code & 0x80 != 0 {
                        negative += 1
                        if firstNegative == nil { firstNegative = (row, block) }
                    } else if code == 0 {
                        zeroCandidates.append((row, block))
                    }
                }
            }
        }
        source.release(scales)
        if !zeroCandidates.isEmpty {
            let halfColumns = m.columns / 2
            try source.withBytes(of: m.packed) { packed in
                for (row, block) in zeroCandidates {
                    let start = row * halfColumns + block * 8
                    if (start..<(start + 8)).contains(where: { packed[$0] & 0x77 != 0 }) {
                        zero += 1
                        if firstZero == nil { firstZero = (row, block) }
                    }
                }
            }
            source.release(m.packed)
        }
        let total = m.matrixCount * rows * blocks
        let name = scales.name
        let path = source.path(of: scales)
        if let (r, b) = firstNaN {
            add(.blockScaleNaN, path, name, "\(nan) of \(total) block scales are e4m3 NaN (0x7F/0xFF), first at row \(r), block \(b) (columns \(b * 16)..<\(b * 16 + 16)); those weights decode to NaN: requantize with scales clamped to 448")
        }
        if let (r, b) = firstNegative {
            add(.blockScaleNegative, path, name, "\(negative) of \(total) block scales have the sign bit set, first at row \(r), block \(b); NVFP4 scales are positive, so the data is corrupt or was written with the wrong dtype")
        }
        if let (r, b) = firstZero {
            add(.blockScaleZero, path, name, "\(zero) of \(total) block scales are 0 over nonzero weights, first at row \(r), block \(b); those weights decode to 0 (no producer writes 0: the scales are uninitialized or were computed against the wrong global scale)")
        }
    }

    private mutating func checkOrphans() {
        for t in model.orphans {
            add(.orphanScale, source.path(of: t), t.name, CheckpointModel.orphanReason + "; loaders report it as an unexpected key or ignore it")
        }
    }

    // MARK: Scales across modules

    private mutating func checkInputScales() {
        let quantized = model.modules.filter { $0.layout != .torchao }
        let withInput = quantized.filter { $0.inputScale != nil }
        let names = EngineLayoutNames.of(model.layout)
        switch config.activationsQuantized {
        case true?:
            for m in quantized where m.inputScale == nil {
                add(.inputScaleMissing, location(m), m.name,
                    "the config quantizes activations (W4A4) but \"\(names?.name(names?.inputScale ?? "", of: m.name) ?? m.name)\" is missing; vLLM then uses uninitialized memory and TensorRT-LLM fails; calibrate it, or declare the checkpoint weight-only (W4A16_NVFP4 / input_activations null)")
            }
        case false?:
            for m in withInput {
                add(.inputScaleUnexpected, source.path(of: m.inputScale!), m.inputScale!.name,
                    "the config is weight-only (W4A16) but this input scale is present; vLLM's weight-only scheme registers no such parameter and rejects the unexpected key: drop it or declare W4A4")
            }
        case nil:
            guard !withInput.isEmpty, withInput.count < quantized.count else { break }
            for m in quantized where m.inputScale == nil {
                add(.inputScaleMissing, location(m), m.name,
                    "\(withInput.count) of \(quantized.count) quantized modules have an input scale but this one does not; W4A4 needs every module's input scale")
            }
        }
    }

    private mutating func checkFusedGroups() {
        let quantizedNames = Set(model.modules.map(\.name))
        for group in model.fusedGroups {
            let quantized = group.members.filter(quantizedNames.contains)
            guard !quantized.isEmpty else { continue }
            // torchao has no fused layers: its loaders keep each NVFP4Tensor with its own scale.
            if quantized.compactMap(model.module(named:)).allSatisfy({ $0.layout == .torchao }) { continue }
            if quantized.count != group.members.count {
                let kept = group.members.filter { !quantizedNames.contains($0) }
                add(.fusedPartiallyQuantized, source.path, group.displayName,
                    "engines fuse these into one layer but only \(quantized.map(leaf).joined(separator: ", ")) are NVFP4 while \(kept.map(leaf).joined(separator: ", ")) stay unquantized; vLLM refuses mixed schemes in a fused layer: quantize all or none")
                continue
            }
            let members = quantized.compactMap(model.module(named:))
            compareScales(group, members, role: "global weight scales", rule: .fusedGlobalScaleMismatch) { $0.globalScale }
            compareScales(group, members, role: "input scales", rule: .fusedInputScaleMismatch) { $0.inputScale }
        }
    }

    private mutating func compareScales(
        _ group: FusedModuleGroup, _ members: [QuantizedModule], role: String, rule: CheckRule, _ tensor: (QuantizedModule) -> LocatedTensor?
    ) {
        let values = members.compactMap { m in tensor(m).flatMap(source.scalar).map { (m, $0) } }
        guard values.count >= 2 else { return }
        let distinct = Set(values.map(\.1.bitPattern))
        guard distinct.count > 1 else { return }
        let listed = values.map { "\(leaf($0.0.name)) \($0.1)" }.joined(separator: ", ")
        let magnitudes = values.map { $0.1.magnitude }.filter { $0 > 0 && $0.isFinite }
        let ratio = (magnitudes.max() ?? 0) / (magnitudes.min() ?? 1)
        let ratioText = ratio.isFinite && ratio > 0 ? " (\(Float(Int(ratio * 1000)) / 1000)× apart)" : ""
        let fix = rule == .fusedGlobalScaleMismatch
            ? "requantize the group against one shared scale (max amax over the members)"
            : "write the same calibrated value (max over the members) for each"
        add(rule, location(members[0]), group.displayName,
            "\(role) differ: \(listed)\(ratioText); engines fuse these and use one value (vLLM the max, or the first member for MoE; TensorRT-LLM asserts), so the other members decode with the wrong scale: \(fix)")
    }

    // MARK: Ignore lists

    private mutating func checkIgnoreList() {
        guard source.isFolder, config.isPresent, model.layout == .compressedTensors || model.layout == .modelopt else { return }
        let layout = model.layout
        let configFile = config.quantizationConfig != nil ? source.file("config.json") : source.file(EngineLayoutNames.ConfigStrings.hfQuantConfigFile)
        let configIgnore = Set((config.quantizationConfig?["ignore"]?.arrayValue ?? []).compactMap(\.stringValue))
        for m in model.modules where m.layout == layout {
            guard let match = config.ignoreMatch(for: m.name, layout: layout) else { continue }
            // Name the file that holds the entry (config.json first, as most loaders read it).
            let configFile = configIgnore.contains(match.entry) ? source.file("config.json") : source.file(EngineLayoutNames.ConfigStrings.hfQuantConfigFile)
            switch match {
            case .substring(let entry):
                add(.excludeSubstringMatch, configFile, m.name,
                    "exclude entry \"\(entry)\" is a substring of this quantized module, and vLLM's ModelOpt loader excludes by substring: it will load the packed U8 bytes as a bf16 weight; write the full module name or a pattern that cannot match it (e.g. \"\(entry).*\" or an exact name)")
            case .exact(let entry), .pattern(let entry):
                add(.ignoredButQuantized, configFile, m.name,
                    "ignore/exclude entry \"\(entry)\" matches this module, so engines load it as unquantized, but its tensors are NVFP4; remove the entry or dequantize the module")
            }
        }
        if layout == .compressedTensors {
            for m in model.modules where m.layout == layout && config.isTargeted(m.name) == false && config.ignoreMatch(for: m.name, layout: layout) == nil {
                add(.quantizedNotTargeted, source.file("config.json"), m.name,
                    "no config group's targets (\(config.targets.joined(separator: ", "))) match this module, so vLLM builds it unquantized and misloads its NVFP4 tensors: add it to a group's targets")
            }
        }
        for k in model.kept where k.structuralReason == nil && !CheckpointAudit.isVisionOrAudio(k.name) {
            guard config.ignoreMatch(for: k.name, layout: layout) == nil else { continue }
            // compressed-tensors: a module no group targets stays unquantized without an ignore entry.
            if layout == .compressedTensors && config.isTargeted(k.name) == false { continue }
            add(.keptNotIgnored, configFile, k.name,
                "this Linear weight is unquantized (\(k.weight.info.dtype.rawValue) \(k.weight.info.shape)) but not in the ignore/exclude list, so engines expect NVFP4 tensors for it and fail or misload: add \"\(k.name)\" to the list")
        }
    }

    /// NVFP4 modules the engines build in high precision by model rule: `kv_b_proj` (MLA absorbs
    /// it) and the MTP layers (`num_hidden_layers + i`, from config.json); ``ModelKeepRules``.
    private mutating func checkKeptByRule() {
        let rules = ModelKeepRules(config: source.config, tensorNames: [], mlaAttention: .quantize)
        for m in model.modules {
            let reason = TensorSelection.structuralReason(module: m.name) == .mlaKVUpProjection ? .mlaKVUpProjection : rules.reason(for: m.name + ".weight")
            guard let reason else { continue }
            add(.keptByRuleQuantized, location(m), m.name,
                "this module is NVFP4 but is kept in high precision by rule (\(reason.rawValue)); the DeepSeek loaders build it unquantized: quantize again without --include for it")
        }
    }

    static func isVisionOrAudio(_ name: String) -> Bool {
        ["visual", "vision_tower", "vision_model", "multi_modal_projector", "embed_vision", "audio_tower", "mm_projector"].contains { name.containsBytes($0) }
    }

    // MARK: Shapes against config.json

    private mutating func checkShapesAgainstConfig() {
        guard let root = source.config else { return }
        let text = root["text_config"].flatMap { $0.objectValue == nil ? nil : $0 } ?? root
        func int(_ key: String) -> Int? { text[key]?.unsignedValue.map(Int.init) }
        guard let hidden = int("hidden_size") else { return }
        // A head count of 0 says nothing about shapes (and must not divide).
        let heads = int("num_attention_heads").flatMap { $0 > 0 ? $0 : nil }
        let kvHeads = int("num_key_value_heads").flatMap { $0 > 0 ? $0 : nil } ?? heads
        let headDim = int("head_dim") ?? heads.map { hidden / $0 }
        let isMLA = text["kv_lora_rank"] != nil && text["kv_lora_rank"] != .null
        let intermediate = int("intermediate_size")
        let moeIntermediate = int("moe_intermediate_size")
        let configPath = source.file("config.json")
        for m in model.modules where m.columns > 0 {
            let name = m.name
            guard name.containsBytes("layers."), !CheckpointAudit.isVisionOrAudio(name) else { continue }
            let leafName = leaf(name)
            let isExpert = name.containsBytes(".experts.")
            let isShared = name.containsBytes("shared_expert")
            var expectN: (Int, String)?, expectK: (Int, String)?
            switch leafName {
            case "q_proj" where !isMLA:
                expectK = (hidden, "hidden_size")
                if let heads, let headDim { expectN = (heads * headDim, "num_attention_heads × head_dim") }
            case "k_proj" where !isMLA, "v_proj" where !isMLA:
                expectK = (hidden, "hidden_size")
                if let kvHeads, let headDim { expectN = (kvHeads * headDim, "num_key_value_heads × head_dim") }
            case "o_proj" where !isMLA:
                expectN = (hidden, "hidden_size")
                if let heads, let headDim { expectK = (heads * headDim, "num_attention_heads × head_dim") }
            case "gate_proj", "up_proj", "w1", "w3":
                expectK = (hidden, "hidden_size")
                if isExpert, let moeIntermediate { expectN = (moeIntermediate, "moe_intermediate_size") }
                else if !isExpert && !isShared, let intermediate { expectN = (intermediate, "intermediate_size") }
                else if isExpert, leafName.hasPrefix("w"), let intermediate { expectN = (intermediate, "intermediate_size") }
            case "down_proj", "w2":
                expectN = (hidden, "hidden_size")
                if isExpert, let moeIntermediate { expectK = (moeIntermediate, "moe_intermediate_size") }
                else if !isExpert && !isShared, let intermediate { expectK = (intermediate, "intermediate_size") }
                else if isExpert, leafName == "w2", let intermediate { expectK = (intermediate, "intermediate_size") }
            default:
                break
            }
            var problems: [String] = []
            if let (n, key) = expectN, n != m.rows { problems.append("N = \(m.rows) but config \(key) = \(n)") }
            if let (k, key) = expectK, k != m.columns { problems.append("K = \(m.columns) but config \(key) = \(k)") }
            if !problems.isEmpty {
                add(.shapeConfigMismatch, configPath, name,
                    "logical shape [\(m.rows), \(m.columns)] disagrees with config.json: \(problems.joined(separator: "; ")); engines build the layer from config.json and fail to load, or the packed tensor is transposed or mis-sized")
            }
        }
    }

    // MARK: Shards and index

    private mutating func checkShards() {
        for d in source.duplicateTensors {
            add(.duplicateTensor, source.path, d.name, "stored in \(d.shards.count) shards (\(d.shards.joined(separator: ", "))); loaders keep whichever they read last")
        }
        for file in source.unreferencedFiles {
            let why = source.index != nil ? "not named by model.safetensors.index.json" : "beside model.safetensors without an index"
            add(.unreferencedShard, source.file(file), file, "\(why), so vLLM and transformers never read it; delete it or add its tensors to the index")
        }
        guard let index = source.index else { return }
        var listed = Set<String>()
        for (tensor, shard) in index.weightMap {
            listed.insert(tensor)
            let inNamed = source.shards.first { $0.fileName == shard }?.reader.header.tensor(named: tensor) != nil
            if inNamed { continue }
            if let found = source.tensor(named: tensor) {
                add(.indexWrongShard, index.path, tensor, "weight_map says \(shard) but the tensor is in \(source.shards[found.shard].fileName); transformers looks in the named shard and fails")
            } else {
                add(.indexTensorMissing, index.path, tensor, "weight_map lists it in \(shard) but no shard holds it; transformers fails to load")
            }
        }
        for t in source.allTensors where !listed.contains(t.name) {
            add(.indexTensorUnlisted, source.path(of: t), t.name, "not listed in model.safetensors.index.json weight_map; transformers never loads it")
        }
    }
}

/// `a.b.q_proj` → `q_proj`.
func leaf(_ module: String) -> String { FusedModulePatterns.split(module).leaf }
