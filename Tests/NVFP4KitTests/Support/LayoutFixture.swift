import Glibc
import NVFP4Kit

/// A small NVFP4 model built in a test: tiny-llama's Linear weights quantized with the library
/// codec and stored in any of the three layouts, with a realistic config, optionally sharded.
/// Tests then break one thing at a time (a scale, a name, a config key) and run the audit.
struct LayoutFixture {
    /// A stored tensor.
    struct Tensor {
        var dtype: DType
        var shape: [Int]
        var bytes: [UInt8]
    }

    var layout: CheckpointLayout
    /// Tensors in insertion order (names unique).
    private(set) var names: [String] = []
    private(set) var tensors: [String: Tensor] = [:]
    /// `__metadata__` of the single file / every shard.
    var metadata: [(key: String, value: String)] = [("format", "pt")]
    /// config.json (`nil`: no config.json).
    var config: JSONValue?
    /// hf_quant_config.json (`nil`: none).
    var hfQuantConfig: JSONValue?

    static let attentionLeaves = ["q_proj", "k_proj", "v_proj", "o_proj"]
    static let mlpLeaves = ["gate_proj", "up_proj", "down_proj"]

    /// tiny-llama quantized in `layout`.
    ///
    /// - Parameters:
    ///   - sharedFusedScales: Give q/k/v and gate/up one global scale (the max amax), as ModelOpt and
    ///     llm-compressor intend; `false` reproduces llm-compressor's fused-scale regression.
    ///   - w4a4: Write static input scales and a W4A4 config; otherwise weight-only.
    ///   - keep: Linear modules left in bf16 (and listed in the ignore list when `listKept`).
    static func tinyLlama(
        _ layout: CheckpointLayout, sharedFusedScales: Bool = true, w4a4: Bool = true,
        keep: Set<String> = [], listKept: Bool = true
    ) throws -> LayoutFixture {
        let reader = try SafetensorsReader(path: FixturePaths.tinyLlama, hashing: false)
        var fixture = LayoutFixture(layout: layout)
        var amax: [String: Float] = [:]
        var isLinear: [String: Bool] = [:]
        for t in reader.header.tensors {
            let module = t.name.hasSuffix(".weight") ? String(t.name.dropLast(7)) : ""
            let leafName = module.split(separator: ".").last.map(String.init) ?? ""
            let linear = (attentionLeaves + mlpLeaves).contains(leafName) && !keep.contains(module)
            isLinear[t.name] = linear
            if linear {
                amax[module] = try reader.withBytes(of: t) {
                    DenseMatrix(bytes: $0, dtype: t.dtype, rows: t.shape[0], columns: t.shape[1]).magnitudeMaximum().amax
                }
            }
        }
        func scaleAmax(_ module: String) -> Float {
            guard sharedFusedScales else { return amax[module]! }
            let parts = module.split(separator: ".").map(String.init)
            let parent = parts.dropLast().joined(separator: ".")
            for group in FusedModulePatterns.patterns where group.contains(parts.last!) {
                return group.compactMap { amax[parent + "." + $0] }.max()!
            }
            return amax[module]!
        }
        for t in reader.header.tensors {
            let bytes = try reader.withBytes(of: t) { Array($0) }
            guard isLinear[t.name] == true else {
                fixture.set(t.name, Tensor(dtype: t.dtype, shape: t.shape, bytes: bytes))
                continue
            }
            let module = String(t.name.dropLast(7))
            let leafName = String(module.split(separator: ".").last!)
            // A calibrated activation amax: the same for members that read the same input.
            let inputAmax: Float = ["q_proj", "k_proj", "v_proj"].contains(leafName) ? 12 : ["gate_proj", "up_proj"].contains(leafName) ? 9 : 30
            fixture.addQuantized(module, weight: bytes, dtype: t.dtype, rows: t.shape[0], columns: t.shape[1],
                                 scaleAmax: scaleAmax(module), inputAmax: w4a4 ? inputAmax : nil)
        }
        fixture.config = try fixture.quantizationConfig(
            base: try JSONParser.parse(Array(try readWholeFile(FixturePaths.root + "/Fixtures/tiny-llama/config.json"))),
            ignore: ["lm_head"] + (listKept ? keep.sorted().map { .string($0) } : []), w4a4: w4a4)
        return fixture
    }

    /// Expert naming of a mixture-of-experts model.
    enum MoEStyle {
        /// Qwen-MoE / DeepSeek: `mlp.experts.E.{gate,up,down}_proj`, router `mlp.gate`.
        case qwen
        /// Mixtral: `block_sparse_moe.experts.E.{w1,w3,w2}`, router `block_sparse_moe.gate`.
        case mixtral
    }

    /// A one-layer MoE model with seeded random bf16 weights: attention (4 heads × 16, 2 KV heads,
    /// hidden 64), `experts` experts of intermediate 32, a bf16 router listed in the ignore list,
    /// embeddings and lm_head. Fused members share their global scale unless `sharedFusedScales` is false.
    static func moe(_ layout: CheckpointLayout, style: MoEStyle = .qwen, experts: Int = 4, sharedFusedScales: Bool = true) throws -> LayoutFixture {
        let hidden = 64, moeIntermediate = 32, vocab = 128
        var linears: [(String, Int, Int)] = [
            ("model.layers.0.self_attn.q_proj", 64, hidden), ("model.layers.0.self_attn.k_proj", 32, hidden),
            ("model.layers.0.self_attn.v_proj", 32, hidden), ("model.layers.0.self_attn.o_proj", hidden, 64),
        ]
        let block = style == .qwen ? "model.layers.0.mlp" : "model.layers.0.block_sparse_moe"
        let (gate, up, down) = style == .qwen ? ("gate_proj", "up_proj", "down_proj") : ("w1", "w3", "w2")
        for e in 0..<experts {
            linears += [("\(block).experts.\(e).\(gate)", moeIntermediate, hidden), ("\(block).experts.\(e).\(up)", moeIntermediate, hidden),
                        ("\(block).experts.\(e).\(down)", hidden, moeIntermediate)]
        }
        var random = SeededRandom(seed: 7)
        var weights: [String: [UInt8]] = [:]
        var amax: [String: Float] = [:]
        for (i, (name, rows, columns)) in linears.enumerated() {
            let spread = 0.02 * Float(1 + i % 5)  // members of a fused group get different ranges
            var bytes: [UInt8] = []
            var largest: Float = 0
            for _ in 0..<(rows * columns) {
                let bits = BFloat16.fromFloat(random.gaussian() * spread)
                largest = max(largest, BFloat16.toFloat(bits).magnitude)
                bytes += [UInt8(truncatingIfNeeded: bits), UInt8(truncatingIfNeeded: bits >> 8)]
            }
            weights[name] = bytes
            amax[name] = largest
        }
        var fixture = LayoutFixture(layout: layout)
        func plain(_ name: String, _ shape: [Int]) {
            let count = shape.reduce(1, *)
            var bytes: [UInt8] = []
            for _ in 0..<count {
                let bits = BFloat16.fromFloat(random.gaussian() * 0.02)
                bytes += [UInt8(truncatingIfNeeded: bits), UInt8(truncatingIfNeeded: bits >> 8)]
            }
            fixture.set(name, Tensor(dtype: .bf16, shape: shape, bytes: bytes))
        }
        plain("model.embed_tokens.weight", [vocab, hidden])
        plain("lm_head.weight", [vocab, hidden])
        plain("model.norm.weight", [hidden])
        plain("model.layers.0.input_layernorm.weight", [hidden])
        plain("\(block).gate.weight", [experts, hidden])
        let groups = FusedModulePatterns.groups(in: linears.map(\.0))
        for (name, rows, columns) in linears {
            let group = groups.first { $0.members.contains(name) }
            let scaleAmax = sharedFusedScales ? (group?.members.compactMap { amax[$0] }.max() ?? amax[name]!) : amax[name]!
            let leafName = String(name.split(separator: ".").last!)
            let inputAmax: Float = ["q_proj", "k_proj", "v_proj"].contains(leafName) ? 12 : [gate, up].contains(leafName) ? 9 : 30
            fixture.addQuantized(name, weight: weights[name]!, dtype: .bf16, rows: rows, columns: columns, scaleAmax: scaleAmax, inputAmax: inputAmax)
        }
        let base: JSONValue = .object([
            ("architectures", .array([.string(style == .qwen ? "Qwen3MoeForCausalLM" : "MixtralForCausalLM")])),
            ("model_type", .string(style == .qwen ? "qwen3_moe" : "mixtral")),
            ("hidden_size", .int(hidden)), ("num_attention_heads", 4), ("num_key_value_heads", 2), ("head_dim", 16),
            ("num_hidden_layers", 1), ("vocab_size", .int(vocab)),
            ("intermediate_size", .int(style == .qwen ? 128 : moeIntermediate)),
            ("moe_intermediate_size", style == .qwen ? .int(moeIntermediate) : .null),
            ("num_experts", .int(experts)), ("tie_word_embeddings", false),
        ])
        let router: JSONValue = layout == .compressedTensors ? .string("re:.*\(style == .qwen ? "mlp" : "block_sparse_moe")\\.gate$") : .string("\(block).gate")
        fixture.config = try fixture.quantizationConfig(base: base.setting(["moe_intermediate_size"], style == .qwen ? .int(moeIntermediate) : nil), ignore: ["lm_head", router], w4a4: true)
        return fixture
    }

    /// Quantizes one weight with the library codec against the global scale `scaleAmax / 2688` and
    /// stores its tensors in this fixture's layout (with an input scale for `inputAmax`).
    mutating func addQuantized(_ module: String, weight bytes: [UInt8], dtype: DType, rows: Int, columns: Int, scaleAmax: Float, inputAmax: Float?) {
        let scale = TensorScale(amax: scaleAmax, perTensorScale: scaleAmax / 2688)
        let codec = NVFP4Codec(scale: scale, numerics: .cpu)
        let scaleLayout: ScaleLayout = layout == .torchao ? .swizzled : .rowMajor
        var packed = [UInt8](repeating: 0, count: rows * columns / 2)
        var scales = [UInt8](repeating: 0, count: scaleLayout.storedByteCount(rows: rows, blocks: columns / 16))
        var error = QuantizationError()
        bytes.withUnsafeBytes { source in
            packed.withUnsafeMutableBytes { p in
                scales.withUnsafeMutableBytes { s in
                    codec.quantize(DenseMatrix(bytes: source, dtype: dtype, rows: rows, columns: columns), rows: 0..<rows,
                                   packed: p, scales: s, layout: scaleLayout, error: &error)
                }
            }
        }
        let names = EngineLayoutNames.of(layout)!
        let pts = scale.perTensorScale!
        let scalarShape = layout == .compressedTensors ? [1] : []
        set(names.name(names.packed, of: module), Tensor(dtype: .u8, shape: [rows, columns / 2], bytes: packed))
        set(names.name(names.blockScales, of: module),
            Tensor(dtype: .f8E4M3, shape: scaleLayout.storedShape(rows: rows, blocks: columns / 16), bytes: scales))
        set(names.name(names.globalScale, of: module),
            Tensor(dtype: .f32, shape: scalarShape, bytes: f32Bytes(names.storesReciprocalScales ? 1 / pts : pts)))
        if let inputAmax, layout != .torchao {
            let inputScale = inputAmax / 2688
            set(names.name(names.inputScale, of: module),
                Tensor(dtype: .f32, shape: scalarShape, bytes: f32Bytes(names.storesReciprocalScales ? 1 / inputScale : inputScale)))
        }
        if layout == .torchao {
            metadata.append((module + ".weight", TorchAOLayout(mode: .twoLevel).weightMetadata(originalDtype: dtype)))
        }
    }

    /// `base` with the `quantization_config` (and for ModelOpt the hf_quant_config.json) this layout's producers write.
    mutating func quantizationConfig(base: JSONValue, ignore: [JSONValue], w4a4: Bool) throws -> JSONValue {
        var config = base
        switch layout {
        case .compressedTensors:
            let args: JSONValue = .object([
                ("num_bits", 4), ("type", "float"), ("strategy", "tensor_group"), ("group_size", 16), ("symmetric", true), ("dynamic", false),
            ])
            var inputArgs = args
            inputArgs = inputArgs.setting(["dynamic"], "local")
            config = config.setting(["quantization_config"], .object([
                ("config_groups", .object([("group_0", .object([
                    ("format", "nvfp4-pack-quantized"), ("targets", .array(["Linear"])), ("weights", args),
                    ("input_activations", w4a4 ? inputArgs : .null), ("output_activations", .null),
                ]))])),
                ("format", "nvfp4-pack-quantized"), ("ignore", .array(ignore)), ("kv_cache_scheme", .null),
                ("quant_method", "compressed-tensors"), ("quantization_status", "compressed"),
                ("sparsity_config", .object([])), ("transform_config", .object([])), ("version", "0.12.2"),
            ]))
        case .modelopt:
            let algo: JSONValue = w4a4 ? "NVFP4" : "W4A16_NVFP4"
            config = config.setting(["quantization_config"], .object([
                ("config_groups", .object([("group_0", .object([
                    ("weights", .object([("dynamic", false), ("num_bits", 4), ("type", "float"), ("group_size", 16)])),
                    ("targets", .array(["Linear"])),
                ]))])),
                ("ignore", .array(ignore)), ("quant_algo", algo),
                ("producer", .object([("name", "modelopt"), ("version", "0.37.0")])), ("quant_method", "modelopt"),
            ]))
            hfQuantConfig = .object([
                ("producer", .object([("name", "modelopt"), ("version", "0.37.0")])),
                ("quantization", .object([("quant_algo", algo), ("kv_cache_quant_algo", .null), ("group_size", 16), ("exclude_modules", .array(ignore))])),
            ])
        case .torchao:
            config = config.setting(["quantization_config"], .object([
                ("quant_method", "torchao"),
                ("quant_type", .object([("default", .object([("_type", "NVFP4DynamicActivationNVFP4WeightConfig"), ("_version", 1)]))])),
            ]))
        case .unquantized:
            break
        }
        return config
    }

    mutating func set(_ name: String, _ tensor: Tensor) {
        if tensors[name] == nil { names.append(name) }
        tensors[name] = tensor
    }

    mutating func remove(_ name: String) {
        precondition(tensors[name] != nil, "no tensor \(name)")
        tensors[name] = nil
        names.removeAll { $0 == name }
    }

    mutating func rename(_ name: String, to newName: String) {
        let t = tensors[name]!
        remove(name)
        set(newName, t)
    }

    /// Overwrites a one-element F32 tensor.
    mutating func setScalar(_ name: String, _ value: Float) {
        precondition(tensors[name]?.dtype == .f32, "no F32 tensor \(name)")
        tensors[name]!.bytes = f32Bytes(value)
    }

    func scalar(_ name: String) -> Float {
        Float(bitPattern: tensors[name]!.bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) })
    }

    /// Overwrites byte `index` of a tensor.
    mutating func setByte(_ name: String, _ index: Int, _ value: UInt8) { tensors[name]!.bytes[index] = value }

    /// The stored name of a part of module `module` in this fixture's layout.
    func name(_ part: KeyPath<EngineLayoutNames, String>, _ module: String) -> String {
        let names = EngineLayoutNames.of(layout)!
        return names.name(names[keyPath: part], of: module)
    }

    /// The safetensors bytes of `tensorNames` (all by default), F32 first as the reference writer orders.
    func fileBytes(_ tensorNames: [String]? = nil) -> [UInt8] {
        let chosen = (tensorNames ?? names).sorted { (tensors[$0]!.dtype.bitWidth, $1) > (tensors[$1]!.dtype.bitWidth, $0) }
        let plan = SafetensorsLayoutPlan(
            tensors: chosen.map { PlannedTensor(name: $0, dtype: tensors[$0]!.dtype, shape: tensors[$0]!.shape) }, metadata: metadata)
        var bytes = plan.headerBytes
        for n in chosen { bytes += tensors[n]!.bytes }
        return bytes
    }

    /// Writes one safetensors file.
    func writeFile(_ path: String) throws { try writeWholeFile(path, fileBytes()) }

    /// Writes a model folder: config files and `shards` safetensors files (with an index when more than one).
    /// Tensors are dealt to shards in order, so a module's parts may land in different shards.
    @discardableResult
    func writeFolder(_ folder: String, shards: Int = 1) throws -> [String] {
        _ = mkdir(folder, 0o755)
        if let config { try writeWholeFile(folder + "/config.json", Array(config.serialized(.pretty).utf8)) }
        if let hfQuantConfig { try writeWholeFile(folder + "/hf_quant_config.json", Array(hfQuantConfig.serialized(.pretty).utf8)) }
        guard shards > 1 else {
            try writeFile(folder + "/model.safetensors")
            return ["model.safetensors"]
        }
        var files: [String] = []
        var map: [(key: String, value: JSONValue)] = []
        let perShard = (names.count + shards - 1) / shards
        for i in 0..<shards {
            let chunk = Array(names[min(names.count, i * perShard)..<min(names.count, (i + 1) * perShard)])
            let file = "model-\(pad5(i + 1))-of-\(pad5(shards)).safetensors"
            try writeWholeFile(folder + "/" + file, fileBytes(chunk))
            files.append(file)
            for n in chunk { map.append((n, .string(file))) }
        }
        let total = names.reduce(0) { $0 + tensors[$1]!.bytes.count }
        let index: JSONValue = .object([("metadata", .object([("total_size", .int(total))])), ("weight_map", .object(map))])
        try writeWholeFile(folder + "/model.safetensors.index.json", Array(index.serialized(.pretty).utf8))
        return files
    }

    private func pad5(_ n: Int) -> String { String(repeating: "0", count: 5 - String(n).count) + String(n) }
}

func f32Bytes(_ value: Float) -> [UInt8] { withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) } }

func writeWholeFile(_ path: String, _ bytes: [UInt8]) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw SystemError(call: "open", path: path) }
    defer { close(fd) }
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
        guard n > 0 else { throw SystemError(call: "write", path: path) }
        offset += n
    }
}

func readWholeFile(_ path: String) throws -> [UInt8] {
    let file = try MappedFile(path: path)
    return Array(file.bytes)
}

extension JSONValue {
    /// A copy with the value at `path` (object keys) replaced, added, or removed when `value` is `nil`.
    func setting(_ path: [String], _ value: JSONValue?) -> JSONValue {
        guard let key = path.first else { return value ?? .null }
        var members = objectValue ?? []
        let index = members.firstIndex { $0.key == key }
        if path.count == 1 {
            if let value {
                if let index { members[index].value = value } else { members.append((key, value)) }
            } else if let index {
                members.remove(at: index)
            }
        } else {
            let child = (index.map { members[$0].value } ?? .object([])).setting(Array(path.dropFirst()), value)
            if let index { members[index].value = child } else { members.append((key, child)) }
        }
        return .object(members)
    }
}

/// A seeded generator (SplitMix64) with Box–Muller normals, so synthetic weights are the same every run.
struct SeededRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    mutating func uniform() -> Float { (Float(next() >> 40) + 0.5) / Float(1 << 24) }

    /// Standard normal.
    mutating func gaussian() -> Float {
        let u1 = uniform(), u2 = uniform()
        return (-2 * logf(u1)).squareRoot() * cosf(2 * Float.pi * u2)
    }
}
