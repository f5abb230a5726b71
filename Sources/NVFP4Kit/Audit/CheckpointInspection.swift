/// What `nvfp4 inspect` reports about a checkpoint as a model: layout, quantization config,
/// counts, fused groups, kept modules and shards. Reads headers, configs and the scalar scales only.
public struct CheckpointInspection {
    /// A fused group and whether its members agree.
    public struct GroupSummary {
        public var group: FusedModuleGroup
        /// Members stored as NVFP4.
        public var quantizedMembers: [String]
        /// Whether every member has the same global weight scale; `nil` if not all are quantized or
        /// the values cannot be read.
        public var globalScalesMatch: Bool?
        /// The same for input scales; `nil` when the members have none.
        public var inputScalesMatch: Bool?
    }

    /// A Linear weight that stayed unquantized, and why if that can be told.
    public struct KeptSummary {
        public var module: KeptModule
        /// `listed in ignore ("lm_head")`, `embedding`, … or `not listed in ignore/exclude`.
        public var reason: String
    }

    /// A shard's totals.
    public struct ShardSummary {
        public var fileName: String
        public var tensors: Int
        public var bytes: UInt64
        public var quantizedModules: Int
    }

    public let source: CheckpointSource
    public let model: CheckpointModel
    public let config: QuantizationConfigSummary
    public let groups: [GroupSummary]
    public let kept: [KeptSummary]
    public let shards: [ShardSummary]
    /// The FP8 weights (an FP8 checkpoint that `quantize` converts).
    public let fp8: FP8Inventory

    public init(source: CheckpointSource) {
        self.source = source
        fp8 = FP8Inventory(headers: source.shards.map(\.reader.header), config: source.config)
        let model = CheckpointModel(source: source)
        let config = QuantizationConfigSummary(config: source.config, hfQuantConfig: source.hfQuantConfig)
        self.model = model
        self.config = config
        let quantized = Dictionary(model.modules.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        groups = model.fusedGroups.map { group in
            let members = group.members.compactMap { quantized[$0] }
            func agree(_ tensor: (QuantizedModule) -> LocatedTensor?) -> Bool? {
                guard members.count == group.members.count else { return nil }
                let values = members.map { tensor($0).flatMap(source.scalar) }
                guard values.allSatisfy({ $0 != nil }), !values.isEmpty else { return nil }
                return Set(values.map { $0!.bitPattern }).count == 1
            }
            return GroupSummary(group: group, quantizedMembers: members.map(\.name), globalScalesMatch: agree { $0.globalScale },
                                inputScalesMatch: agree { $0.inputScale })
        }
        let layout = model.layout
        kept = model.kept.map { k in
            if let match = config.ignoreMatch(for: k.name, layout: layout) {
                return KeptSummary(module: k, reason: "listed in ignore (\"\(match.entry)\")")
            }
            if let reason = k.structuralReason { return KeptSummary(module: k, reason: reason) }
            if CheckpointAudit.isVisionOrAudio(k.name) { return KeptSummary(module: k, reason: "vision/audio tower") }
            return KeptSummary(module: k, reason: config.isPresent ? "not listed in ignore/exclude" : "unknown")
        }
        var perShard = [Int](repeating: 0, count: source.shards.count)
        for m in model.modules { perShard[m.packed.shard] += 1 }
        shards = source.shards.enumerated().map { i, shard in
            ShardSummary(fileName: shard.fileName, tensors: shard.reader.header.tensors.count,
                         bytes: UInt64(shard.reader.dataStart) + shard.reader.header.dataByteCount, quantizedModules: perShard[i])
        }
    }

    /// Packed e2m1 bytes over all modules.
    public var packedBytes: Int { model.modules.reduce(0) { $0 + $1.packedBytes } }

    /// A one-line description of the quantization config.
    public var configLine: String {
        guard config.isPresent else { return "none" }
        var parts: [String] = []
        if let m = config.quantMethod { parts.append("quant_method \(m)") }
        if let f = config.format { parts.append("format \(f)") }
        if let a = config.quantAlgo { parts.append("quant_algo \(a)") }
        if let fp8 = fp8.configScheme {
            parts.append(fp8)
        } else if let q = config.activationsQuantized {
            parts.append(q ? "W4A4 (static input scales)" : "weight-only (W4A16)")
        }
        if config.hfQuantization != nil { parts.append("hf_quant_config.json") }
        parts.append("\(config.ignore.count) ignore/exclude entr\(config.ignore.count == 1 ? "y" : "ies")")
        return parts.joined(separator: ", ")
    }

    /// One module as `inspect --json` lists it under `nvfp4_weights`.
    public func json(module m: QuantizedModule) -> JSONValue {
        .object([
            ("name", .string(m.originalName)),
            ("module", .string(m.name)),
            ("shape", .array(m.logicalShape.map { .int($0) })),
            ("layout", .string(m.layout.rawValue)),
            ("scale_layout", .string(m.scaleLayout.rawValue)),
            ("original_dtype", m.originalDtype.map { .string($0.shortName) } ?? .null),
            ("per_tensor_scale", m.perTensorScales(in: source).map { $0.count == 1 ? .finite(Double($0[0])) : .array($0.map { .finite(Double($0)) }) } ?? .null),
            ("input_scale", m.inputScaleValue(in: source).map { .finite(Double($0)) } ?? .null),
            ("file", .string(source.shards[m.packed.shard].fileName)),
            ("tensors", .array(m.tensors.map { .string($0.name) })),
        ])
    }

    /// The model-level part of `inspect --json`.
    public var jsonMembers: [(key: String, value: JSONValue)] {
        var configMembers: [(key: String, value: JSONValue)] = [
            ("present", .bool(config.isPresent)),
            ("quant_method", config.quantMethod.map { .string($0) } ?? .null),
            ("format", config.format.map { .string($0) } ?? .null),
            ("quant_algo", config.quantAlgo.map { .string($0) } ?? .null),
            ("activations_quantized", config.activationsQuantized.map { .bool($0) } ?? .null),
            ("ignore", .array(config.ignore.map { .string($0) })),
            ("hf_quant_config", .bool(config.hfQuantization != nil)),
        ]
        if let qc = config.quantizationConfig { configMembers.append(("quantization_config", qc)) }
        return [
            ("layout", .string(model.layout.rawValue)),
            ("layouts_found", .array(model.layoutsFound.map { .string($0.rawValue) })),
            ("fp8", fp8.json),
            ("quantization", .object(configMembers)),
            ("counts", .object([
                ("files", .int(source.shards.count)),
                ("tensors", .int(source.shards.reduce(0) { $0 + $1.reader.header.tensors.count })),
                ("nvfp4_modules", .int(model.modules.count)),
                ("kept_linear_weights", .int(model.kept.count)),
                ("packed_bytes", .int(packedBytes)),
                ("modules_with_input_scale", .int(model.modules.filter { $0.inputScale != nil }.count)),
            ])),
            ("fused_groups", .array(groups.map { g in
                .object([
                    ("name", .string(g.group.displayName)),
                    ("members", .array(g.group.members.map { .string($0) })),
                    ("quantized", .array(g.quantizedMembers.map { .string($0) })),
                    ("global_scales_match", g.globalScalesMatch.map { .bool($0) } ?? .null),
                    ("input_scales_match", g.inputScalesMatch.map { .bool($0) } ?? .null),
                ])
            })),
            ("kept", .array(kept.map { k in
                .object([
                    ("module", .string(k.module.name)),
                    ("dtype", .string(k.module.weight.info.dtype.rawValue)),
                    ("shape", .array(k.module.weight.info.shape.map { .int($0) })),
                    ("reason", .string(k.reason)),
                ])
            })),
            ("shards", .array(shards.map { s in
                .object([("file", .string(s.fileName)), ("tensors", .int(s.tensors)), ("bytes", .int(s.bytes)), ("nvfp4_modules", .int(s.quantizedModules))])
            })),
        ]
    }
}
