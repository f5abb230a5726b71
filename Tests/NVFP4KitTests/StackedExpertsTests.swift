import Glibc
import NVFP4Kit
import Testing

/// torchao's 3-D path: stacked `[E, N, K]` experts get one per-tensor scale per expert.
@Suite("stacked experts (torchao 3-D)")
struct StackedExpertsTests {
    /// bf16 bytes of a deterministic pseudo-random tensor; expert `e` is scaled by `1 + e`.
    static func bf16(experts: Int, rows: Int, columns: Int) -> [UInt8] {
        var state: UInt32 = 12345
        var out: [UInt8] = []
        for e in 0..<experts {
            for _ in 0..<(rows * columns) {
                state = state &* 1_664_525 &+ 1_013_904_223
                let v = (Float(state >> 8) / Float(1 << 24) - 0.5) * Float(1 + e)
                let bits = UInt16(v.bitPattern >> 16)
                out += [UInt8(bits & 0xFF), UInt8(bits >> 8)]
            }
        }
        return out
    }

    static func write(_ path: String, _ tensors: [(String, [Int], [UInt8])]) throws {
        let plan = SafetensorsLayoutPlan(tensors: tensors.map { PlannedTensor(name: $0.0, dtype: .bf16, shape: $0.1) }, metadata: [("format", "pt")])
        let sink = try AtomicFileSink(path: path, replace: false)
        try sink.write(plan.headerBytes + tensors.flatMap(\.2))
        _ = try sink.commit()
    }

    @Test("equals per-expert 2-D quantization, byte for byte; verify passes; engine layouts keep it")
    func perExpert() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let (e, n, k) = (3, 128, 64)
        let data = Self.bf16(experts: e, rows: n, columns: k)
        let name = "model.layers.0.mlp.experts.gate_up.weight"
        let folder = scratch.file("in")
        mkdir(folder, 0o755)
        try Self.write("\(folder)/model.safetensors", [(name, [e, n, k], data)])
        let config = try sealedTextFile(#"{"architectures":["SomeMoeForCausalLM"]}"#, to: "\(folder)/config.json", replace: false)
        try config.publish()
        // The reference: the same experts as separate 2-D tensors through the (torchao-exact) 2-D path.
        let each = n * k * 2
        let split = scratch.file("split.safetensors")
        try Self.write(split, (0..<e).map { ("x\($0).weight", [n, k], Array(data[($0 * each)..<(($0 + 1) * each)])) })
        let reference = scratch.file("split.nvfp4.safetensors")
        let sink = try AtomicFileSink(path: reference, replace: false)
        _ = try QuantizeJob.run(reader: try SafetensorsReader(path: split), sink: sink, options: QuantizeOptions())
        try sink.publish()
        let ref = try ModelFixtures.tensors(in: scratch.path)

        let output = try ModelFixtures.quantize(folder, format: .torchao, into: scratch).output
        let out = try ModelFixtures.tensors(in: output)
        let m = "model.layers.0.mlp.experts.gate_up"
        #expect(out["\(m)._weight_qdata"]?.shape == [e, n, k / 2])
        #expect(out["\(m)._weight_scale"]?.shape == [e, 32, 16])
        #expect(out["\(m)._weight_per_tensor_scale"]?.shape == [e, 1, 1])
        #expect(out["\(m)._weight_qdata"]?.bytes == (0..<e).flatMap { ref["x\($0)._weight_qdata"]!.bytes })
        #expect(out["\(m)._weight_scale"]?.bytes == (0..<e).flatMap { ref["x\($0)._weight_scale"]!.bytes })
        #expect(out["\(m)._weight_per_tensor_scale"]?.bytes == (0..<e).flatMap { ref["x\($0)._weight_per_tensor_scale"]!.bytes })
        #expect(Set((0..<e).map { ref["x\($0)._weight_per_tensor_scale"]!.bytes }).count == e, "one scale per expert")

        let report = try VerifyJob.run(original: try CheckpointSource(path: folder), quantized: try CheckpointSource(path: output), tolerance: 0.15)
        #expect(report.passed && report.tensors.first?.kind == .quantized, "\(report.mismatches)")

        // Without room for all experts' scales, they are computed again expert by expert: same bytes.
        var bounded = QuantizeOptions()
        bounded.threads = 2
        bounded.scaleBufferLimit = 0
        let boundedOutput = scratch.file("bounded")
        try FolderQuantizeJob.run(
            plan: try QuantizePlan(folder: try ModelFolder(path: folder), options: bounded, calibration: nil),
            output: boundedOutput, replace: false, invocation: ["nvfp4", "test"])
        let boundedTensors = try ModelFixtures.tensors(in: boundedOutput)
        #expect(boundedTensors["\(m)._weight_scale"]?.bytes == out["\(m)._weight_scale"]?.bytes)
        #expect(boundedTensors["\(m)._weight_qdata"]?.bytes == out["\(m)._weight_qdata"]?.bytes)

        // compressed-tensors and ModelOpt store each expert's 2-D projection, as vLLM's MoE loaders read them:
        // the same codes and scales as the per-expert 2-D quantization (one global scale per expert).
        for format in [CheckpointFormat.compressedTensors, .modelopt] {
            let engine = try ModelFixtures.tensors(in: try ModelFixtures.quantize(folder, format: format, into: scratch).output)
            #expect(engine[name] == nil, "\(format): no stacked tensor left")
            for expert in 0..<e {
                let module = "model.layers.0.mlp.experts.\(expert).gate_up"
                let names = format.names
                #expect(engine["\(module).\(names.packed)"]?.bytes == ref["x\(expert)._weight_qdata"]!.bytes, "\(format) expert \(expert)")
                #expect(engine["\(module).\(names.packed)"]?.shape == [n, k / 2])
                let stored = ModelFixtures.float(try #require(engine["\(module).\(names.globalScale)"]).bytes)
                let pts = ModelFixtures.float(ref["x\(expert)._weight_per_tensor_scale"]!.bytes)
                #expect(stored.bitPattern == (format == .compressedTensors ? 1 / pts : pts).bitPattern)
            }
        }
    }
}
