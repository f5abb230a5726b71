import Glibc
import NVFP4Kit
import Testing

/// Stacked experts as transformers 5 names them (`mlp.experts.gate_up_proj` `[E, 2I, H]`,
/// `mlp.experts.down_proj` `[E, H, I]`, no `.weight`), in every layout and with every method.
///
/// The independent expectation: the same experts written as a per-expert checkpoint
/// (`mlp.experts.<e>.{gate,up,down}_proj.weight`, as Qwen3-MoE ships them) go through the plain
/// 2-D path; the engine layouts must store the stacked model exactly as that one, and torchao's
/// 3-D tensors must equal each expert's `[2I, H]` matrix quantized on its own.
@Suite("stacked experts, transformers 5 naming")
struct StackedExpertNamingTests {
    static let (experts, intermediate, hidden) = (3, 64, 128)
    static let prefix = "model.layers.0.mlp.experts"

    /// The stacked checkpoint's folder and its per-expert twin's, with a Qwen3-MoE config.
    static func folders(_ scratch: ScratchFolder) throws -> (stacked: String, perExpert: String) {
        let (e, i, h) = (experts, intermediate, hidden)
        let gateUp = StackedExpertsTests.bf16(experts: e, rows: 2 * i, columns: h)
        let down = StackedExpertsTests.bf16(experts: e, rows: h, columns: i).map { $0 ^ 0x01 }
        let stacked = scratch.file("stacked"), perExpert = scratch.file("per-expert")
        for folder in [stacked, perExpert] {
            mkdir(folder, 0o755)
            try sealedTextFile(#"{"architectures":["Qwen3MoeForCausalLM"],"model_type":"qwen3_moe"}"#, to: "\(folder)/config.json", replace: false).publish()
        }
        try StackedExpertsTests.write("\(stacked)/model.safetensors", [
            ("\(prefix).gate_up_proj", [e, 2 * i, h], gateUp), ("\(prefix).down_proj", [e, h, i], down),
        ])
        var tensors: [(String, [Int], [UInt8])] = []
        let gateUpBytes = 2 * i * h * 2, halfBytes = i * h * 2, downBytes = h * i * 2
        for x in 0..<e {
            let expert = Array(gateUp[(x * gateUpBytes)..<((x + 1) * gateUpBytes)])
            tensors.append(("\(prefix).\(x).gate_proj.weight", [i, h], Array(expert[0..<halfBytes])))
            tensors.append(("\(prefix).\(x).up_proj.weight", [i, h], Array(expert[halfBytes...])))
            tensors.append(("\(prefix).\(x).down_proj.weight", [h, i], Array(down[(x * downBytes)..<((x + 1) * downBytes)])))
        }
        try StackedExpertsTests.write("\(perExpert)/model.safetensors", tensors)
        return (stacked, perExpert)
    }

    static func quantize(_ folder: String, format: CheckpointFormat, method: QuantizationMethod, into output: String) throws -> QuantizePlan {
        var options = QuantizeOptions()
        options.format = format
        options.method = method
        options.threads = 2
        let plan = try QuantizePlan(folder: try ModelFolder(path: folder), options: options, calibration: nil)
        try FolderQuantizeJob.run(plan: plan, output: output, replace: false, invocation: ["nvfp4", "test"])
        return plan
    }

    @Test("compressed-tensors and ModelOpt store each expert's gate, up and down as the per-expert checkpoint does",
          arguments: [CheckpointFormat.compressedTensors, .modelopt], [QuantizationMethod.rtn, .mse])
    func engineLayouts(format: CheckpointFormat, method: QuantizationMethod) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let (stacked, perExpert) = try Self.folders(scratch)
        let plan = try Self.quantize(stacked, format: format, method: method, into: scratch.file("a"))
        _ = try Self.quantize(perExpert, format: format, method: method, into: scratch.file("b"))
        #expect(plan.tensors.allSatisfy { $0.isQuantized }, "\(plan.tensors.map(\.decision))")
        let a = try ModelFixtures.tensors(in: scratch.file("a")), b = try ModelFixtures.tensors(in: scratch.file("b"))
        #expect(Set(a.keys) == Set(b.keys))
        #expect(a["\(Self.prefix).gate_up_proj"] == nil && a["\(Self.prefix).down_proj"] == nil)
        for (name, tensor) in b { #expect(a[name]?.bytes == tensor.bytes && a[name]?.shape == tensor.shape, "\(name)") }
        // gate and up of one expert share its global scale; experts differ.
        let global = format.names.globalScale
        for x in 0..<Self.experts {
            #expect(a["\(Self.prefix).\(x).gate_proj.\(global)"]?.bytes == a["\(Self.prefix).\(x).up_proj.\(global)"]?.bytes)
        }
        #expect(a["\(Self.prefix).0.gate_proj.\(global)"]?.bytes != a["\(Self.prefix).1.gate_proj.\(global)"]?.bytes)
    }

    @Test("torchao keeps each stacked tensor as one 3-D NVFP4Tensor named after the parameter", arguments: [QuantizationMethod.rtn, .mse])
    func torchao(method: QuantizationMethod) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let (stacked, _) = try Self.folders(scratch)
        _ = try Self.quantize(stacked, format: .torchao, method: method, into: scratch.file("a"))
        let out = try ModelFixtures.tensors(in: scratch.file("a"))
        let (e, i, h) = (Self.experts, Self.intermediate, Self.hidden)
        #expect(out["\(Self.prefix)._gate_up_proj_qdata"]?.shape == [e, 2 * i, h / 2])
        #expect(out["\(Self.prefix)._gate_up_proj_per_tensor_scale"]?.shape == [e, 1, 1])
        #expect(out["\(Self.prefix)._down_proj_qdata"]?.shape == [e, h, i / 2])
        // Each expert's [2I, H] quantized on its own (a 2-D file of the same matrices).
        let source = try SafetensorsReader(path: "\(stacked)/model.safetensors")
        let gateUp = try #require(source.header.tensor(named: "\(Self.prefix).gate_up_proj"))
        let bytes = try source.withBytes(of: gateUp) { Array($0) }
        let each = 2 * i * h * 2
        try StackedExpertsTests.write(scratch.file("split.safetensors"), (0..<e).map { ("x\($0).weight", [2 * i, h], Array(bytes[($0 * each)..<(($0 + 1) * each)])) })
        var options = QuantizeOptions()
        options.method = method
        let sink = try AtomicFileSink(path: scratch.file("split.nvfp4.safetensors"), replace: false)
        _ = try QuantizeJob.run(reader: try SafetensorsReader(path: scratch.file("split.safetensors")), sink: sink, options: options)
        try sink.publish()
        let ref = try ModelFixtures.tensors(in: scratch.path)
        #expect(out["\(Self.prefix)._gate_up_proj_qdata"]?.bytes == (0..<e).flatMap { ref["x\($0)._weight_qdata"]!.bytes })
        #expect(out["\(Self.prefix)._gate_up_proj_per_tensor_scale"]?.bytes == (0..<e).flatMap { ref["x\($0)._weight_per_tensor_scale"]!.bytes })
    }

    @Test("--method mse changes stacked experts' codes in every layout (it used to be ignored for them)", arguments: CheckpointFormat.allCases)
    func methodApplies(format: CheckpointFormat) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let (stacked, _) = try Self.folders(scratch)
        _ = try Self.quantize(stacked, format: format, method: .rtn, into: scratch.file("rtn"))
        _ = try Self.quantize(stacked, format: format, method: .mse, into: scratch.file("mse"))
        let rtn = try ModelFixtures.tensors(in: scratch.file("rtn")), mse = try ModelFixtures.tensors(in: scratch.file("mse"))
        let packed = rtn.keys.filter { rtn[$0]!.dtype == .u8 }
        #expect(!packed.isEmpty)
        #expect(packed.contains { rtn[$0]!.bytes != mse[$0]?.bytes })
    }

    @Test("--max-shard-size sizes stacked experts by their output bytes", arguments: CheckpointFormat.allCases)
    func shardSizes(format: CheckpointFormat) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let (stacked, _) = try Self.folders(scratch)
        var options = QuantizeOptions()
        options.format = format
        let limit = 30_000
        let plan = try QuantizePlan(folder: try ModelFolder(path: stacked), options: options, calibration: nil, maxShardSize: limit)
        try FolderQuantizeJob.run(plan: plan, output: scratch.file("out"), replace: false, invocation: ["nvfp4", "test"])
        let index = try ModelFixtures.json(scratch.file("out/model.safetensors.index.json"))
        var written = 0
        for (i, shard) in plan.outputShards.enumerated() {
            let reader = try SafetensorsReader(path: scratch.file("out/\(shard.name)"))
            let data = Int(reader.header.dataByteCount)
            written += data
            #expect(data == plan.tensors(ofOutputShard: i).reduce(0) { $0 + $1.outputByteCount })
            #expect(data <= limit || shard.tensors.count == 1, "\(shard.name): \(data) bytes over the limit")
        }
        #expect(index["metadata"]?["total_size"]?.unsignedValue == UInt64(written))
        #expect(plan.outputShards.count > 1)
    }
}

extension StackedExpertNamingTests {
    @Test("--importance reaches stacked experts by each expert's module name, in every layout", arguments: CheckpointFormat.allCases)
    func importanceApplies(format: CheckpointFormat) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let (stacked, _) = try Self.folders(scratch)
        // Statistics for expert 1's gate/up input only (H channels), strongly uneven.
        let stats: JSONValue = .object([
            ("format", "nvfp4-importance"), ("version", 1),
            ("modules", .object([("\(Self.prefix).1.gate_proj", .array((0..<Self.hidden).map { .number($0 % 4 == 0 ? 100 : 0.01) }))])),
        ])
        var options = QuantizeOptions()
        options.format = format
        options.method = .mse
        options.threads = 2
        let plain = try QuantizePlan(folder: try ModelFolder(path: stacked), options: options, calibration: nil)
        try FolderQuantizeJob.run(plan: plain, output: scratch.file("plain"), replace: false, invocation: ["nvfp4", "test"])
        options.importance = try ImportanceStatistics(json: stats)
        options.importancePath = "stats.json"
        let weighted = try QuantizePlan(folder: try ModelFolder(path: stacked), options: options, calibration: nil)
        let run = try FolderQuantizeJob.run(plan: weighted, output: scratch.file("weighted"), replace: false, invocation: ["nvfp4", "test"])
        let reports = run.records.flatMap(\.reports)
        #expect(reports.first { $0.name == "\(Self.prefix).gate_up_proj" }?.importanceWeighted == true)
        #expect(reports.first { $0.name == "\(Self.prefix).down_proj" }?.importanceWeighted == false)
        let a = try ModelFixtures.tensors(in: scratch.file("plain")), b = try ModelFixtures.tensors(in: scratch.file("weighted"))
        #expect(a.keys.contains { a[$0]!.dtype == .u8 && a[$0]!.bytes != b[$0]?.bytes }, "the statistics change some codes")
        if !format.names.stacksExperts {
            // Only expert 1's slices are weighted: expert 0's bytes are the unweighted ones.
            let packed = format.names.packed
            #expect(a["\(Self.prefix).0.gate_proj.\(packed)"]?.bytes == b["\(Self.prefix).0.gate_proj.\(packed)"]?.bytes)
            #expect(a["\(Self.prefix).1.gate_proj.\(packed)"]?.bytes != b["\(Self.prefix).1.gate_proj.\(packed)"]?.bytes)
        }
    }
}
