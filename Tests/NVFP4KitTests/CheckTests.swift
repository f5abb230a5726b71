import Glibc
import NVFP4Kit
import Testing

/// `nvfp4 check` and the layout readers: one test per rule proving it fires on a checkpoint broken
/// in exactly that way, and clean checkpoints in every layout proving it stays quiet.
@Suite("check")
struct CheckTests {
    static let q0 = "model.layers.0.self_attn.q_proj"
    static let k0 = "model.layers.0.self_attn.k_proj"
    static let v0 = "model.layers.0.self_attn.v_proj"
    static let o1 = "model.layers.1.self_attn.o_proj"
    static let gate0 = "model.layers.0.mlp.gate_proj"
    static let up0 = "model.layers.0.mlp.up_proj"

    /// Writes `fixture` as a folder, audits it, and returns the findings.
    func audit(_ fixture: LayoutFixture, shards: Int = 1, file: Bool = false) throws -> [CheckFinding] {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let path: String
        if file {
            path = scratch.file("model.safetensors")
            try fixture.writeFile(path)
        } else {
            path = scratch.file("model")
            try fixture.writeFolder(path, shards: shards)
        }
        return try CheckpointAudit(source: CheckpointSource(path: path)).findings
    }

    func rules(_ findings: [CheckFinding]) -> Set<CheckRule> { Set(findings.map(\.rule)) }

    /// Expects `rule` to fire, on `subject` when given, and nothing else.
    func expectOnly(_ rule: CheckRule, _ findings: [CheckFinding], subject: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(rules(findings) == [rule], "\(findings.map(\.description))", sourceLocation: sourceLocation)
        if let subject {
            #expect(findings.contains { $0.subject.contains(subject) }, "\(findings.map(\.description))", sourceLocation: sourceLocation)
        }
    }

    @Test("every rule is documented in docs/check.md")
    func rulesDocumented() throws {
        let doc = String(decoding: try readWholeFile(FixturePaths.root + "/docs/check.md"), as: UTF8.self)
        for rule in CheckRule.allCases {
            #expect(doc.contains("| `\(rule.rawValue)` |"), "docs/check.md has no row for \(rule.rawValue)")
        }
    }

    @Test("fused groups: q/k/v, gate/up per expert, Mixtral w1/w3, DeepSeek q_a/kv_a; lone members form no group")
    func fusedGroupPatterns() {
        let names = [
            "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.v_proj",
            "model.layers.0.self_attn.o_proj",
            "model.layers.1.self_attn.q_a_proj", "model.layers.1.self_attn.kv_a_proj_with_mqa", "model.layers.1.self_attn.q_b_proj",
            "model.layers.1.mlp.experts.0.gate_proj", "model.layers.1.mlp.experts.0.up_proj", "model.layers.1.mlp.experts.0.down_proj",
            "model.layers.1.mlp.experts.1.up_proj", "model.layers.1.mlp.experts.1.gate_proj",
            "model.layers.2.block_sparse_moe.experts.3.w3", "model.layers.2.block_sparse_moe.experts.3.w1", "model.layers.2.block_sparse_moe.experts.3.w2",
            "model.layers.3.self_attn.q_proj",  // DeepSeek-V2-Lite style: q_proj without k/v
            "model.layers.3.self_attn.kv_a_proj_with_mqa",
        ]
        let groups = FusedModulePatterns.groups(in: names)
        #expect(groups.map(\.displayName) == [
            "model.layers.0.self_attn.{q_proj,k_proj,v_proj}",
            "model.layers.1.self_attn.{q_a_proj,kv_a_proj_with_mqa}",
            "model.layers.1.mlp.experts.0.{gate_proj,up_proj}",
            "model.layers.1.mlp.experts.1.{gate_proj,up_proj}",
            "model.layers.2.block_sparse_moe.experts.3.{w1,w3}",
        ])
    }

    @Test("a shard with a hostile header makes the whole folder an input error naming that shard")
    func hostileShard() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let folder = scratch.file("m")
        let files = try LayoutFixture.tinyLlama(.compressedTensors).writeFolder(folder, shards: 2)
        var bytes = try readWholeFile(folder + "/" + files[1])
        bytes[0] = 0xFF  // header length far past the end of the file
        try writeWholeFile(folder + "/" + files[1], bytes)
        #expect(throws: FileError.self) { try CheckpointSource(path: folder) }
        let result = try ToolRunner.run(["check", folder])
        #expect(result.status == 2 && result.stderrLines.count == 1 && result.stderr.contains(files[1]), "\(result)")
    }

    // MARK: Clean checkpoints

    @Test("clean checkpoints give no findings", arguments: [
        (CheckpointLayout.compressedTensors, true), (.compressedTensors, false), (.modelopt, true), (.modelopt, false), (.torchao, false),
    ])
    func clean(_ layout: CheckpointLayout, _ w4a4: Bool) throws {
        let fixture = try LayoutFixture.tinyLlama(layout, w4a4: w4a4)
        for shards in [1, 3] {
            let findings = try audit(fixture, shards: shards)
            #expect(findings.isEmpty, "\(layout) w4a4=\(w4a4) shards=\(shards): \(findings.map(\.description))")
        }
        let single = try audit(fixture, file: true)
        #expect(single.isEmpty, "\(single.map(\.description))")
    }

    @Test("the reader groups every layout into the same modules, shapes and global scales")
    func uniformModel() throws {
        var scales: [CheckpointLayout: [String: Float]] = [:]
        for layout in [CheckpointLayout.compressedTensors, .modelopt, .torchao] {
            let scratch = ScratchFolder()
            defer { scratch.remove() }
            try LayoutFixture.tinyLlama(layout).writeFolder(scratch.file("m"), shards: 2)
            let source = try CheckpointSource(path: scratch.file("m"))
            let model = CheckpointModel(source: source)
            #expect(model.layout == layout)
            #expect(model.modules.count == 14)
            #expect(Set(model.kept.map(\.name)) == ["lm_head", "model.embed_tokens"])
            let q = try #require(model.module(named: Self.q0))
            #expect((q.rows, q.columns) == (128, 128))
            let down = try #require(model.module(named: "model.layers.1.mlp.down_proj"))
            #expect((down.rows, down.columns) == (128, 352))
            scales[layout] = Dictionary(uniqueKeysWithValues: model.modules.map { ($0.name, $0.weightScale(in: source)!) })
            #expect(model.fusedGroups.count == 4)
        }
        // amax/2688 whatever the stored convention (compressed-tensors stores the reciprocal).
        for (name, value) in scales[.modelopt]! {
            #expect(value == scales[.torchao]![name])
            #expect((value - scales[.compressedTensors]![name]!).magnitude <= value * 1e-6)
        }
    }

    @Test("block scales read the same row-major view from torchao's swizzled tiles and from a row-major copy")
    func swizzledAndRowMajorAgree() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let torchao = try CheckpointSource(path: FixturePaths.torchaoExpected("bf16", .twoLevel, .cuda))
        let model = CheckpointModel(source: torchao)
        #expect(model.layout == .torchao && model.modules.count == 20)
        // Convert the committed torchao output to compressed-tensors: unswizzle, invert the global scale.
        var converted = LayoutFixture(layout: .compressedTensors)
        for m in model.modules {
            let blocks = m.columns / 16
            let rowMajor = try torchao.withBytes(of: m.blockScales!) { stored in
                (0..<m.rows).flatMap { r in (0..<blocks).map { b in m.blockScaleCode(stored, row: r, block: b) } }
            }
            converted.set(m.name + ".weight_packed", .init(dtype: .u8, shape: m.packed.info.shape, bytes: try torchao.withBytes(of: m.packed) { Array($0) }))
            converted.set(m.name + ".weight_scale", .init(dtype: .f8E4M3, shape: [m.rows, blocks], bytes: rowMajor))
            converted.set(m.name + ".weight_global_scale", .init(dtype: .f32, shape: [1], bytes: f32Bytes(1 / m.weightScale(in: torchao)!)))
        }
        try converted.writeFile(scratch.file("ct.safetensors"))
        let ct = try CheckpointSource(path: scratch.file("ct.safetensors"))
        let ctModel = CheckpointModel(source: ct)
        #expect(ctModel.layout == .compressedTensors && ctModel.modules.count == 20)
        for (a, b) in zip(model.modules, ctModel.modules) {
            #expect(a.name == b.name && a.rows == b.rows && a.columns == b.columns)
            #expect(b.scaleLayout == .rowMajor && a.scaleLayout == .swizzled)
            let viewA = try torchao.withBytes(of: a.blockScales!) { s in (0..<a.rows).flatMap { r in (0..<(a.columns / 16)).map { a.blockScaleCode(s, row: r, block: $0) } } }
            let viewB = try ct.withBytes(of: b.blockScales!) { s in (0..<b.rows).flatMap { r in (0..<(b.columns / 16)).map { b.blockScaleCode(s, row: r, block: $0) } } }
            #expect(viewA == viewB, "\(a.name)")
        }
        // The fixture's near_max case (amax ≈ 3.4e38, a deliberately degenerate input) is the only
        // finding: no real weight has such an amax, and in compressed-tensors' reciprocal convention it
        // is what a value written as amax/2688 looks like.
        let findings = try CheckpointAudit(source: ct).findings
        #expect(findings.map(\.rule) == [.globalScaleImplausible] && findings[0].subject == "near_max.weight_global_scale", "\(findings.map(\.description))")
        // The committed torchao output itself is clean too.
        #expect(try CheckpointAudit(source: torchao).findings.isEmpty)
    }

    @Test("an unquantized model folder is not an NVFP4 checkpoint: one finding, exit 1, one line")
    func unquantizedClean() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let folder = scratch.file("m")
        _ = mkdir(folder, 0o755)
        try writeWholeFile(folder + "/config.json", try readWholeFile(FixturePaths.root + "/Fixtures/tiny-llama/config.json"))
        try writeWholeFile(folder + "/model.safetensors", try readWholeFile(FixturePaths.tinyLlama))
        let audit = try CheckpointAudit(source: CheckpointSource(path: folder))
        #expect(audit.model.layout == .unquantized)
        expectOnly(.noNVFP4Weights, audit.findings)
        for path in [folder, folder + "/model.safetensors"] {
            let cli = try ToolRunner.run(["check", path])
            #expect(cli.status == 1 && cli.stdoutText.split(separator: "\n").count == 1 && cli.stdoutText.contains("no NVFP4 weights"), "\(cli)")
        }
    }

    // MARK: Real llm-compressor output (Fixtures/llm-compressor, scripts/fixtures/make_llmcompressor_nvfp4.py)

    static func llmCompressor(_ name: String) -> String { FixturePaths.root + "/Fixtures/llm-compressor/" + name }

    @Test("llm-compressor's NVFP4 and NVFP4A16 output reads as 14 compressed-tensors modules and is clean", arguments: [("nvfp4", true), ("nvfp4a16", false)])
    func llmCompressorClean(_ name: String, _ w4a4: Bool) throws {
        let audit = try CheckpointAudit(source: CheckpointSource(path: Self.llmCompressor(name)))
        #expect(audit.model.layout == .compressedTensors)
        #expect(audit.model.modules.count == 14)
        #expect(audit.config.activationsQuantized == w4a4)
        #expect(audit.model.modules.filter { $0.inputScale != nil }.count == (w4a4 ? 14 : 0))
        #expect(audit.model.modules.allSatisfy { $0.globalScale?.info.shape == [1] && $0.blockScales?.info.dtype == .f8E4M3 })
        #expect(audit.findings.isEmpty, "\(audit.findings.map(\.description))")
    }

    @Test("llm-compressor with its fused-layer list emptied (its fused-scale regression) is caught")
    func llmCompressorUnfused() throws {
        let findings = try CheckpointAudit(source: CheckpointSource(path: Self.llmCompressor("nvfp4a16-unfused"))).findings
        expectOnly(.fusedGlobalScaleMismatch, findings)
        #expect(Set(findings.map(\.subject)) == [
            "model.layers.0.self_attn.{q_proj,k_proj,v_proj}", "model.layers.1.self_attn.{q_proj,k_proj,v_proj}",
            "model.layers.0.mlp.{gate_proj,up_proj}", "model.layers.1.mlp.{gate_proj,up_proj}",
        ])
    }

    @Test("llm-compressor's W4A4 output converted to ModelOpt (compressed-tensors' converter rules, reversed) is clean and reads the same scales")
    func llmCompressorAsModelOpt() throws {
        let ct = try CheckpointSource(path: Self.llmCompressor("nvfp4"))
        let ctModel = CheckpointModel(source: ct)
        var modelopt = try LayoutFixture.tinyLlama(.modelopt)
        for name in modelopt.names { modelopt.remove(name) }
        let moduleTensors = Set(ctModel.modules.flatMap { $0.tensors.map(\.name) })
        for t in ct.allTensors where !moduleTensors.contains(t.name) {
            modelopt.set(t.name, .init(dtype: t.info.dtype, shape: t.info.shape, bytes: try ct.withBytes(of: t) { Array($0) }))
        }
        for m in ctModel.modules {
            modelopt.set(m.name + ".weight", .init(dtype: .u8, shape: m.packed.info.shape, bytes: try ct.withBytes(of: m.packed) { Array($0) }))
            modelopt.set(m.name + ".weight_scale", .init(dtype: .f8E4M3, shape: m.blockScales!.info.shape, bytes: try ct.withBytes(of: m.blockScales!) { Array($0) }))
            modelopt.set(m.name + ".weight_scale_2", .init(dtype: .f32, shape: [], bytes: f32Bytes(1 / ct.scalar(m.globalScale!)!)))
            modelopt.set(m.name + ".input_scale", .init(dtype: .f32, shape: [], bytes: f32Bytes(1 / ct.scalar(m.inputScale!)!)))
        }
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        try modelopt.writeFolder(scratch.file("mo"))
        let mo = try CheckpointSource(path: scratch.file("mo"))
        let audit = try CheckpointAudit(source: mo)
        #expect(audit.model.layout == .modelopt && audit.model.modules.count == 14)
        #expect(audit.findings.isEmpty, "\(audit.findings.map(\.description))")
        for m in ctModel.modules {
            let other = try #require(audit.model.module(named: m.name))
            #expect(other.weightScale(in: mo) == 1 / ct.scalar(m.globalScale!)!)
            #expect((other.weightScale(in: mo)! - m.weightScale(in: ct)!).magnitude <= m.weightScale(in: ct)! * 1e-6)
        }
    }

    // MARK: Real ModelOpt output (Fixtures/modelopt, scripts/fixtures/make_modelopt_nvfp4.py)

    @Test("ModelOpt's NVFP4 export reads as 14 modules with 0-d scalars and is clean; a substring exclude added to it is caught")
    func modeloptExport() throws {
        let folder = FixturePaths.root + "/Fixtures/modelopt/nvfp4"
        let audit = try CheckpointAudit(source: CheckpointSource(path: folder))
        #expect(audit.model.layout == .modelopt && audit.model.modules.count == 14)
        #expect(audit.config.activationsQuantized == true && audit.config.quantAlgo == "NVFP4")
        #expect(audit.model.modules.allSatisfy { $0.globalScale?.info.shape == [] && $0.inputScale?.info.shape == [] })
        #expect(audit.findings.isEmpty, "\(audit.findings.map(\.description))")

        // The same export with a router-style exclude "mlp.gate", as written for MoE models.
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let copy = scratch.file("mo")
        _ = mkdir(copy, 0o755)
        for name in ["config.json", "model.safetensors"] { try writeWholeFile(copy + "/" + name, try readWholeFile(folder + "/" + name)) }
        let hf = try JSONParser.parse(try readWholeFile(folder + "/hf_quant_config.json"))
        let excludes: JSONValue = .array(["lm_head", "model.embed_tokens", "mlp.gate"])
        try writeWholeFile(copy + "/hf_quant_config.json", Array(hf.setting(["quantization", "exclude_modules"], excludes).serialized().utf8))
        let findings = try CheckpointAudit(source: CheckpointSource(path: copy)).findings
        // config.json still lists the old excludes: both the substring hazard and the disagreement show.
        #expect(rules(findings) == [.excludeSubstringMatch, .configDisagreement], "\(findings.map(\.description))")
        #expect(findings.filter { $0.rule == .excludeSubstringMatch }.map(\.subject).sorted() == [Self.gate0, "model.layers.1.mlp.gate_proj"])
    }

    // MARK: Fused groups

    @Test("fused members with different global scales (llm-compressor's regression)", arguments: [CheckpointLayout.compressedTensors, .modelopt])
    func fusedGlobalScales(_ layout: CheckpointLayout) throws {
        let findings = try audit(try LayoutFixture.tinyLlama(layout, sharedFusedScales: false))
        expectOnly(.fusedGlobalScaleMismatch, findings)
        // q/k/v and gate/up of both layers.
        #expect(findings.count == 4, "\(findings.map(\.description))")
        #expect(findings.contains { $0.subject == "model.layers.0.self_attn.{q_proj,k_proj,v_proj}" })
        #expect(findings.contains { $0.message.contains("× apart") })
    }

    @Test("fused members with different input scales")
    func fusedInputScales() throws {
        var f = try LayoutFixture.tinyLlama(.modelopt)
        f.setScalar(f.name(\.inputScale, Self.k0), 13 / 2688)
        expectOnly(.fusedInputScaleMismatch, try audit(f), subject: "model.layers.0.self_attn.{")
    }

    @Test("a fused group with one member left unquantized")
    func fusedPartiallyQuantized() throws {
        let f = try LayoutFixture.tinyLlama(.compressedTensors, keep: [Self.v0])
        expectOnly(.fusedPartiallyQuantized, try audit(f), subject: "self_attn.{q_proj,k_proj,v_proj}")
    }

    // MARK: Mixture of experts

    @Test("MoE checkpoints (Qwen and Mixtral naming) are clean with per-expert shared gate/up scales and a bf16 router",
          arguments: [CheckpointLayout.compressedTensors, .modelopt])
    func moeClean(_ layout: CheckpointLayout) throws {
        for style in [LayoutFixture.MoEStyle.qwen, .mixtral] {
            let f = try LayoutFixture.moe(layout, style: style)
            let findings = try audit(f)
            #expect(findings.isEmpty, "\(style): \(findings.map(\.description))")
        }
        // Without the router in the ignore list it is still not reported: engines build routers unquantized.
        var f = try LayoutFixture.moe(layout)
        f.config = f.config!.setting(["quantization_config", "ignore"], .array(["lm_head"]))
        f.hfQuantConfig = f.hfQuantConfig?.setting(["quantization", "exclude_modules"], .array(["lm_head"]))
        #expect(try audit(f).isEmpty)
    }

    @Test("an expert whose gate/up (w1/w3) global scales differ")
    func moeExpertMismatch() throws {
        for (style, subject) in [(LayoutFixture.MoEStyle.qwen, "model.layers.0.mlp.experts.2.{gate_proj,up_proj}"),
                                 (.mixtral, "model.layers.0.block_sparse_moe.experts.2.{w1,w3}")] {
            var f = try LayoutFixture.moe(.modelopt, style: style)
            let member = subject.filter { $0 != "{" }.split(separator: ",")[0]
            let name = String(member) + ".weight_scale_2"
            f.setScalar(name, f.scalar(name) * 2.14)
            let findings = try audit(f)
            expectOnly(.fusedGlobalScaleMismatch, findings, subject: subject)
            #expect(findings.count == 1 && findings[0].message.contains("2.14× apart"), "\(findings.map(\.description))")
        }
    }

    @Test("an expert without an input scale (an expert no calibration token reached, vLLM#45212)")
    func moeExpertInputScaleMissing() throws {
        var f = try LayoutFixture.moe(.compressedTensors)
        let expert = "model.layers.0.mlp.experts.3.down_proj"
        f.remove(expert + ".input_global_scale")
        expectOnly(.inputScaleMissing, try audit(f), subject: expert)
    }

    @Test("experts against moe_intermediate_size")
    func moeShapes() throws {
        var f = try LayoutFixture.moe(.modelopt)
        f.config = f.config!.setting(["moe_intermediate_size"], 48)
        let findings = try audit(f)
        expectOnly(.shapeConfigMismatch, findings)
        #expect(findings.count == 12, "gate, up and down of 4 experts: \(findings.map(\.description))")
    }

    // MARK: Block scales

    @Test("NaN, negative and zero block scales", arguments: [
        (UInt8(0x7F), CheckRule.blockScaleNaN), (0xFF, .blockScaleNaN), (0xB8, .blockScaleNegative), (0x80, .blockScaleNegative), (0x00, .blockScaleZero),
    ])
    func blockScaleCodes(_ code: UInt8, _ rule: CheckRule) throws {
        for layout in [CheckpointLayout.compressedTensors, .modelopt, .torchao] {
            var f = try LayoutFixture.tinyLlama(layout, w4a4: false)
            // Row 3, block 5 of o_proj in a row-major view; torchao stores it swizzled.
            let offset = (layout == .torchao ? ScaleLayout.swizzled : .rowMajor).offset(row: 3, block: 5, blocks: 8)
            f.setByte(f.name(\.blockScales, Self.o1), offset, code)
            let findings = try audit(f)
            expectOnly(rule, findings)
            #expect(findings.first?.message.contains("row 3, block 5") == true, "\(layout): \(findings.map(\.description))")
        }
    }

    @Test("a zero block scale over an all-zero block is harmless and not reported")
    func zeroScaleOverZeroBlock() throws {
        var f = try LayoutFixture.tinyLlama(.modelopt)
        let packed = f.name(\.packed, Self.o1)
        for j in 0..<8 { f.setByte(packed, 3 * 64 + 5 * 8 + j, j % 2 == 0 ? 0x00 : 0x88) }  // +0 and -0 codes
        f.setByte(f.name(\.blockScales, Self.o1), 3 * 8 + 5, 0)
        #expect(try audit(f).isEmpty)
    }

    // MARK: Global and input scales

    @Test("zero, negative, NaN and infinite global scales", arguments: [Float(0), -1, .nan, .infinity])
    func globalScaleInvalid(_ value: Float) throws {
        var f = try LayoutFixture.tinyLlama(.modelopt)
        // o_proj is in no fused group, so only the value rule fires.
        f.setScalar(f.name(\.globalScale, Self.o1), value)
        expectOnly(.globalScaleInvalid, try audit(f), subject: Self.o1)
    }

    @Test("a compressed-tensors global scale written as amax/2688 instead of 2688/amax")
    func globalScaleWrongConvention() throws {
        var f = try LayoutFixture.tinyLlama(.compressedTensors)
        let name = f.name(\.globalScale, Self.o1)
        f.setScalar(name, 1 / f.scalar(name))
        expectOnly(.globalScaleImplausible, try audit(f), subject: name)
    }

    @Test("a W4A4 config with a module lacking its input scale", arguments: [CheckpointLayout.compressedTensors, .modelopt])
    func inputScaleMissing(_ layout: CheckpointLayout) throws {
        var f = try LayoutFixture.tinyLlama(layout)
        f.remove(f.name(\.inputScale, Self.o1))
        expectOnly(.inputScaleMissing, try audit(f), subject: Self.o1)
    }

    @Test("without a config, input scales on some modules but not others")
    func inputScaleMissingNoConfig() throws {
        var f = try LayoutFixture.tinyLlama(.modelopt)
        f.remove(f.name(\.inputScale, Self.o1))
        expectOnly(.inputScaleMissing, try audit(f, file: true), subject: Self.o1)
    }

    @Test("a zero input scale")
    func inputScaleInvalid() throws {
        var f = try LayoutFixture.tinyLlama(.compressedTensors)
        f.setScalar(f.name(\.inputScale, Self.o1), 0)
        expectOnly(.inputScaleInvalid, try audit(f), subject: Self.o1)
    }

    @Test("input scales in a weight-only checkpoint")
    func inputScaleUnexpected() throws {
        var f = try LayoutFixture.tinyLlama(.compressedTensors)
        f.config = f.config!.setting(["quantization_config", "config_groups", "group_0", "input_activations"], .null)
        let findings = try audit(f)
        expectOnly(.inputScaleUnexpected, findings)
        #expect(findings.count == 14)
    }

    // MARK: Structure

    @Test("K not a multiple of 16")
    func kNotMultipleOf16() throws {
        var f = try LayoutFixture.tinyLlama(.compressedTensors, w4a4: false)
        let m = "model.layers.0.mlp.odd_proj"
        f.set(m + ".weight_packed", .init(dtype: .u8, shape: [16, 12], bytes: .init(repeating: 0x11, count: 192)))
        f.set(m + ".weight_scale", .init(dtype: .f8E4M3, shape: [16, 1], bytes: .init(repeating: 0x38, count: 16)))
        f.set(m + ".weight_global_scale", .init(dtype: .f32, shape: [1], bytes: f32Bytes(2688)))
        expectOnly(.kNotMultipleOf16, try audit(f), subject: m)
    }

    @Test("row-parallel K that tensor parallelism splits below 16-column multiples")
    func tensorParallelK() throws {
        // tiny-llama: o_proj K = 128, down_proj K = 352 = 16 × 22.
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let folder = scratch.file("m")
        try LayoutFixture.tinyLlama(.modelopt).writeFolder(folder)
        let source = try CheckpointSource(path: folder)
        #expect(try CheckpointAudit(source: source, tensorParallel: 2).findings.isEmpty)  // 176 = 16 × 11
        let tp4 = try CheckpointAudit(source: source, tensorParallel: 4).findings  // 352 / 4 = 88
        expectOnly(.kNotMultipleOf16, tp4)
        #expect(Set(tp4.map(\.subject)) == ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"])
        let cli = try ToolRunner.run(["check", folder, "--tp", "4", "--json"])
        let cliFindings = try JSONParser.parse(cli.stdout)["findings"]?.arrayValue
        #expect(cli.status == 1 && cliFindings?.count == 2, "\(cli)")
        let bad = try ToolRunner.run(["check", folder, "--tensor-parallel", "0"])
        #expect(bad.status == 2 && bad.stderr.contains("--tensor-parallel"), "\(bad)")
    }

    @Test("packed data that is not a 2-D U8 tensor")
    func badPackedTensor() throws {
        var f = try LayoutFixture.tinyLlama(.compressedTensors)
        let name = f.name(\.packed, Self.o1)
        let t = f.tensors[name]!
        f.set(name, .init(dtype: .i8, shape: t.shape, bytes: t.bytes))
        expectOnly(.badPackedTensor, try audit(f), subject: name)
    }

    @Test("block scales with the wrong dtype or shape")
    func badBlockScales() throws {
        var f = try LayoutFixture.tinyLlama(.modelopt)
        let name = f.name(\.blockScales, Self.o1)
        let t = f.tensors[name]!
        f.set(name, .init(dtype: .f8E4M3, shape: [t.shape[1], t.shape[0]], bytes: t.bytes))  // transposed
        expectOnly(.badBlockScales, try audit(f), subject: name)
        f.set(name, .init(dtype: .u8, shape: t.shape, bytes: t.bytes))
        expectOnly(.badBlockScales, try audit(f), subject: name)
    }

    @Test("missing block scales and missing global scale")
    func missingParts() throws {
        var f = try LayoutFixture.tinyLlama(.compressedTensors)
        f.remove(f.name(\.blockScales, Self.o1))
        expectOnly(.missingBlockScales, try audit(f), subject: Self.o1)
        var g = try LayoutFixture.tinyLlama(.modelopt)
        g.remove(g.name(\.globalScale, Self.o1))
        expectOnly(.missingGlobalScale, try audit(g), subject: Self.o1)
    }

    @Test("a global scale stored as bf16 or with two elements")
    func badScaleTensor() throws {
        var f = try LayoutFixture.tinyLlama(.modelopt)
        let name = f.name(\.globalScale, Self.o1)
        f.set(name, .init(dtype: .bf16, shape: [], bytes: [0x80, 0x3F]))
        expectOnly(.badScaleTensor, try audit(f), subject: name)
        f.set(name, .init(dtype: .f32, shape: [2], bytes: f32Bytes(1) + f32Bytes(1)))
        expectOnly(.badScaleTensor, try audit(f), subject: name)
    }

    @Test("a scale tensor without packed data")
    func orphanScale() throws {
        var f = try LayoutFixture.tinyLlama(.compressedTensors)
        f.set("model.layers.0.mlp.extra.weight_global_scale", .init(dtype: .f32, shape: [1], bytes: f32Bytes(100)))
        expectOnly(.orphanScale, try audit(f), subject: "model.layers.0.mlp.extra.weight_global_scale")
    }

    @Test("one module in another layout")
    func mixedLayouts() throws {
        var f = try LayoutFixture.tinyLlama(.compressedTensors, w4a4: false)
        f.rename(Self.o1 + ".weight_packed", to: Self.o1 + ".weight")
        f.rename(Self.o1 + ".weight_global_scale", to: Self.o1 + ".weight_scale_2")
        f.setScalar(Self.o1 + ".weight_scale_2", 1 / f.scalar(Self.o1 + ".weight_scale_2"))
        let findings = try audit(f, file: true)
        expectOnly(.mixedLayouts, findings)
        #expect(findings[0].message.contains(Self.o1))
    }

    // MARK: Config

    @Test("quantized tensors without a quantization_config, or without config.json")
    func configMissing() throws {
        var f = try LayoutFixture.tinyLlama(.compressedTensors)
        f.config = f.config!.setting(["quantization_config"], nil)
        expectOnly(.configMissing, try audit(f), subject: "quantization_config")
        f.config = nil
        expectOnly(.configMissing, try audit(f), subject: "config.json")
    }

    @Test("a config declaring another layout than the tensors")
    func configLayoutMismatch() throws {
        var f = try LayoutFixture.tinyLlama(.compressedTensors, w4a4: false)
        f.config = f.config!.setting(["quantization_config", "quant_method"], "modelopt").setting(["quantization_config", "quant_algo"], "W4A16_NVFP4")
        #expect(rules(try audit(f)).contains(.configLayoutMismatch))
    }

    static let configEdits: [([String], JSONValue)] = [
        (["quantization_config", "format"], "float-quantized"),
        (["quantization_config", "config_groups", "group_0", "format"], "pack-quantized"),
        (["quantization_config", "config_groups", "group_0", "weights", "group_size"], 32),
        (["quantization_config", "config_groups", "group_0", "weights", "strategy"], "group"),
        (["quantization_config", "config_groups", "group_0", "input_activations", "num_bits"], 8),
        (["quantization_config", "config_groups", "group_0", "targets"], "Linear"),
        (["quantization_config", "quantization_status"], "frozen"),
    ]

    @Test("a stale non-NVFP4 quantization_config left on an unquantized folder (seen on a GGUF-converted SmolLM2)")
    func staleQuantizationConfig() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let folder = scratch.file("m")
        _ = mkdir(folder, 0o755)
        let config = try JSONParser.parse(try readWholeFile(FixturePaths.root + "/Fixtures/tiny-llama/config.json"))
            .setting(["quantization_config"], .object([("quant_method", "gguf"), ("gguf_file", "model.Q4_1.gguf")]))
        try writeWholeFile(folder + "/config.json", Array(config.serialized().utf8))
        try writeWholeFile(folder + "/model.safetensors", try readWholeFile(FixturePaths.tinyLlama))
        let findings = try CheckpointAudit(source: CheckpointSource(path: folder)).findings
        #expect(rules(findings) == [.noNVFP4Weights, .configLayoutMismatch], "\(findings.map(\.description))")
        #expect(findings.contains { $0.rule == .configLayoutMismatch && $0.subject == "quantization_config.quant_method" && $0.message.contains("\"gguf\"") })
    }

    @Test("compressed-tensors config fields vLLM needs", arguments: configEdits)
    func compressedTensorsConfigInvalid(_ path: [String], _ value: JSONValue) throws {
        var f = try LayoutFixture.tinyLlama(.compressedTensors)
        f.config = f.config!.setting(path, value)
        let findings = try audit(f)
        expectOnly(.configInvalid, findings)
        #expect(findings.contains { $0.subject == path.joined(separator: ".") }, "\(findings.map(\.description))")
    }

    @Test("ModelOpt config fields vLLM and TensorRT-LLM need")
    func modeloptConfigInvalid() throws {
        var f = try LayoutFixture.tinyLlama(.modelopt)
        f.hfQuantConfig = f.hfQuantConfig!.setting(["quantization", "kv_cache_quant_algo"], nil)
        expectOnly(.configInvalid, try audit(f), subject: "quantization.kv_cache_quant_algo")
        var g = try LayoutFixture.tinyLlama(.modelopt)
        g.hfQuantConfig = g.hfQuantConfig!.setting(["quantization", "group_size"], 32)
        g.config = g.config!.setting(["quantization_config", "group_size"], 32)
        expectOnly(.configInvalid, try audit(g), subject: "group_size")
    }

    @Test("config.json and hf_quant_config.json disagree")
    func configDisagreement() throws {
        var f = try LayoutFixture.tinyLlama(.modelopt)
        f.config = f.config!.setting(["quantization_config", "ignore"], .array(["lm_head", "model.layers.0.mlp.router"]))
        expectOnly(.configDisagreement, try audit(f), subject: "quantization_config.ignore")
    }

    @Test("an ignore entry that matches a quantized module", arguments: [
        (CheckpointLayout.compressedTensors, "model.layers.1.self_attn.o_proj"), (.compressedTensors, "re:.*o_proj$"), (.modelopt, "*.o_proj"),
    ])
    func ignoredButQuantized(_ layout: CheckpointLayout, _ entry: String) throws {
        var f = try LayoutFixture.tinyLlama(layout)
        f.config = f.config!.setting(["quantization_config", "ignore"], .array(["lm_head", .string(entry)]))
        f.hfQuantConfig = f.hfQuantConfig?.setting(["quantization", "exclude_modules"], .array(["lm_head", .string(entry)]))
        let findings = try audit(f)
        expectOnly(.ignoredButQuantized, findings, subject: "o_proj")
    }

    @Test("a ModelOpt exclude entry that is a substring of quantized modules (mlp.gate vs mlp.gate_proj)")
    func excludeSubstring() throws {
        var f = try LayoutFixture.tinyLlama(.modelopt)
        f.config = f.config!.setting(["quantization_config", "ignore"], .array(["lm_head", "mlp.gate"]))
        f.hfQuantConfig = f.hfQuantConfig!.setting(["quantization", "exclude_modules"], .array(["lm_head", "mlp.gate"]))
        let findings = try audit(f)
        expectOnly(.excludeSubstringMatch, findings)
        #expect(Set(findings.map(\.subject)) == [Self.gate0, "model.layers.1.mlp.gate_proj"])
    }

    @Test("a kept Linear layer missing from the ignore list", arguments: [CheckpointLayout.compressedTensors, .modelopt])
    func keptNotIgnored(_ layout: CheckpointLayout) throws {
        let f = try LayoutFixture.tinyLlama(layout, keep: [Self.o1], listKept: false)
        expectOnly(.keptNotIgnored, try audit(f), subject: Self.o1)
        // Listed, it is fine.
        #expect(try audit(try LayoutFixture.tinyLlama(layout, keep: [Self.o1])).isEmpty)
    }

    @Test("compressed-tensors modules that no config group targets")
    func quantizedNotTargeted() throws {
        var f = try LayoutFixture.tinyLlama(.compressedTensors)
        f.config = f.config!.setting(["quantization_config", "config_groups", "group_0", "targets"], .array(["re:.*self_attn.*"]))
        let findings = try audit(f)
        expectOnly(.quantizedNotTargeted, findings)
        #expect(findings.count == 6 && findings.allSatisfy { $0.subject.contains(".mlp.") }, "\(findings.map(\.description))")

        // Kept modules that no group targets need no ignore entry.
        let downs: Set<String> = ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]
        var g = try LayoutFixture.tinyLlama(.compressedTensors, keep: downs, listKept: false)
        g.config = g.config!.setting(["quantization_config", "config_groups", "group_0", "targets"], .array(["re:.*self_attn.*", "re:.*mlp\\.(gate|up)_proj$"]))
        #expect(try audit(g).isEmpty)
    }

    @Test("shapes that disagree with config.json", arguments: [
        ("num_key_value_heads", 4, "k_proj"), ("intermediate_size", 384, "gate_proj"), ("hidden_size", 256, "q_proj"),
    ])
    func shapeConfigMismatch(_ key: String, _ value: Int, _ leafName: String) throws {
        var f = try LayoutFixture.tinyLlama(.compressedTensors)
        f.config = f.config!.setting([key], .int(value))
        let findings = try audit(f)
        expectOnly(.shapeConfigMismatch, findings)
        #expect(findings.contains { $0.subject.hasSuffix(leafName) })
    }

    // MARK: Shards and index

    @Test("index problems: wrong shard, missing tensor, unlisted tensor, duplicate, unreferenced file")
    func indexProblems() throws {
        let fixture = try LayoutFixture.tinyLlama(.modelopt)
        func withFolder(_ body: (String, [String]) throws -> Void) throws {
            let scratch = ScratchFolder()
            defer { scratch.remove() }
            let folder = scratch.file("m")
            try body(folder, try fixture.writeFolder(folder, shards: 2))
        }
        func rewriteIndex(_ folder: String, _ edit: (JSONValue) -> JSONValue) throws {
            let path = folder + "/model.safetensors.index.json"
            try writeWholeFile(path, Array(edit(try JSONParser.parse(try readWholeFile(path))).serialized().utf8))
        }
        let first = fixture.names[0]
        try withFolder { folder, files in
            try rewriteIndex(folder) { $0.setting(["weight_map", first], .string(files[1])) }
            expectOnly(.indexWrongShard, try CheckpointAudit(source: CheckpointSource(path: folder)).findings, subject: first)
        }
        try withFolder { folder, files in
            try rewriteIndex(folder) { $0.setting(["weight_map", "model.layers.9.mlp.up_proj.weight"], .string(files[0])) }
            expectOnly(.indexTensorMissing, try CheckpointAudit(source: CheckpointSource(path: folder)).findings, subject: "layers.9")
        }
        try withFolder { folder, _ in
            try rewriteIndex(folder) { $0.setting(["weight_map", first], nil) }
            expectOnly(.indexTensorUnlisted, try CheckpointAudit(source: CheckpointSource(path: folder)).findings, subject: first)
        }
        try withFolder { folder, files in
            // The second shard also carries the first tensor.
            let secondHalf = Array(fixture.names[((fixture.names.count + 1) / 2)...])
            try writeWholeFile(folder + "/" + files[1], fixture.fileBytes(secondHalf + [first]))
            let findings = try CheckpointAudit(source: CheckpointSource(path: folder)).findings
            expectOnly(.duplicateTensor, findings, subject: first)
        }
        try withFolder { folder, _ in
            try writeWholeFile(folder + "/model-old.safetensors", fixture.fileBytes([first]))
            expectOnly(.unreferencedShard, try CheckpointAudit(source: CheckpointSource(path: folder)).findings, subject: "model-old.safetensors")
        }
    }

    @Test("an index naming a shard outside the folder is refused before anything is opened", arguments: [
        "../outside.safetensors", "/etc/passwd", "sub/model.safetensors", "..", "",
    ])
    func hostileIndex(_ shard: String) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let folder = scratch.file("m")
        try LayoutFixture.tinyLlama(.modelopt).writeFolder(folder, shards: 2)
        let indexPath = folder + "/model.safetensors.index.json"
        let index = try JSONParser.parse(try readWholeFile(indexPath))
        try writeWholeFile(indexPath, Array(index.setting(["weight_map", "model.norm.weight"], .string(shard)).serialized().utf8))
        #expect(throws: CheckpointSourceError.self) { try CheckpointSource(path: folder) }
        let result = try ToolRunner.run(["check", folder])
        #expect(result.status == 2, "\(result)")
        #expect(result.stderrLines.count == 1 && result.stderr.contains("model.safetensors.index.json"), "\(result)")
        let inspect = try ToolRunner.run(["inspect", folder])
        #expect(inspect.status == 2, "\(inspect)")
    }

    @Test("an index naming a missing shard is an input error")
    func missingShard() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let folder = scratch.file("m")
        let files = try LayoutFixture.tinyLlama(.modelopt).writeFolder(folder, shards: 2)
        _ = unlink(folder + "/" + files[1])
        let result = try ToolRunner.run(["check", folder])
        #expect(result.status == 2 && result.stderr.contains(files[1]), "\(result)")
    }

    @Test("a Hugging Face cache snapshot (files are symbolic links into ../../blobs) reads like a folder")
    func cacheSnapshot() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let plain = scratch.file("plain")
        try LayoutFixture.tinyLlama(.compressedTensors).writeFolder(plain, shards: 2)
        let blobs = scratch.file("repo/blobs"), snapshot = scratch.file("repo/snapshots/abc123")
        _ = system("mkdir -p '\(blobs)' '\(snapshot)'")
        for (i, name) in ["config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"].enumerated() {
            _ = rename(plain + "/" + name, blobs + "/blob\(i)")
            _ = symlink("../../blobs/blob\(i)", snapshot + "/" + name)
        }
        let audit = try CheckpointAudit(source: CheckpointSource(path: snapshot))
        #expect(audit.model.modules.count == 14)
        #expect(audit.findings.isEmpty, "\(audit.findings.map(\.description))")
    }

    // MARK: Command line

    @Test("nvfp4 check: exit 0 clean, 1 with findings (one line each, and --json), 2 for garbage")
    func commandLine() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let clean = scratch.file("clean"), broken = scratch.file("broken")
        try LayoutFixture.tinyLlama(.compressedTensors).writeFolder(clean)
        try LayoutFixture.tinyLlama(.compressedTensors, sharedFusedScales: false).writeFolder(broken, shards: 2)

        let help = try ToolRunner.run(["check", "--help"])
        #expect(help.status == 0 && help.stdoutText.contains("USAGE: nvfp4 check "), "\(help)")
        #expect(try ToolRunner.run(["--help"]).stdoutText.contains("\n  check "))

        let ok = try ToolRunner.run(["check", clean])
        #expect(ok.status == 0 && ok.stderr.isEmpty, "\(ok)")
        #expect(ok.stdoutText.hasPrefix("ok: 14 NVFP4 modules (compressed-tensors)"), "\(ok)")

        let bad = try ToolRunner.run(["check", broken])
        #expect(bad.status == 1, "\(bad)")
        let lines = bad.stdoutText.split(separator: "\n")
        #expect(lines.count == 5, "\(bad)")
        #expect(lines[4] == "4 findings in 14 NVFP4 modules (compressed-tensors): 4 fused-global-scale-mismatch", "\(bad)")
        #expect(lines[0].hasPrefix(broken + "/model-0000"), "\(bad)")
        #expect(lines.contains { $0.contains(": model.layers.0.self_attn.{q_proj,k_proj,v_proj}: global weight scales differ: q_proj ") }, "\(bad)")

        let skipped = try ToolRunner.run(["check", broken, "--skip", "fused-global-scale-mismatch"])
        #expect(skipped.status == 0 && skipped.stdoutText.hasPrefix("ok: ") && skipped.stdoutText.contains("(4 skipped)"), "\(skipped)")
        let unknownRule = try ToolRunner.run(["check", broken, "--skip", "fused-scales"])
        #expect(unknownRule.status == 2 && unknownRule.stderr.contains("invalid value 'fused-scales' for --skip"), "\(unknownRule)")

        let json = try ToolRunner.run(["check", broken, "--json"])
        #expect(json.status == 1, "\(json)")
        let document = try JSONParser.parse(json.stdout)
        #expect(document["schema_version"]?.unsignedValue == 1)
        let array = try #require(document["findings"]?.arrayValue)
        #expect(array.count == 4)
        #expect(array.allSatisfy { $0["code"]?.stringValue == "fused-global-scale-mismatch" && $0["module"] != nil && $0["message"] != nil })

        let cleanJSON = try ToolRunner.run(["check", clean, "--json"])
        let cleanArray = try JSONParser.parse(cleanJSON.stdout)["findings"]?.arrayValue
        #expect(cleanJSON.status == 0 && cleanArray?.isEmpty == true, "\(cleanJSON)")

        try writeWholeFile(scratch.file("junk.safetensors"), Array("not a checkpoint".utf8))
        let junk = try ToolRunner.run(["check", scratch.file("junk.safetensors")])
        #expect(junk.status == 2 && junk.stderrLines.count == 1 && junk.stderr.contains("junk.safetensors"), "\(junk)")
        let missing = try ToolRunner.run(["check", scratch.file("nothing-here")])
        #expect(missing.status == 2 && missing.stderr.contains("nothing-here"), "\(missing)")

        // A config.json that is not JSON is an input error naming it.
        try writeWholeFile(clean + "/config.json", Array("{\"hidden_size\": 128,".utf8))
        let badConfig = try ToolRunner.run(["check", clean])
        #expect(badConfig.status == 2 && badConfig.stderrLines.count == 1 && badConfig.stderr.contains(clean + "/config.json"), "\(badConfig)")

        // A single file from stdin.
        let file = scratch.file("one.safetensors")
        try LayoutFixture.tinyLlama(.modelopt).writeFile(file)
        let piped = try ToolRunner.run(["check", "-"], stdin: try readWholeFile(file))
        #expect(piped.status == 0, "\(piped)")
        let inspected = try ToolRunner.run(["inspect", "-", "--json"], stdin: try readWholeFile(file))
        #expect(inspected.status == 0, "\(inspected)")
        #expect(try JSONParser.parse(inspected.stdout)["layout"]?.stringValue == "modelopt")
    }

    @Test("nvfp4 inspect on folders and on compressed-tensors / ModelOpt files")
    func inspect() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let folder = scratch.file("m")
        try LayoutFixture.tinyLlama(.modelopt, sharedFusedScales: false, keep: [Self.o1]).writeFolder(folder, shards: 2)
        let result = try ToolRunner.run(["inspect", folder, "--json"])
        #expect(result.status == 0, "\(result)")
        let json = try JSONParser.parse(result.stdout)
        #expect(json["layout"]?.stringValue == "modelopt")
        #expect(json["quantization"]?["quant_algo"]?.stringValue == "NVFP4")
        #expect(json["counts"]?["nvfp4_modules"]?.unsignedValue == 13)
        #expect(json["shards"]?.arrayValue?.count == 2)
        #expect(json["nvfp4_weights"]?.arrayValue?.count == 13)
        let groups = try #require(json["fused_groups"]?.arrayValue)
        #expect(groups.count == 4 && groups.allSatisfy { $0["global_scales_match"] == .bool(false) })
        let kept = try #require(json["kept"]?.arrayValue)
        let reasons = Dictionary(uniqueKeysWithValues: kept.map { ($0["module"]!.stringValue!, $0["reason"]!.stringValue!) })
        #expect(reasons[Self.o1] == "listed in ignore (\"\(Self.o1)\")")
        #expect(reasons["model.embed_tokens"] == "embedding")
        #expect(reasons["lm_head"] == "listed in ignore (\"lm_head\")")

        let text = try ToolRunner.run(["inspect", folder])
        #expect(text.status == 0, "\(text)")
        #expect(text.stdoutText.contains("layout: modelopt"), "\(text)")
        #expect(text.stdoutText.contains("fused groups: 4, 4 with unequal scales"), "\(text)")

        let file = scratch.file("ct.safetensors")
        try LayoutFixture.tinyLlama(.compressedTensors).writeFile(file)
        let single = try JSONParser.parse(try ToolRunner.run(["inspect", file, "--json"]).stdout)
        #expect(single["layout"]?.stringValue == "compressed-tensors")
        let weights = try #require(single["nvfp4_weights"]?.arrayValue)
        #expect(weights.count == 14)
        #expect(weights.allSatisfy { ($0["per_tensor_scale"]?.doubleValue ?? 0) > 0 && $0["layout"]?.stringValue == "compressed-tensors" })
        #expect(single["fused_groups"]?.arrayValue?.allSatisfy { $0["global_scales_match"] == .bool(true) } == true)
    }
}

