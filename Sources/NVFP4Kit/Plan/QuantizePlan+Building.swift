/// The steps of building a ``QuantizePlan``, in the order ``QuantizePlan/init`` runs them.
extension QuantizePlan {

    /// Each tensor's decision and write kind, before fused groups are considered. An FP8 weight
    /// is decided as its dequantized dtype (``TensorPlan/source``); its scale and static input
    /// scale are consumed.
    ///
    /// - Parameter path: The display path of input shard `i`, for errors.
    /// - Throws: ``FileError`` (``FP8Error``) for an FP8 tensor that cannot be converted.
    static func decide(
        shards: [Shard], config: JSONValue?, options: QuantizeOptions, calibrated: Bool, tensorParallel: Int, path: (Int) -> String
    ) throws -> [TensorPlan] {
        // Names are unique across shards (a folder plan checks it).
        let index = FP8Checkpoint.lookupIndex(shards.map(\.header))
        let (sources, consumed) = try fp8Sources(shards: shards, index: index, config: config, options: options, path: path)
        let names = shards.lazy.flatMap { $0.header.tensors.lazy.map(\.name) }
        let rules = ModelKeepRules(config: config, tensorNames: names, mlaAttention: options.mlaAttention)
        var result: [TensorPlan] = []
        result.reserveCapacity(shards.reduce(0) { $0 + $1.header.tensors.count })
        for (s, shard) in shards.enumerated() {
            for tensor in shard.header.tensors {
                var plan = TensorPlan(tensor: tensor, inputShard: s, decision: .keep(.fp8Scale), kind: .consumed, group: nil, outputShard: 0)
                plan.fp8 = sources[tensor.name]
                if consumed.contains(tensor.name) {
                    result.append(plan)
                    continue
                }
                if tensor.dtype.isEightBitFloat && plan.fp8 == nil {
                    throw FileError(path: path(s), cause: FP8Error.unconvertible(
                        tensor: tensor.name, problem: "\(tensor.dtype.rawValue) that is neither an F8_E4M3 .weight with a scale nor a scale"))
                }
                let source = plan.source
                var decision = options.selection.decide(source)
                var kind: TensorWriteKind = decision == .quantize ? .matrix : .kept
                if decision == .quantize, tensorParallel > 1, source.shape.count == 2,
                    !TensorSelection.splitsEvenly(module: moduleName(source.name), columns: source.shape[1], tensorParallel: tensorParallel)
                {
                    decision = .keep(.notMultipleOf16AfterTensorParallel)
                    kind = .kept
                }
                if case .keep(let reason) = decision, reason == .notAWeight || reason == .notTwoDimensional,
                    let naming = StackedExpertNaming(source)
                {
                    (decision, kind) = stackedDecision(source, naming: naming, options: options, calibrated: calibrated, otherwise: decision)
                }
                plan.decision = decision
                plan.kind = kind
                if case .keep(let reason) = decision { plan.keep(reason) }
                if decision == .quantize, !options.selection.isIncluded(tensor.name), let reason = rules.reason(for: tensor.name) { plan.keep(reason) }
                result.append(plan)
            }
        }
        return result
    }

    /// Keep reasons and how many tensors each kept, most common first.
    static func reasonCounts(_ tensors: [TensorPlan]) -> [(reason: String, count: Int)] {
        var counts: [String: Int] = [:]
        for t in tensors { if case .keep(let r) = t.decision { counts[r.rawValue, default: 0] += 1 } }
        return counts.sorted { ($1.value, $0.key) < ($0.value, $1.key) }.map { ($0.key, $0.value) }
    }

    /// The FP8 source of every FP8 weight, and the tensors they consume (scales, static input scales).
    static func fp8Sources(
        shards: [Shard], index: [String: (shard: Int, tensor: TensorInfo)], config: JSONValue?, options: QuantizeOptions, path: (Int) -> String
    ) throws -> (sources: [String: FP8Source], consumed: Set<String>) {
        let checkpoint = FP8Checkpoint(config: config, blockSize: options.fp8BlockSize)
        var sources: [String: FP8Source] = [:]
        var consumed: Set<String> = []
        for (s, shard) in shards.enumerated() {
            for tensor in shard.header.tensors where tensor.dtype == .f8E4M3 && (tensor.name.hasSuffix(".weight") || tensor.name == "weight") {
                let source: FP8Source
                do { source = try checkpoint.source(of: tensor, index: index) } catch { throw FileError(path: path(s), cause: error) }
                sources[tensor.name] = source
                consumed.insert(source.scale.name)
                let module = moduleName(tensor.name)
                let input = module.isEmpty ? "input_scale" : module + ".input_scale"
                if index[input] != nil { consumed.insert(input) }
            }
        }
        if let clash = consumed.first(where: { sources[$0] != nil }) {
            throw FileError(path: path(index[clash]!.shard), cause: FP8Error.unconvertible(tensor: clash, problem: "it is both an FP8 weight and another weight's scale"))
        }
        return (sources, consumed)
    }

    /// The decision for a stacked expert tensor `[E, N, K]`: quantized in every layout where its
    /// shape allows (torchao's 3-D layout needs `N % 128 == 0`, two-level scaling and no
    /// calibration; per-expert slices need each slice's rows to be a multiple of 16).
    static func stackedDecision(
        _ tensor: TensorInfo, naming: StackedExpertNaming, options: QuantizeOptions, calibrated: Bool, otherwise: TensorDecision
    ) -> (TensorDecision, TensorWriteKind) {
        guard tensor.dtype.isQuantizable else { return (.keep(.unsupportedDtype), .kept) }
        if let reason = TensorSelection.structuralReason(module: naming.expertsModule) { return (.keep(reason), .kept) }
        guard naming.columns % 16 == 0, (naming.rows / naming.leaves.count) % 16 == 0 else { return (.keep(.notMultipleOf16), .kept) }
        guard options.format.names.stacksExperts else { return (.quantize, .expertSlices(naming)) }
        guard naming.rows % 128 == 0, options.mode == .twoLevel, !calibrated else { return (.keep(.stackedExpertsUnsupported), .kept) }
        return (.quantize, .stackedExperts)
    }

    /// The fused groups among the 2-D weights; a group whose members are not all quantized is kept
    /// whole (each member kept for the partner's sake is marked so).
    static func fusedGroups(_ tensors: inout [TensorPlan], fusion: FusedGroups, format: CheckpointFormat) -> [Group] {
        // Only 2-D weights fuse: index those by name (first entry of a name wins), not every tensor.
        let matrices = tensors.indices.filter { tensors[$0].tensor.shape.count == 2 }
        let names = matrices.map { tensors[$0].tensor.name }
        var index = NameIndex(capacity: names.count)
        for k in names.indices { _ = index.insert(Int32(k), named: names[k]) { names[Int($0)] } }
        var groups: [Group] = []
        for group in fusion.groups(in: names) {
            let members = group.weights.compactMap { name in index.key(of: name) { names[Int($0)] }.map { matrices[Int($0)] } }
            let quantized = members.allSatisfy { tensors[$0].kind == .matrix }
            for m in members {
                tensors[m].group = groups.count
                if !quantized && tensors[m].isQuantized { tensors[m].keep(.fusedPartnerKept) }
            }
            groups.append(Group(group: group, quantized: quantized, sharesScale: quantized && format.names.sharesFusedScales, memberAmax: [], sharedAmax: nil))
        }
        return groups
    }

    /// Reads the members of every group that shares a scale, shard by shard, for their amax.
    static func sharedAmaxPrePass(
        _ groups: inout [Group], tensors: [TensorPlan], shards: [Shard], threads: Int, open: (Int) throws -> SafetensorsReader
    ) throws {
        let members = Set(groups.filter(\.sharesScale).flatMap(\.group.weights))
        guard !members.isEmpty else { return }
        var amax: [String: Float] = [:]
        try withoutActuallyEscaping(open) { open in
        for s in shards.indices {
            let wanted = tensors.filter { $0.inputShard == s && members.contains($0.tensor.name) }
            guard !wanted.isEmpty else { continue }
            let reader = try open(s)
            let input = SourceReader(reader: reader, shard: s, threads: threads, open: open)
            let buffers = ChunkBuffers()
            for plan in wanted {
                // Only finiteness is checked here: a member may be all zero, as long as its group is not.
                amax[plan.tensor.name] = try input.magnitudeMaximum(of: plan, buffers: buffers)
                reader.release(plan.tensor)
            }
        }
        }
        for i in groups.indices where groups[i].sharesScale {
            groups[i].memberAmax = groups[i].group.weights.map { amax[$0]! }
            groups[i].sharedAmax = groups[i].memberAmax.max()
        }
    }

    /// Every quantized weight needs a calibrated input amax; a fused group (and an expert's
    /// gate/up slices, which read one input) share the max.
    static func applyCalibration(
        _ calibration: [String: Float], path: String, tensors: [TensorPlan], groups: [Group], into scalePlan: inout ScalePlan
    ) throws {
        func amax(_ weight: String) throws -> Float {
            let module = moduleName(weight)
            guard let value = calibration[module] else { throw FileError(path: path, cause: CalibrationError.missing(module: module)) }
            guard value.isFinite, value > 0 else { throw FileError(path: path, cause: CalibrationError.invalidAmax(module: module, amax: value)) }
            return value
        }
        for plan in tensors where plan.isQuantized {
            switch plan.kind {
            case .expertSlices(let naming):
                for e in 0..<naming.experts {
                    let names = naming.slices.filter { $0.expert == e }.map(StackedExpertNaming.weightName)
                    let shared = try names.map(amax).max()!
                    for name in names { scalePlan.inputAmax[name] = shared }
                }
            default:
                scalePlan.inputAmax[plan.tensor.name] = try amax(plan.tensor.name)
            }
        }
        for group in groups where group.quantized {
            let shared = group.group.weights.compactMap { scalePlan.inputAmax[$0] }.max()!
            for member in group.group.weights { scalePlan.inputAmax[member] = shared }
        }
    }

    /// The output tensors of one planned tensor, in write order.
    static func outputs(of plan: TensorPlan, layout: any WeightLayout, scalePlan: ScalePlan) -> [PlannedTensor] {
        let t = plan.tensor
        switch plan.kind {
        case .kept:
            return [PlannedTensor(name: t.name, dtype: t.dtype, shape: t.shape)]
        case .dequantized:
            return [PlannedTensor(name: t.name, dtype: plan.source.dtype, shape: t.shape)]
        case .consumed:
            return []
        case .matrix:
            return layout.storedParts(ofWeight: t.name, rows: t.shape[0], columns: t.shape[1], calibrated: scalePlan.inputAmax[t.name] != nil).map(\.tensor)
        case .stackedExperts:
            return StackedExperts.storedParts(t, layout: (layout as! TorchAOWeightLayout).torchao).map(\.tensor)
        case .expertSlices(let naming):
            return naming.slices.flatMap { slice in
                let name = StackedExpertNaming.weightName(of: slice)
                return layout.storedParts(ofWeight: name, rows: slice.rows.count, columns: naming.columns, calibrated: scalePlan.inputAmax[name] != nil).map(\.tensor)
            }
        }
    }

    /// Refuses a plan in which two input tensors would be written under one name (a hostile or
    /// odd checkpoint: `x.weight_packed` beside a quantized `x.weight`, per-expert tensors beside
    /// their stacked form).
    static func checkUniqueOutputs(_ tensors: [TensorPlan], source: PlanSource) throws {
        // Every output as (entry, output) positions, hashed by name: no name is copied.
        var outputs: [(entry: Int32, output: Int32)] = []
        outputs.reserveCapacity(tensors.reduce(0) { $0 + $1.outputCount })
        for (e, plan) in tensors.enumerated() {
            for o in 0..<plan.outputCount { outputs.append((Int32(e), Int32(o))) }
        }
        var seen = NameIndex(capacity: outputs.count)
        for key in outputs.indices {
            let (e, o) = outputs[key]
            let name = tensors[Int(e)].outputName(Int(o))
            let existing = seen.insert(Int32(key), named: name) { tensors[Int(outputs[Int($0)].entry)].outputName(Int(outputs[Int($0)].output)) }
            guard let existing else { continue }
            let first = tensors[Int(outputs[Int(existing)].entry)].tensor.name
            guard first != tensors[Int(e)].tensor.name else { continue }
            let path = source.folder?.path ?? { if case .file(let p) = source { return p } else { return "" } }()
            throw FileError(path: path, cause: PlanError.outputNameCollision(name: name, first: first, second: tensors[Int(e)].tensor.name))
        }
    }

    /// Cuts each input shard into output shards of at most `maxShardSize` data bytes, in file order,
    /// and records each tensor's output shard.
    static func split(_ tensors: inout [TensorPlan], shards: [Shard], maxShardSize: Int?, single: Bool) -> [OutputShard] {
        var pieces: [(input: Int, tensors: [Int])] = []
        for s in shards.indices {
            var current: [Int] = []
            var bytes = 0
            for i in tensors.indices where tensors[i].inputShard == s {
                let size = tensors[i].outputByteCount
                if let maxShardSize, !current.isEmpty, bytes + size > maxShardSize {
                    pieces.append((s, current))
                    current = []
                    bytes = 0
                }
                current.append(i)
                bytes += size
            }
            pieces.append((s, current))
        }
        let names: [String]
        if maxShardSize == nil || single {
            names = pieces.map { shards[$0.input].name }
        } else if pieces.count == 1 {
            names = [ModelFolder.singleFileName]
        } else {
            let digits = max(5, String(pieces.count).count)
            func padded(_ n: Int) -> String { String(repeating: "0", count: max(0, digits - String(n).count)) + String(n) }
            names = (1...pieces.count).map { "model-\(padded($0))-of-\(padded(pieces.count)).safetensors" }
        }
        var result: [OutputShard] = []
        for (o, piece) in pieces.enumerated() {
            for i in piece.tensors { tensors[i].outputShard = o }
            result.append(OutputShard(name: names[o], input: piece.input, tensors: piece.tensors))
        }
        return result
    }
}
