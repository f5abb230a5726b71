import Glibc
import NVFP4Kit
import Testing

/// FP8 checkpoints in (`Fixtures/fp8`, `scripts/fixtures/make_fp8.py`): the output of an FP8
/// input equals, tensor for tensor, the output of its reference bf16 dequantization (DeepSeek's
/// `weight_dequant` arithmetic / compressed-tensors' `dequantize`), in every layout and input kind.
@Suite("FP8 input")
struct FP8InputTests {
    static let fileCases = ["block-f32", "block-e8m0", "ct-tensor", "ct-channel", "ct-block", "fp8-tensor-f32"]
    static let layouts: [CheckpointFormat] = [.torchao, .compressedTensors, .modelopt]
    static func fixture(_ name: String) -> String { "\(FixturePaths.root)/Fixtures/fp8/\(name)" }

    /// Every tensor of one file, by name.
    static func tensors(inFile path: String) throws -> [String: ModelFixtures.Stored] {
        let reader = try SafetensorsReader(path: path)
        var result: [String: ModelFixtures.Stored] = [:]
        for t in reader.header.tensors {
            result[t.name] = ModelFixtures.Stored(dtype: t.dtype, shape: t.shape, bytes: try reader.withBytes(of: t) { Array($0) }, shard: "")
        }
        return result
    }

    @Test("the dequantizer reproduces the reference dequantization bit for bit", arguments: fileCases)
    func dequantizerMatchesReference(name: String) throws {
        let reader = try SafetensorsReader(path: Self.fixture("\(name).safetensors"))
        var options = QuantizeOptions()
        options.fp8BlockSize = [128, 128]
        let plan = try QuantizePlan(file: reader, options: options)
        let reference = try Self.tensors(inFile: Self.fixture("\(name).reference.safetensors"))
        let weights = plan.tensors.filter { $0.fp8 != nil }
        #expect(weights.count >= 4)
        for entry in weights {
            let fp8 = try #require(entry.fp8)
            let scales = try reader.withBytes(of: fp8.scale) { FP8Dequantizer.scaleValues($0, dtype: fp8.scale.dtype) }
            let expected = try #require(reference[entry.tensor.name])
            #expect(expected.dtype == fp8.scaling.target, "\(entry.tensor.name)")
            var out = [UInt8](repeating: 0, count: expected.bytes.count)
            let amax = try reader.withBytes(of: entry.tensor) { codes in
                out.withUnsafeMutableBytes { buffer in
                    FP8Dequantizer.dequantize(
                        codes: codes, matrices: 1, rows: entry.tensor.shape[0], columns: entry.tensor.shape[1], scales: scales,
                        scaling: fp8.scaling, into: buffer, threads: 2)
                }
            }
            #expect(out == expected.bytes, "\(name): \(entry.tensor.name)")
            // The amax found in the same pass is the reference's largest magnitude.
            let magnitudes = stride(from: 0, to: expected.bytes.count, by: 2).map { i -> Float in
                let bits = UInt16(expected.bytes[i]) | UInt16(expected.bytes[i + 1]) << 8
                return expected.dtype == .f16 ? abs(Float(Float16(bitPattern: bits))) : abs(Float(bitPattern: UInt32(bits) << 16))
            }
            #expect(amax == magnitudes.max(), "\(name): \(entry.tensor.name)")
        }
        // Scales and input scales are consumed; nothing FP8 is written.
        for entry in plan.tensors where entry.tensor.dtype.isEightBitFloat && entry.fp8 == nil { #expect(entry.kind == .consumed) }
        #expect(plan.tensors.flatMap(\.outputs).allSatisfy { !$0.dtype.isEightBitFloat || $0.name.hasSuffix("weight_scale") })
    }

    /// The reference's two roundings (fp32 product, then bf16), computed here: for the planted
    /// elements the fixture's reference value must equal them and differ from one rounding.
    @Test("the fixtures hold elements where two roundings differ from one, and the reference rounds twice")
    func doubleRounding() throws {
        let planted = try ModelFixtures.json(Self.fixture("rounding.json"))
        var checked = 0
        for (name, file) in [("block-f32", "block-f32.reference.safetensors"), ("fp8-tensor-f32", "fp8-tensor-f32.reference.safetensors")] {
            let reference = try Self.tensors(inFile: Self.fixture(file))
            let input = try Self.tensors(inFile: Self.fixture("\(name).safetensors"))
            for element in try #require(planted[name]?.arrayValue) {
                let tensor = try #require(element["tensor"]?.stringValue)
                let row = Int(element["row"]!.unsignedValue!), column = Int(element["column"]!.unsignedValue!)
                let code = UInt8(element["code"]!.unsignedValue!)
                let weight = try #require(input[tensor])
                let columns = weight.shape[1]
                #expect(weight.bytes[row * columns + column] == code)
                let scaleName = input[tensor + "_scale_inv"] != nil ? tensor + "_scale_inv" : String(tensor.dropLast("weight".count)) + "weight_scale"
                let scaleTensor = try #require(input[scaleName])
                let gridColumns = scaleTensor.shape.count == 2 ? scaleTensor.shape[1] : 1
                let scaleIndex = scaleTensor.bytes.count == 4 ? 0 : (row / 128) * gridColumns + column / 128
                let scale = ModelFixtures.float(Array(scaleTensor.bytes[(4 * scaleIndex)..<(4 * scaleIndex + 4)]))
                let value = Self.e4m3(code)
                let twice = Self.bf16RoundedBits(value * scale)  // fp32 multiply, then bf16
                let once = Self.bf16RoundedBits(exactly: Double(value) * Double(scale))
                let stored = UInt16(reference[tensor]!.bytes[2 * (row * columns + column)]) | UInt16(reference[tensor]!.bytes[2 * (row * columns + column) + 1]) << 8
                #expect(twice != once, "\(tensor)[\(row), \(column)]")
                #expect(stored == twice, "\(tensor)[\(row), \(column)]")
                checked += 1
            }
        }
        #expect(checked >= 10)
    }

    /// Quantizes `input` (`-`: `stdin`) to `output` and expects exactly the tensors of `expected`.
    static func expectQuantized(
        _ input: String, stdin: [UInt8]?, to output: String, arguments: [String], equals expected: [String: ModelFixtures.Stored], _ label: String
    ) throws {
        let r = try ToolRunner.run(["quantize", input, "-o", output] + arguments, stdin: stdin)
        #expect(r.status == 0, "\(label): \(r.stderr)")
        let got = try tensors(inFile: output)
        #expect(Set(got.keys) == Set(expected.keys), "\(label)")
        for (tensor, stored) in expected { #expect(got[tensor] == stored, "\(label) \(tensor)") }
    }

    /// The ways a single FP8 file reaches `quantize`.
    enum InputKind: String, CaseIterable, CustomStringConvertible {
        case file, stdin, zstFile = "zst file", zstStdin = "zst on stdin"
        var description: String { rawValue }
    }

    @Test("file, stdin, .zst file and .zst on stdin: FP8 output equals the reference bf16 output", arguments: fileCases, layouts)
    func inputKinds(name: String, format: CheckpointFormat) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = Self.fixture("\(name).safetensors")
            let plain = try ToolRunner.readFile(input)
            let compressed = try zstdCompress(plain)
            let zst = try dir.write(compressed, to: "in.safetensors.zst")
            let common = ["--format", format.rawValue, "--fp8-block-size", "128x128", "--quiet"]
            let expected = dir.file("expected.safetensors")
            let r0 = try ToolRunner.run(["quantize", Self.fixture("\(name).reference.safetensors"), "-o", expected] + common)
            #expect(r0.status == 0, "\(r0.stderr)")
            let reference = try Self.tensors(inFile: expected)
            #expect(reference.values.contains { $0.dtype == .u8 || $0.dtype == .f4 }, "something is quantized")
            for kind in InputKind.allCases {
                let (path, stdin): (String, [UInt8]?) = switch kind {
                case .file: (input, nil)
                case .stdin: ("-", plain)
                case .zstFile: (zst, nil)
                case .zstStdin: ("-", compressed)
                }
                try Self.expectQuantized(path, stdin: stdin, to: dir.file("\(kind.rawValue).safetensors"), arguments: common, equals: reference, "\(name) \(format.rawValue) \(kind)")
            }
        }
    }

    @Test("one-chunk waves, recomputed scales and 1 or 3 threads give the same bytes as the reference", arguments: layouts)
    func wavesAndThreads(format: CheckpointFormat) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            func run(_ input: String, _ name: String, threads: Int, waveBytes: Int, scaleLimit: Int) throws -> [String: ModelFixtures.Stored] {
                var options = QuantizeOptions()
                options.format = format
                options.fp8BlockSize = [128, 128]
                options.threads = threads
                options.waveBytes = waveBytes
                options.scaleBufferLimit = scaleLimit
                let sink = try AtomicFileSink(path: dir.file(name), replace: false)
                _ = try QuantizeJob.run(reader: try SafetensorsReader(path: input), sink: sink, options: options)
                try sink.publish()
                return try Self.tensors(inFile: dir.file(name))
            }
            let expected = try run(Self.fixture("block-f32.reference.safetensors"), "reference", threads: 2, waveBytes: 8 << 20, scaleLimit: 64 << 20)
            for (i, (threads, waveBytes, limit)) in [(1, 1, 0), (3, 1, 0), (3, 8 << 20, 64 << 20)].enumerated() {
                let got = try run(Self.fixture("block-f32.safetensors"), "\(i)", threads: threads, waveBytes: waveBytes, scaleLimit: limit)
                #expect(got == expected, "\(format.rawValue) threads \(threads) waves \(waveBytes) scale limit \(limit)")
            }
        }
    }

    @Test("folders (a scale in another shard; two config groups): shards, index and config equal the reference folder's", arguments: ["deepseek", "ct"], layouts)
    func folders(name: String, format: CheckpointFormat) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let (fp8, plan) = try ModelFixtures.quantize(Self.fixture(name), format: format, into: scratch, name: "fp8")
        let (reference, _) = try ModelFixtures.quantize(Self.fixture("\(name).reference"), format: format, into: scratch, name: "reference")
        let got = try ModelFixtures.tensors(in: fp8)
        let expected = try ModelFixtures.tensors(in: reference)
        #expect(Set(got.keys) == Set(expected.keys))
        for (tensor, stored) in expected { #expect(got[tensor] == stored, "\(name) \(format.rawValue) \(tensor)") }
        for file in ["config.json", "model.safetensors.index.json"] where ToolRunner.exists("\(reference)/\(file)") {
            #expect(try ModelFixtures.read("\(fp8)/\(file)") == ModelFixtures.read("\(reference)/\(file)"), "\(file)")
        }
        #expect(!got.keys.contains { $0.hasSuffix("_scale_inv") || $0.hasSuffix(".input_scale") && format != .modelopt })
        if name == "deepseek" {
            let up = try #require(plan.tensors.first { $0.tensor.name == "model.layers.0.mlp.up_proj.weight" })
            #expect(up.fp8?.scaleShard != up.inputShard, "the fixture keeps up_proj's scale in the other shard")
            let decisions = Dictionary(uniqueKeysWithValues: plan.tensors.map { ($0.tensor.name, $0.decision) })
            #expect(decisions["model.layers.1.mlp.gate_proj.weight"] == .keep(.multiTokenPrediction))
            #expect(decisions["model.layers.1.eh_proj.weight"] == .keep(.multiTokenPrediction))
            #expect(decisions["model.layers.0.self_attn.kv_b_proj.weight"] == .keep(.mlaKVUpProjection))
            #expect(decisions["model.layers.0.self_attn.o_proj.weight"] == .keep(.mlaAttention))
            #expect(decisions["model.layers.0.mlp.gate_proj.weight"] == .quantize)
        }
    }

    @Test("bf16 DeepSeek input follows the same keep rules; --mla-attention quantize quantizes q_a/kv_a, q_b, o but never kv_b_proj")
    func mlaRules() throws {
        let folder = try ModelFolder(path: Self.fixture("deepseek.reference"))
        var options = QuantizeOptions()
        options.format = .compressedTensors
        let kept = try QuantizePlan(folder: folder, options: options, calibration: nil)
        options.mlaAttention = .quantize
        let quantized = try QuantizePlan(folder: folder, options: options, calibration: nil)
        func decision(_ plan: QuantizePlan, _ name: String) -> TensorDecision? { plan.tensors.first { $0.tensor.name == name }?.decision }
        for leaf in ["q_a_proj", "kv_a_proj_with_mqa", "o_proj"] {
            #expect(decision(kept, "model.layers.0.self_attn.\(leaf).weight") == .keep(.mlaAttention))
            #expect(decision(quantized, "model.layers.0.self_attn.\(leaf).weight") == .quantize)
        }
        for plan in [kept, quantized] {
            #expect(decision(plan, "model.layers.0.self_attn.kv_b_proj.weight") == .keep(.mlaKVUpProjection))
            #expect(decision(plan, "model.layers.1.mlp.down_proj.weight") == .keep(.multiTokenPrediction))
            #expect(decision(plan, "model.layers.0.mlp.down_proj.weight") == .quantize)
        }
        #expect(quantized.groups.contains { $0.quantized && $0.group.weights.contains("model.layers.0.self_attn.q_a_proj.weight") })
    }

    @Test("inspect shows FP8 weights, their scale layout and the config's FP8 scheme")
    func inspect() throws {
        let deepseek = try ToolRunner.run(["inspect", Self.fixture("deepseek")])
        #expect(deepseek.status == 0)
        let text = String(decoding: deepseek.stdout, as: UTF8.self)
        #expect(text.contains("layout: FP8"), "\(text)")
        #expect(text.contains("FP8 weights: 12 (block 128x128, F32 weight_scale_inv: 12)"), "\(text)")
        #expect(text.contains("FP8 weights, block 128x128 (weight_block_size), dynamic activations"), "\(text)")
        let ct = try ToolRunner.run(["inspect", Self.fixture("ct"), "--json"])
        let json = try JSONParser.parse(String(decoding: ct.stdout, as: UTF8.self))
        #expect(json["fp8"]?["weights"]?.unsignedValue == 5)
        let schemes = try #require(json["fp8"]?["schemes"]?.arrayValue)
        #expect(Set(schemes.compactMap { $0["scheme"]?.stringValue }) == ["block", "channel"])
        #expect(json["fp8"]?["config_scheme"]?.stringValue?.contains("group_1: FP8 block 128x128") == true)
        #expect(!(json["fp8"]?["config_scheme"]?.stringValue?.contains("W4A16") ?? true))
    }

    @Test("check flags an NVFP4 kv_b_proj and an NVFP4 MTP layer")
    func checkKeptByRule() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            // kv_b_proj quantized on request (--include wins over the name rules).
            let included = dir.file("included")
            let r = try ToolRunner.run(["quantize", Self.fixture("deepseek.reference"), "-o", included, "--format", "modelopt", "--include", "*kv_b_proj*", "-q"])
            #expect(r.status == 0, "\(r.stderr)")
            let check = try ToolRunner.run(["check", included])
            #expect(check.status == 1 && check.stdout.count + check.stderr.count > 0)
            let text = String(decoding: check.stdout, as: UTF8.self) + check.stderr
            #expect(text.contains("model.layers.0.self_attn.kv_b_proj") && text.contains("kept-by-rule-quantized"), "\(text)")
            // Layer 1 quantized as a decoder layer (num_hidden_layers 2), then described as the MTP layer.
            let two = try dir.makeSubfolder("two")
            for name in try listFolder(Self.fixture("deepseek.reference")) {
                _ = try dir.copyFixture("fp8/deepseek.reference/\(name)", as: "two/\(name)")
            }
            let config = try ModelFixtures.json(Self.fixture("deepseek.reference/config.json"))
            try writeWholeFile("\(two)/config.json", Array(config.setting(["num_hidden_layers"], .int(2)).serialized(.pretty).utf8))
            let output = dir.file("mtp")
            #expect(try ToolRunner.run(["quantize", two, "-o", output, "--format", "modelopt", "-q"]).status == 0)
            try writeWholeFile("\(output)/config.json", try readWholeFile(Self.fixture("deepseek.reference/config.json")))
            let mtp = try ToolRunner.run(["check", output])
            let mtpText = String(decoding: mtp.stdout, as: UTF8.self) + mtp.stderr
            #expect(mtp.status == 1 && mtpText.contains("model.layers.1.mlp.gate_proj") && mtpText.contains("kept-by-rule-quantized"), "\(mtpText)")
        }
    }

    // MARK: refusals

    /// A safetensors file of `tensors` (name, dtype, shape, fill byte), in this order.
    static func file(_ tensors: [(String, DType, [Int], UInt8)]) -> [UInt8] {
        let plan = SafetensorsLayoutPlan(tensors: tensors.map { PlannedTensor(name: $0.0, dtype: $0.1, shape: $0.2) }, metadata: [])
        return plan.headerBytes + tensors.flatMap { [UInt8](repeating: $0.3, count: $0.2.reduce(1, *) * $0.1.bitWidth / 8) }
    }

    @Test("an FP8 tensor that cannot be converted is refused (exit 2, file and tensor named), never passed through", arguments: [
        ("no scale", [("m.weight", DType.f8E4M3, [32, 32], UInt8(0x38))], "m.weight"),
        ("e5m2 weight", [("m.weight_scale", .f32, [1], 0), ("m.weight", .f8E5M2, [32, 32], 0x38)], "m.weight"),
        ("scale of another dtype", [("m.weight_scale_inv", .i32, [1, 1], 0), ("m.weight", .f8E4M3, [32, 32], 0x38)], "m.weight_scale_inv"),
        ("scale grid that fits nothing", [("m.weight_scale", .f32, [3, 5], 0), ("m.weight", .f8E4M3, [32, 32], 0x38)], "m.weight_scale"),
        ("stray e8m0", [("m.bias", .f8E8M0, [32], 0x7F)], "m.bias"),
        ("two scales", [("m.weight_scale", .f32, [1], 0x3C), ("m.weight_scale_inv", .f32, [1], 0x3C), ("m.weight", .f8E4M3, [32, 32], 0x38)], "m.weight"),
    ])
    func refusals(name: String, tensors: [(String, DType, [Int], UInt8)], tensor: String) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.write(Self.file(tensors), to: "in.safetensors")
            let output = dir.file("out.safetensors")
            let result = try ToolRunner.run(["quantize", input, "-o", output])
            #expect(result.status == 2, "\(name): \(result.stderr)")
            #expect(result.stderr.contains(input) && result.stderr.contains("\"\(tensor)\""), "\(name): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(name): one line")
            #expect(!ToolRunner.exists(output))
        }
    }

    @Test("a NaN code (0x7F) is refused with its tensor, row and column")
    func nanCode() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            var bytes = Self.file([("m.weight_scale", .f32, [1], 0x3C), ("m.weight", .f8E4M3, [32, 32], 0x38)])
            bytes[bytes.count - 32 * 32 + 5 * 32 + 7] = 0xFF  // row 5, column 7
            let input = try dir.write(bytes, to: "in.safetensors")
            let result = try ToolRunner.run(["quantize", input, "-o", dir.file("out.safetensors")])
            #expect(result.status == 2, "\(result.stderr)")
            #expect(result.stderr.contains("\"m.weight\"") && result.stderr.contains("5") && result.stderr.contains("7"), "\(result.stderr)")
        }
    }

    @Test("a stream whose scale follows its weight is refused; the same file from disk converts")
    func scaleAfterWeightInStream() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let bytes = Self.file([("m.weight", .f8E4M3, [32, 32], 0x38), ("m.weight_scale", .f32, [1], 0x3C)])
            let input = try dir.write(bytes, to: "in.safetensors")
            let piped = try ToolRunner.run(["quantize", "-", "-o", dir.file("a.safetensors")], stdin: bytes)
            #expect(piped.status == 2, "\(piped.stderr)")
            #expect(piped.stderr.contains("\"m.weight_scale\" follows its FP8 weight \"m.weight\""), "\(piped.stderr)")
            let fromFile = try ToolRunner.run(["quantize", input, "-o", dir.file("b.safetensors"), "--quiet"])
            #expect(fromFile.status == 0, "\(fromFile.stderr)")
            let written = try Self.tensors(inFile: dir.file("b.safetensors"))
            #expect(Set(written.keys) == ["m._weight_qdata", "m._weight_scale", "m._weight_per_tensor_scale"])
        }
    }

    // MARK: independent arithmetic

    /// E4M3FN code → value (exact).
    static func e4m3(_ code: UInt8) -> Float {
        let sign: Float = code & 0x80 != 0 ? -1 : 1
        let exponent = Int(code >> 3) & 0xF, mantissa = Float(code & 7)
        if exponent == 0 { return sign * mantissa / 8 * Float(sign: .plus, exponent: -6, significand: 1) }
        return sign * (1 + mantissa / 8) * Float(sign: .plus, exponent: exponent - 7, significand: 1)
    }

    /// fp32 → bf16 bits, round to nearest even.
    static func bf16RoundedBits(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        return UInt16((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16)
    }

    /// An exact value → bf16 bits with one rounding (8 significant bits, nearest even).
    static func bf16RoundedBits(exactly value: Double) -> UInt16 {
        let exponent = value.exponent
        let unit = Double(sign: .plus, exponent: exponent - 7, significand: 1)
        let rounded = (value / unit).rounded(.toNearestOrEven) * unit
        return UInt16(Float(rounded).bitPattern >> 16)
    }
}
