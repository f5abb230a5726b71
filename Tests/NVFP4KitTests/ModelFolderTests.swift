import Glibc
import NVFP4Kit
import Testing

/// `nvfp4 quantize MODEL_DIR -o OUT_DIR`: folder layout, fused groups, selection, ignore lists.
@Suite("model folders")
struct ModelFolderTests {
    @Test("a sharded Llama folder becomes a complete compressed-tensors folder", arguments: [CheckpointFormat.compressedTensors, .modelopt, .torchao])
    func completeFolder(format: CheckpointFormat) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let (output, _) = try ModelFixtures.quantize(ModelFixtures.llama, format: format, into: scratch)
        let input = try listFolder(ModelFixtures.llama)
        var expected = Set(input + ["nvfp4-manifest.json"])
        if format == .modelopt { expected.insert("hf_quant_config.json") }
        #expect(Set(try listFolder(output)) == expected)
        #expect(try listFolder(scratch.path) == [format.rawValue], "no temporary folder left beside the output")
        // Copies are byte-identical.
        for name in ["generation_config.json", "tokenizer_config.json"] {
            #expect(try ModelFixtures.read("\(output)/\(name)") == ModelFixtures.read("\(ModelFixtures.llama)/\(name)"))
        }
        // The index lists every tensor in the shard that holds it, and total_size is the data bytes.
        let index = try ModelFixtures.json("\(output)/model.safetensors.index.json")
        let map = try #require(index["weight_map"]?.objectValue)
        let tensors = try ModelFixtures.tensors(in: output)
        #expect(map.count == tensors.count)
        for (name, shard) in map { #expect(tensors[name]?.shard == shard.stringValue, "\(name)") }
        #expect(map.map(\.key) == map.map(\.key).sorted())
        let total = tensors.values.reduce(0) { $0 + $1.bytes.count }
        #expect(index["metadata"]?["total_size"]?.unsignedValue == UInt64(total))
        // Shards keep the input's names and split: every shard holds the outputs of its input tensors.
        let inputTensors = try ModelFixtures.tensors(in: ModelFixtures.llama)
        for (name, stored) in inputTensors where !name.hasSuffix("proj.weight") {
            #expect(tensors[name]?.shard == stored.shard, "\(name) moved shard")
        }
        // config.json keeps its members and gains quantization_config.
        let config = try ModelFixtures.json("\(output)/config.json")
        let original = try ModelFixtures.json("\(ModelFixtures.llama)/config.json")
        for (key, value) in original.objectValue! where key != "quantization_config" { #expect(config[key] == value, "\(key)") }
        #expect(config["quantization_config"]?["quant_method"]?.stringValue == ["torchao": "torchao", "compressed-tensors": "compressed-tensors", "modelopt": "modelopt"][format.rawValue])
    }

    @Test("fused q/k/v and gate/up share bit-identical global scales across shards (engine layouts)")
    func fusedGroupsShareScales() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let inputs = try ModelFixtures.tensors(in: ModelFixtures.llama)
        let ct = try ModelFixtures.tensors(in: try ModelFixtures.quantize(ModelFixtures.llama, format: .compressedTensors, into: scratch).output)
        let mo = try ModelFixtures.tensors(in: try ModelFixtures.quantize(ModelFixtures.llama, format: .modelopt, into: scratch).output)
        let torchao = try ModelFixtures.tensors(in: try ModelFixtures.quantize(ModelFixtures.llama, format: .torchao, into: scratch).output)
        for layer in 0..<2 {
            for group in [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["mlp.gate_proj", "mlp.up_proj"]] {
                let modules = group.map { "model.layers.\(layer).\($0)" }
                #expect(Set(modules.map { inputs["\($0).weight"]!.shard }).count > 1, "the fixture splits the group across shards")
                let amaxes = modules.map { ModelFixtures.bf16Amax(inputs["\($0).weight"]!.bytes) }
                #expect(Set(amaxes).count > 1, "members have different amax, so sharing matters")
                let shared = try TensorScale(amax: amaxes.max()!, mode: .twoLevel, numerics: .cuda, tensor: "").perTensorScale!
                for m in modules {
                    #expect(ModelFixtures.float(mo["\(m).weight_scale_2"]!.bytes).bitPattern == shared.bitPattern, "\(m)")
                    #expect(ModelFixtures.float(ct["\(m).weight_global_scale"]!.bytes).bitPattern == (1 / shared).bitPattern, "\(m)")
                }
                // torchao has no fused layers: each weight keeps its own scale.
                let own = modules.map { ModelFixtures.float(torchao["\($0)._weight_per_tensor_scale"]!.bytes) }
                for (m, (scale, amax)) in zip(modules, zip(own, amaxes)) {
                    #expect(scale == (try TensorScale(amax: amax, mode: .twoLevel, numerics: .cuda, tensor: m).perTensorScale!))
                }
            }
        }
    }

    @Test("block scales of a fused member are computed against the shared scale")
    func memberBlockScalesUseSharedScale() throws {
        // Quantizing k_proj alone with the group's amax gives exactly the folder's bytes.
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let inputs = try ModelFixtures.tensors(in: ModelFixtures.llama)
        let mo = try ModelFixtures.tensors(in: try ModelFixtures.quantize(ModelFixtures.llama, format: .modelopt, into: scratch).output)
        let m = "model.layers.0.self_attn.k_proj"
        let amax = ["q_proj", "k_proj", "v_proj"].map { ModelFixtures.bf16Amax(inputs["model.layers.0.self_attn.\($0).weight"]!.bytes) }.max()!
        let source = inputs["\(m).weight"]!
        let codec = NVFP4Codec(scale: try TensorScale(amax: amax, mode: .twoLevel, numerics: .cuda, tensor: m), numerics: .cuda)
        let rows = source.shape[0], columns = source.shape[1]
        var packed = [UInt8](repeating: 0, count: rows * columns / 2)
        var scales = [UInt8](repeating: 0, count: rows * columns / 16)
        var error = QuantizationError()
        source.bytes.withUnsafeBytes { bytes in
            let matrix = DenseMatrix(bytes: bytes, dtype: .bf16, rows: rows, columns: columns)
            packed.withUnsafeMutableBytes { p in
                scales.withUnsafeMutableBytes { s in codec.quantize(matrix, rows: 0..<rows, packed: p, scales: s, layout: .rowMajor, error: &error) }
            }
        }
        #expect(mo["\(m).weight"]!.bytes == packed)
        #expect(mo["\(m).weight_scale"]!.bytes == scales)
    }

    @Test("MoE: routers stay, each expert's gate/up (w1/w3) share a scale, ignore lists what stayed",
          arguments: [ModelFixtures.qwenMoE, ModelFixtures.mixtral])
    func moe(folder: String) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let (output, plan) = try ModelFixtures.quantize(folder, format: .modelopt, into: scratch)
        let tensors = try ModelFixtures.tensors(in: output)
        let mixtral = folder == ModelFixtures.mixtral
        let router = mixtral ? "model.layers.0.block_sparse_moe.gate" : "model.layers.0.mlp.gate"
        #expect(tensors["\(router).weight"]?.dtype == .bf16)
        #expect(tensors["\(router).weight_scale"] == nil)
        let experts = mixtral ? 2 : 4
        for e in 0..<experts {
            let pair = mixtral
                ? ["w1", "w3"].map { "model.layers.0.block_sparse_moe.experts.\(e).\($0)" }
                : ["gate_proj", "up_proj"].map { "model.layers.0.mlp.experts.\(e).\($0)" }
            let scales = pair.map { tensors["\($0).weight_scale_2"]!.bytes }
            #expect(scales[0] == scales[1], "expert \(e)")
            #expect(tensors["\(pair[0]).weight"]!.shard != tensors["\(pair[1]).weight"]!.shard)
        }
        // Experts' scales are per expert, not shared across experts.
        let firsts = Set((0..<experts).map { e in
            tensors[mixtral ? "model.layers.0.block_sparse_moe.experts.\(e).w1.weight_scale_2" : "model.layers.0.mlp.experts.\(e).gate_proj.weight_scale_2"]!.bytes
        })
        #expect(firsts.count == experts)
        // hf_quant_config's exclude list is exactly the kept 2-D modules plus lm_head.
        let hf = try ModelFixtures.json("\(output)/hf_quant_config.json")
        let excluded = Set(hf["quantization"]?["exclude_modules"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        var kept = Set(["lm_head", "model.embed_tokens", router])
        if !mixtral { kept.insert("model.layers.0.mlp.shared_expert_gate") }
        #expect(excluded == kept)
        #expect(plan.fusion.source == (mixtral ? "MixtralForCausalLM" : "Qwen2MoeForCausalLM"))
    }

    @Test("a fused group is quantized or kept as a whole")
    func wholeGroups() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let (output, _) = try ModelFixtures.quantize(ModelFixtures.llama, format: .compressedTensors, into: scratch, exclude: ["model.layers.0.self_attn.k_proj"])
        let tensors = try ModelFixtures.tensors(in: output)
        for leaf in ["q_proj", "k_proj", "v_proj"] {
            #expect(tensors["model.layers.0.self_attn.\(leaf).weight"]?.dtype == .bf16, "\(leaf) kept with its partner")
            #expect(tensors["model.layers.1.self_attn.\(leaf).weight_packed"] != nil, "layer 1 is unaffected")
        }
        let ignore = try ModelFixtures.json("\(output)/config.json")["quantization_config"]?["ignore"]?.arrayValue?.compactMap(\.stringValue)
        #expect(ignore == ["lm_head", "model.embed_tokens"] + ["k_proj", "q_proj", "v_proj"].map { "model.layers.0.self_attn.\($0)" })
    }

    @Test("calibration writes shared input scales; a missing module is an error")
    func calibration() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let plan0 = try QuantizePlan(folder: try ModelFolder(path: ModelFixtures.llama), options: QuantizeOptions(), calibration: nil)
        var amax: [String: Float] = [:]
        for (i, m) in plan0.quantizedModules.enumerated() { amax[m] = 1 + Float(i) * 0.25 }
        let ct = try ModelFixtures.tensors(in: try ModelFixtures.quantize(ModelFixtures.llama, format: .compressedTensors, into: scratch, calibration: amax).output)
        let mo = try ModelFixtures.tensors(in: try ModelFixtures.quantize(ModelFixtures.llama, format: .modelopt, into: scratch, calibration: amax).output)
        let ao = try ModelFixtures.tensors(in: try ModelFixtures.quantize(ModelFixtures.llama, format: .torchao, into: scratch, calibration: amax).output)
        let qkv = ["q_proj", "k_proj", "v_proj"].map { "model.layers.0.self_attn.\($0)" }
        let shared = qkv.map { amax[$0]! }.max()!
        let expected = shared * NVFP4Codec.perTensorReciprocal
        for m in qkv {
            #expect(ModelFixtures.float(mo["\(m).input_scale"]!.bytes) == expected)
            #expect(ModelFixtures.float(ct["\(m).input_global_scale"]!.bytes) == 1 / expected)
            #expect(ModelFixtures.float(ao["\(m)._weight_act_per_tensor_scale"]!.bytes) == expected)
        }
        let o = "model.layers.0.self_attn.o_proj"
        #expect(ModelFixtures.float(mo["\(o).input_scale"]!.bytes) == amax[o]! * NVFP4Codec.perTensorReciprocal)
        let config = try ModelFixtures.json(scratch.file("compressed-tensors") + "/config.json")
        #expect(config["quantization_config"]?["config_groups"]?["group_0"]?["input_activations"]?["dynamic"]?.stringValue == "local")
        #expect(try ModelFixtures.json(scratch.file("modelopt") + "/hf_quant_config.json")["quantization"]?["quant_algo"]?.stringValue == "NVFP4")

        var partial = amax
        partial["model.layers.1.mlp.down_proj"] = nil
        #expect(throws: FileError.self) {
            _ = try ModelFixtures.quantize(ModelFixtures.llama, format: .modelopt, into: scratch, name: "partial", calibration: partial)
        }
        #expect(!fileExistsAt(scratch.file("partial")))
    }

    @Test("hostile index entries are rejected before anything is read or written",
          arguments: ["../model-00001-of-00003.safetensors", "/etc/passwd.safetensors", "sub/x.safetensors", "..", "", ".hidden.safetensors"])
    func hostileIndex(entry: String) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let input = scratch.file("in")
        mkdir(input, 0o755)
        for name in try listFolder(ModelFixtures.llama) where name != "model.safetensors.index.json" {
            _ = system("cp '\(ModelFixtures.llama)/\(name)' '\(input)/\(name)'")   // a copy: symlinks out of the folder are refused
        }
        let index = try ModelFixtures.json("\(ModelFixtures.llama)/model.safetensors.index.json")
        var map = index["weight_map"]!.objectValue!
        map[0].value = .string(entry)
        let text = JSONValue.object([("metadata", index["metadata"]!), ("weight_map", .object(map))]).serialized(.pretty)
        let sink = try sealedTextFile(text, to: "\(input)/model.safetensors.index.json", replace: false)
        try sink.publish()
        #expect(throws: ModelFolderError.self) { _ = try ModelFolder(path: input) }
    }

    @Test("a Hugging Face cache snapshot (symlinks into blobs/) works and the output holds real files")
    func cacheSnapshot() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let blobs = scratch.file("blobs"), snapshot = scratch.file("snapshots/rev")
        mkdir(blobs, 0o755)
        mkdir(scratch.file("snapshots"), 0o755)
        mkdir(snapshot, 0o755)
        for (i, name) in try listFolder(ModelFixtures.llama).enumerated() {
            let blob = "\(blobs)/blob\(i)"
            let sink = try AtomicFileSink(path: blob, replace: false)
            try sink.write(try ModelFixtures.read("\(ModelFixtures.llama)/\(name)"))
            _ = try sink.commit()
            symlink("../../blobs/blob\(i)", "\(snapshot)/\(name)")
        }
        let direct = try ModelFixtures.quantize(ModelFixtures.llama, format: .compressedTensors, into: scratch, name: "direct").output
        let cached = try ModelFixtures.quantize(snapshot, format: .compressedTensors, into: scratch, name: "cached").output
        for name in try listFolder(cached) {
            var st = stat()
            lstat("\(cached)/\(name)", &st)
            #expect((st.st_mode & S_IFMT) == S_IFREG, "\(name) is a real file")
            if name != "nvfp4-manifest.json" {
                #expect(try ModelFixtures.read("\(cached)/\(name)") == ModelFixtures.read("\(direct)/\(name)"), "\(name)")
            }
        }
    }

    @Test("a failure leaves no output folder and no temporary folder")
    func failureLeavesNothing() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let input = scratch.file("in")
        mkdir(input, 0o755)
        for name in try listFolder(ModelFixtures.llama) where name != "model-00003-of-00003.safetensors" {
            _ = system("cp '\(ModelFixtures.llama)/\(name)' '\(input)/\(name)'")   // a copy: symlinks out of the folder are refused
        }
        // The last shard's o_proj gets a NaN: the failure comes after two shards were written.
        var bytes = try ModelFixtures.read("\(ModelFixtures.llama)/model-00003-of-00003.safetensors")
        let reader = try SafetensorsReader(path: "\(ModelFixtures.llama)/model-00003-of-00003.safetensors")
        let o = reader.header.tensor(named: "model.layers.1.self_attn.o_proj.weight")!
        let at = reader.dataStart + Int(o.dataOffsets.lowerBound)
        bytes[at] = 0xC0
        bytes[at + 1] = 0x7F
        let sink = try AtomicFileSink(path: "\(input)/model-00003-of-00003.safetensors", replace: false)
        try sink.write(bytes)
        _ = try sink.commit()
        let output = scratch.file("out")
        #expect(throws: FileError.self) { _ = try ModelFixtures.quantize(input, format: .modelopt, into: scratch, name: "out") }
        #expect(!fileExistsAt(output))
        #expect(try listFolder(scratch.path) == ["in"])
    }

    @Test("torchao folders describe the whole model in every shard (transformers merges shard metadata)")
    func torchaoShardMetadata() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let output = try ModelFixtures.quantize(ModelFixtures.qwenMoE, format: .torchao, into: scratch).output
        let inputNames = try ModelFixtures.tensors(in: ModelFixtures.qwenMoE).keys.sorted()
        var first: [(key: String, value: String)]?
        for shard in try listFolder(output) where shard.hasSuffix(".safetensors") {
            let metadata = try SafetensorsReader(path: "\(output)/\(shard)").header.metadata
            let names = try JSONParser.parse(metadata.first { $0.key == "tensor_names" }!.value).arrayValue!.compactMap(\.stringValue)
            #expect(names.sorted() == inputNames)
            for name in inputNames { #expect(metadata.contains { $0.key == name }, "\(shard) describes \(name)") }
            let described = metadata.filter { $0.key != "format" }
            if let first { #expect(described.map(\.key) == first.map(\.key) && described.map(\.value) == first.map(\.value)) } else { first = described }
        }
    }

    @Test("an all-zero member of a fused group takes the group's scale (engine layouts)")
    func zeroMember() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let input = scratch.file("in")
        mkdir(input, 0o755)
        for name in try listFolder(ModelFixtures.llama) where name != "model-00002-of-00003.safetensors" {
            _ = system("cp '\(ModelFixtures.llama)/\(name)' '\(input)/\(name)'")   // a copy: symlinks out of the folder are refused
        }
        // Shard 2 holds k_proj: zero it.
        var bytes = try ModelFixtures.read("\(ModelFixtures.llama)/model-00002-of-00003.safetensors")
        let reader = try SafetensorsReader(path: "\(ModelFixtures.llama)/model-00002-of-00003.safetensors")
        let k = reader.header.tensor(named: "model.layers.0.self_attn.k_proj.weight")!
        for i in (reader.dataStart + Int(k.dataOffsets.lowerBound))..<(reader.dataStart + Int(k.dataOffsets.upperBound)) { bytes[i] = 0 }
        let sink = try AtomicFileSink(path: "\(input)/model-00002-of-00003.safetensors", replace: false)
        try sink.write(bytes)
        _ = try sink.commit()
        let out = try ModelFixtures.tensors(in: try ModelFixtures.quantize(input, format: .modelopt, into: scratch).output)
        let m = "model.layers.0.self_attn"
        #expect(out["\(m).k_proj.weight_scale_2"]?.bytes == out["\(m).q_proj.weight_scale_2"]?.bytes)
        #expect(out["\(m).k_proj.weight"]?.bytes.allSatisfy { $0 == 0 } == true)
        // torchao has no shared scale, so the zero weight is an error there, as for single files.
        #expect(throws: FileError.self) { _ = try ModelFixtures.quantize(input, format: .torchao, into: scratch) }
    }

    @Test("--tensor-parallel keeps row-parallel layers whose K/TP is not a multiple of 16")
    func tensorParallel() throws {
        var options = QuantizeOptions()
        options.format = .modelopt
        // Llama fixture: o_proj K = 32, down_proj K = 64. TP 4 → 8 and 16.
        let plan = try QuantizePlan(folder: try ModelFolder(path: ModelFixtures.llama), options: options, calibration: nil, tensorParallel: 4)
        #expect(plan.keptModules.contains("model.layers.0.self_attn.o_proj"))
        #expect(plan.quantizedModules.contains("model.layers.0.mlp.down_proj"))
        #expect(plan.quantizedModules.contains("model.layers.0.self_attn.q_proj"), "column-parallel layers are unaffected")
        #expect(plan.quantizationConfig.ignore.contains("model.layers.1.self_attn.o_proj"))
    }

    @Test("an already quantized folder is refused (its config would be overwritten)")
    func alreadyQuantized() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let once = try ModelFixtures.quantize(ModelFixtures.llama, format: .compressedTensors, into: scratch).output
        #expect(throws: ModelFolderError.self) { _ = try ModelFixtures.quantize(once, format: .modelopt, into: scratch, name: "twice") }
        #expect(!fileExistsAt(scratch.file("twice")))
    }

    @Test("an ignore entry is never a substring of a quantized module (vLLM matches ModelOpt excludes by substring)")
    func ignoreSubstrings() {
        let quantized = ["model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj", "model.layers.0.mlp.gate_up_proj"]
        let entries = IgnoreList.entries(kept: ["model.layers.0.mlp.gate", "model.embed_tokens"], quantized: quantized, format: .modelopt)
        #expect(entries == ["lm_head", "model.embed_tokens", "model.layers.0.mlp.gat[e]"])
        for entry in entries {
            for q in quantized { #expect(!IgnoreList.vllmModelOptExcludes(entry, module: q), "\(entry) would exclude \(q)") }
        }
        #expect(IgnoreList.vllmModelOptExcludes("model.layers.0.mlp.gat[e]", module: "model.layers.0.mlp.gate"))
        // compressed-tensors matches exact names, so entries stay plain.
        #expect(IgnoreList.entries(kept: ["model.layers.0.mlp.gate"], quantized: quantized, format: .compressedTensors)
            == ["lm_head", "model.layers.0.mlp.gate"])
    }

    @Test("fused groups come from the architecture, with a fallback by name")
    func fusionRules() {
        let llama = FusedGroups(config: try? JSONParser.parse(#"{"architectures":["LlamaForCausalLM"]}"#))
        #expect(llama.rules == [.qkv, .gateUp])
        let unknown = FusedGroups(config: try? JSONParser.parse(#"{"architectures":["NewThingForCausalLM"]}"#))
        #expect(unknown.rules == FusionRule.all)
        let deepseek = FusedGroups(config: try? JSONParser.parse(#"{"architectures":["DeepseekV3ForCausalLM"]}"#))
        let groups = deepseek.groups(in: [
            "model.layers.0.self_attn.q_a_proj.weight", "model.layers.0.self_attn.kv_a_proj_with_mqa.weight",
            "model.layers.0.self_attn.q_b_proj.weight", "model.layers.3.mlp.experts.7.gate_proj.weight",
            "model.layers.3.mlp.experts.7.up_proj.weight", "model.layers.3.mlp.experts.7.down_proj.weight",
        ])
        #expect(groups.map(\.weights) == [
            ["model.layers.0.self_attn.q_a_proj.weight", "model.layers.0.self_attn.kv_a_proj_with_mqa.weight"],
            ["model.layers.3.mlp.experts.7.gate_proj.weight", "model.layers.3.mlp.experts.7.up_proj.weight"],
        ])
    }
}

func fileExistsAt(_ path: String) -> Bool { access(path, F_OK) == 0 }
