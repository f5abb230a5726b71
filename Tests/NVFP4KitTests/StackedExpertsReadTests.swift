import Foundation
import Glibc
import NVFP4Kit
import Testing

/// Stacked MoE experts on the read side: torchao's one 3-D tensor set per stacked tensor, and the
/// per-expert 2-D modules compressed-tensors and ModelOpt store (`experts.<e>.gate_proj`, …), read
/// by every command from a file and a folder.
@Suite("read commands × stacked experts")
struct StackedExpertsReadTests {
    static let experts = 2, hidden = 128, intermediate = 64
    static let block = "model.layers.0.mlp.experts"
    /// transformers-5 names and shapes: `gate_up_proj [E, 2I, H]`, `down_proj [E, H, I]`.
    static let stacked: [(name: String, rows: Int, columns: Int, leaves: [String])] = [
        ("\(block).gate_up_proj", 2 * intermediate, hidden, ["gate_proj", "up_proj"]),
        ("\(block).down_proj", hidden, intermediate, ["down_proj"]),
    ]

    /// Seeded bf16 bytes; expert `e` spreads over `(1 + e) × 0.02`.
    static func weights(rows: Int, columns: Int, seed: UInt64) -> [[UInt8]] {
        var random = SeededRandom(seed: seed)
        return (0..<experts).map { e in
            (0..<(rows * columns)).flatMap { _ in
                let bits = IndependentDecode.bf16(random.gaussian() * 0.02 * Float(1 + e))
                return [UInt8(bits & 0xFF), UInt8(bits >> 8)]
            }
        }
    }

    static func amax(_ bf16: ArraySlice<UInt8>) -> Float { ModelFixtures.bf16Amax(Array(bf16)) }

    /// The original (bf16, stacked) and its quantized form in `layout`.
    static func fixtures(_ layout: CheckpointLayout) -> (original: LayoutFixture, quantized: LayoutFixture) {
        var original = LayoutFixture(layout: .unquantized)
        var quantized = LayoutFixture(layout: layout)
        let norm = LayoutFixture.Tensor(dtype: .bf16, shape: [hidden], bytes: [UInt8](repeating: 0x3F, count: 2 * hidden))
        original.set("model.norm.weight", norm)
        quantized.set("model.norm.weight", norm)
        for (i, s) in stacked.enumerated() {
            let perExpert = weights(rows: s.rows, columns: s.columns, seed: UInt64(11 + i))
            original.set(s.name, .init(dtype: .bf16, shape: [experts, s.rows, s.columns], bytes: perExpert.flatMap { $0 }))
            if layout == .torchao {
                // One 3-D NVFP4Tensor: each expert against its own scale, swizzled scales per expert.
                var one = LayoutFixture(layout: .torchao)
                for (e, bytes) in perExpert.enumerated() {
                    one.addQuantized("x\(e)", weight: bytes, dtype: .bf16, rows: s.rows, columns: s.columns, scaleAmax: amax(bytes[...]), inputAmax: nil)
                }
                let parameter = String(s.name.split(separator: ".").last!)
                for (part, dtype, shape) in [
                    ("qdata", DType.u8, [experts, s.rows, s.columns / 2]),
                    ("scale", .f8E4M3, [experts] + ScaleLayout.swizzled.storedShape(rows: s.rows, blocks: s.columns / 16)),
                    ("per_tensor_scale", .f32, [experts, 1, 1]),
                ] {
                    let bytes = (0..<experts).flatMap { one.tensors["x\($0)._weight_\(part)"]!.bytes }
                    quantized.set("\(block)._\(parameter)_\(part)", .init(dtype: dtype, shape: shape, bytes: bytes))
                }
                // torchao's descriptor of the 3-D NVFP4Tensor, under the state-dict name (check requires it).
                quantized.metadata.append((s.name, TorchAOLayout(mode: .twoLevel).weightMetadata(originalDtype: .bf16)))
            } else {
                let share = s.rows / s.leaves.count
                let rowBytes = s.columns * 2
                for (e, bytes) in perExpert.enumerated() {
                    for (l, leaf) in s.leaves.enumerated() {
                        let slice = Array(bytes[(l * share * rowBytes)..<((l + 1) * share * rowBytes)])
                        quantized.addQuantized("\(block).\(e).\(leaf)", weight: slice, dtype: .bf16, rows: share, columns: s.columns,
                                               scaleAmax: amax(bytes[...]), inputAmax: nil)  // fused gate/up share one scale
                    }
                }
            }
        }
        let config: JSONValue = .object([("architectures", .array(["Qwen3MoeForCausalLM"])), ("model_type", "qwen3_moe")])
        original.config = config
        quantized.config = config
        return (original, quantized)
    }

    static let spellings: [(CheckpointLayout, LayoutSpelling)] = [(.torchao, .torchao), (.compressedTensors, .compressedTensors), (.modelopt, .modelopt)]

    @Test("verify, dequantize, inspect and check read stacked experts", arguments: [0, 1, 2])
    func readStacked(_ index: Int) throws {
        let (layout, spelling) = Self.spellings[index]
        let (original, quantized) = Self.fixtures(layout)
        try ToolRunner.withTemporaryDirectory { dir in
            try original.writeFolder(dir.file("original"))
            try quantized.writeFolder(dir.file("quantized"))
            let stored = try storedTensors(dir.file("quantized"))
            // What the quantized checkpoint stands for, decoded in the test.
            var expected: [String: (shape: [Int], bytes: [UInt8])] = ["model.norm.weight": ([Self.hidden], original.tensors["model.norm.weight"]!.bytes)]
            for s in Self.stacked {
                if layout == .torchao {
                    let parameter = String(s.name.split(separator: ".").last!)
                    var named = spelling
                    for path in [\LayoutSpelling.packed, \.blockScales, \.globalScale] {
                        named[keyPath: path] = named[keyPath: path].replacingOccurrences(of: "_weight_", with: "_\(parameter)_")
                    }
                    expected[s.name] = named.decode(Self.block, in: stored)
                } else {
                    for e in 0..<Self.experts { for leaf in s.leaves { expected["\(Self.block).\(e).\(leaf).weight"] = spelling.decode("\(Self.block).\(e).\(leaf)", in: stored) } }
                }
            }
            let quantizedNames = Set(expected.keys).subtracting(["model.norm.weight"])
            for kind in ["file", "folder"] {
                let (o, q) = kind == "folder" ? (dir.file("original"), dir.file("quantized")) : (dir.file("original/model.safetensors"), dir.file("quantized/model.safetensors"))
                let label = "\(layout.rawValue) \(kind)"
                let verify = try ToolRunner.run(["verify", o, q, "--json"])
                #expect(verify.status == 0, "\(label): \(verify)")
                let tensors = try JSONParser.parse(verify.stdout)["tensors"]?.arrayValue ?? []
                #expect(Set(tensors.filter { $0["kind"]?.stringValue == "quantized" }.compactMap { $0["name"]?.stringValue }) == Set(Self.stacked.map(\.name)), "\(label)")

                let out = dir.file("dense-\(kind)" + (kind == "file" ? ".safetensors" : ""))
                let d = try ToolRunner.run(["dequantize", q, "-o", out, "-q"])
                #expect(d.status == 0, "\(label): \(d)")
                let dense = try storedTensors(out)
                #expect(Set(dense.keys) == Set(expected.keys), "\(label): \(dense.keys.sorted())")
                for (name, e) in expected { #expect(dense[name]?.shape == e.shape && dense[name]?.bytes == e.bytes, "\(label): \(name)") }

                let inspect = try ToolRunner.run(["inspect", q, "--json"])
                #expect(inspect.status == 0, "\(label): \(inspect)")
                let weights = try JSONParser.parse(inspect.stdout)["nvfp4_weights"]?.arrayValue ?? []
                #expect(Set(weights.compactMap { $0["name"]?.stringValue }) == quantizedNames, "\(label)")
                for w in weights {
                    let name = w["name"]?.stringValue ?? ""
                    #expect(w["shape"]?.arrayValue?.compactMap { $0.unsignedValue.map(Int.init) } == expected[name]?.shape, "\(label): \(name)")
                }
            }
            let check = try ToolRunner.run(["check", dir.file("quantized/model.safetensors")])
            #expect(check.status == 0, "\(layout.rawValue): \(check)")
        }
    }

    @Test("dequantize and check refuse a checkpoint without NVFP4 weights (exit 2 and exit 1, one line)")
    func plainModel() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let d = try ToolRunner.run(["dequantize", ToolRunner.fixture("tiny-llama"), "-o", dir.file("out")])
            #expect(d.status == 2 && d.stderrLines.count == 1 && d.stderr.contains("no NVFP4 weights"), "\(d)")
            #expect(try dir.contents().isEmpty, "nothing is left behind")
        }
    }
}
