import NVFP4Kit
import Testing

/// Stacked 3-D FP8 experts `[E, N, K]`, read expert by expert and 128 rows at a time. The
/// expectation is a bf16 file made here from the same codes and scales with the reference's
/// arithmetic written in the test (E4M3 decoded exactly, one fp32 multiply, one bf16 rounding):
/// every output tensor must equal the output of that bf16 file, in every layout (torchao's 3-D
/// tensor, per-expert slices, a stacked tensor kept as bf16 where torchao's layout cannot hold it).
@Suite("FP8 input: stacked experts")
struct FP8StackedExpertsTests {
    /// A stacked FP8 tensor: name, shape, its scale's name, dtype and shape.
    struct Stacked {
        var name: String
        var shape: [Int]
        var scale: String
        var scaleDType: DType
        var scaleShape: [Int]
    }

    static let tensors = [
        // 128x128 blocks, F32 `_scale_inv` (partial blocks along K); torchao: one 3-D NVFP4 tensor.
        Stacked(name: "model.layers.0.mlp.experts.gate_up_proj.weight", shape: [3, 256, 192],
                scale: "model.layers.0.mlp.experts.gate_up_proj.weight_scale_inv", scaleDType: .f32, scaleShape: [3, 2, 2]),
        // One BF16 scale per expert; N = 96 is not a multiple of 128: torchao keeps it (bf16), the
        // engine layouts write per-expert slices.
        Stacked(name: "model.layers.0.mlp.experts.down_proj.weight", shape: [3, 96, 160],
                scale: "model.layers.0.mlp.experts.down_proj.weight_scale", scaleDType: .bf16, scaleShape: [3]),
    ]

    /// Deterministic bytes (xorshift).
    static func noise(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed | 1
        return (0..<count).map { _ in
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return UInt8(truncatingIfNeeded: state >> 24)
        }
    }

    /// The FP8 file and its bf16 dequantization, computed here.
    static func files() -> (fp8: [UInt8], bf16: [UInt8]) {
        var fp8Planned: [PlannedTensor] = [], fp8Data: [UInt8] = []
        var bf16Planned: [PlannedTensor] = [], bf16Data: [UInt8] = []
        for (i, t) in tensors.enumerated() {
            let (experts, rows, columns) = (t.shape[0], t.shape[1], t.shape[2])
            // Codes of every magnitude but NaN (0x7F / 0xFF).
            let codes = noise(experts * rows * columns, seed: UInt64(i + 1) * 7919).map { $0 & 0x7F == 0x7F ? $0 ^ 0x01 : $0 }
            let scaleCount = t.scaleShape.reduce(1, *)
            // Scales of amax/448 size, with full fp32 mantissas or bf16 ones.
            let scales: [Float] = noise(scaleCount * 4, seed: UInt64(i + 5) * 104_729).withUnsafeBytes { raw in
                (0..<scaleCount).map { s in
                    let value = 1e-4 + Float(raw.loadUnaligned(fromByteOffset: 4 * s, as: UInt32.self) % 1_000_000) * 1e-8
                    return t.scaleDType == .bf16 ? Float(bitPattern: UInt32(FP8InputTests.bf16RoundedBits(value)) << 16) : value
                }
            }
            let scaleBytes: [UInt8] = scales.flatMap { v -> [UInt8] in
                t.scaleDType == .f32 ? withUnsafeBytes(of: v.bitPattern.littleEndian, Array.init)
                    : withUnsafeBytes(of: UInt16(v.bitPattern >> 16).littleEndian, Array.init)
            }
            fp8Planned.append(PlannedTensor(name: t.scale, dtype: t.scaleDType, shape: t.scaleShape))
            fp8Data += scaleBytes
            fp8Planned.append(PlannedTensor(name: t.name, dtype: .f8E4M3, shape: t.shape))
            fp8Data += codes
            let perExpert = scaleCount / experts
            let gridColumns = perExpert == 1 ? 1 : t.scaleShape[2]
            var dequantized: [UInt8] = []
            for e in 0..<experts {
                for r in 0..<rows {
                    for c in 0..<columns {
                        let scale = scales[e * perExpert + (perExpert == 1 ? 0 : (r / 128) * gridColumns + c / 128)]
                        let bits = FP8InputTests.bf16RoundedBits(FP8InputTests.e4m3(codes[(e * rows + r) * columns + c]) * scale)
                        dequantized += [UInt8(bits & 0xFF), UInt8(bits >> 8)]
                    }
                }
            }
            bf16Planned.append(PlannedTensor(name: t.name, dtype: .bf16, shape: t.shape))
            bf16Data += dequantized
        }
        return (SafetensorsLayoutPlan(tensors: fp8Planned, metadata: []).headerBytes + fp8Data,
                SafetensorsLayoutPlan(tensors: bf16Planned, metadata: []).headerBytes + bf16Data)
    }

    @Test("stacked FP8 experts give the bytes of their bf16 dequantization (file and stdin); verify passes against the FP8 original",
          arguments: FP8InputTests.layouts)
    func equalsDequantized(format: CheckpointFormat) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let (fp8, bf16) = Self.files()
            let fp8Path = try dir.write(fp8, to: "fp8.safetensors")
            let bf16Path = try dir.write(bf16, to: "bf16.safetensors")
            let common = ["--format", format.rawValue, "--fp8-block-size", "128x128", "-q"]
            let expectedPath = dir.file("expected.safetensors")
            let r0 = try ToolRunner.run(["quantize", bf16Path, "-o", expectedPath] + common)
            try #require(r0.status == 0, "\(r0)")
            let expected = try FP8InputTests.tensors(inFile: expectedPath)
            // What each layout does with them: quantized (3-D or sliced), and torchao keeps down_proj.
            #expect(expected.values.contains { $0.dtype == .u8 || $0.dtype == .f4 })
            #expect((expected["model.layers.0.mlp.experts.down_proj.weight"] != nil) == (format == .torchao))
            for (kind, input, stdin) in [("file", fp8Path, nil), ("stdin", "-", fp8)] as [(String, String, [UInt8]?)] {
                try FP8InputTests.expectQuantized(input, stdin: stdin, to: dir.file("\(kind).safetensors"), arguments: common, equals: expected, "\(format.rawValue) \(kind)")
            }
            let verify = try ToolRunner.run(["verify", fp8Path, dir.file("file.safetensors")])
            #expect(verify.status == 0, "\(verify)")
            #expect(verify.stdoutText.contains("every block re-quantized with rtn"), "\(verify)")
        }
    }
}
