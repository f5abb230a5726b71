import NVFP4Kit
import Testing

/// Our output against bytes written by torchao 0.18 itself (Fixtures/torchao, made on a CPU and on
/// an H100): every tensor and every metadata string must be identical.
@Suite struct TorchAOBitExactTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var dtype: String
        var mode: ScalingMode
        var numerics: DivisionNumerics
        var testDescription: String { "\(dtype) \(mode.rawValue) \(numerics.rawValue)" }
    }

    static let cases: [Case] = ["bf16", "f32"].flatMap { d in
        ScalingMode.allCases.flatMap { m in DivisionNumerics.allCases.map { Case(dtype: d, mode: m, numerics: $0) } }
    }

    /// Thread counts, write sizes and scale-buffer limits to run every case with: the default;
    /// one-chunk waves (several waves per tensor, so the write-behind pool takes turns) on one
    /// thread and on three; and no scale buffer (every tensor's scales computed again wave by
    /// wave after its packed data), with the default waves and with one-chunk waves.
    static let schedules: [(threads: Int, waveBytes: Int, scaleLimit: Int)] = [
        (QuantizeOptions().threads, QuantizeOptions().waveBytes, QuantizeOptions().scaleBufferLimit), (1, 1, 1 << 30), (3, 1, 1 << 30),
        (QuantizeOptions().threads, QuantizeOptions().waveBytes, 0), (2, 1, 0),
    ]

    @Test(arguments: cases)
    func quantizedTensorsEqualTorchAO(_ c: Case) throws {
        for schedule in Self.schedules {
            try checkQuantizedTensorsEqualTorchAO(c, threads: schedule.threads, waveBytes: schedule.waveBytes, scaleLimit: schedule.scaleLimit)
        }
    }

    func checkQuantizedTensorsEqualTorchAO(_ c: Case, threads: Int, waveBytes: Int, scaleLimit: Int) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let output = scratch.file("out.safetensors")
        var options = QuantizeOptions()
        options.mode = c.mode
        options.numerics = c.numerics
        options.threads = threads
        options.waveBytes = waveBytes
        options.scaleBufferLimit = scaleLimit
        let reader = try SafetensorsReader(path: FixturePaths.torchaoInput(c.dtype))
        let sink = try AtomicFileSink(path: output, replace: false)
        let result = try QuantizeJob.run(reader: reader, sink: sink, options: options)
        try sink.publish()
        #expect(result.tensors.allSatisfy { $0.decision == .quantize })
        #expect(result.tensors.contains { $0.shape[0] > 2 * 128 }, "a tensor spans several one-chunk waves")

        let expectedPath = FixturePaths.torchaoExpected(c.dtype, c.mode, c.numerics)
        let ours = try tensorBytes(output)
        let theirs = try tensorBytes(expectedPath)
        #expect(Set(ours.keys) == Set(theirs.keys))
        for (name, bytes) in theirs {
            #expect(ours[name] == bytes, "tensor \(name) differs from torchao's (threads \(threads), wave \(waveBytes) bytes, scale limit \(scaleLimit))")
        }
        let ourHeader = try SafetensorsReader(path: output).header
        let theirHeader = try SafetensorsReader(path: expectedPath).header
        for t in theirHeader.tensors {
            let mine = try #require(ourHeader.tensor(named: t.name))
            #expect(mine.dtype == t.dtype && mine.shape == t.shape, "\(t.name): \(mine.dtype) \(mine.shape) vs \(t.dtype) \(t.shape)")
        }
        for (key, value) in theirHeader.metadata {
            #expect(ourHeader.metadataValue(key) == value, "metadata \(key) differs from torchao's")
        }
    }

    @Test(arguments: cases)
    func dequantizedTorchAOFileEqualsTorchAODequantize(_ c: Case) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        for (dtype, suffix) in [(DType.bf16, ".dequant-bf16"), (.f32, ".dequant-f32")] {
            let output = scratch.file("dense\(suffix).safetensors")
            let source = try CheckpointSource(path: FixturePaths.torchaoExpected(c.dtype, c.mode, c.numerics))
            let names = try DequantizeJob.run(source: source, sink: try AtomicFileSink(path: output, replace: false), dtype: dtype).dequantized
            #expect(names.count == 20)
            let ours = try tensorBytes(output)
            let theirs = try tensorBytes(FixturePaths.torchaoExpected(c.dtype, c.mode, c.numerics, suffix: suffix))
            #expect(Set(ours.keys) == Set(theirs.keys))
            for (name, bytes) in theirs {
                #expect(ours[name] == bytes, "dequantized \(name) (\(dtype)) differs from torchao's")
            }
        }
    }

    /// CUDA and CPU numerics must really differ on the cases torchao computes differently, or the
    /// `--numerics` switch would be untested.
    @Test func numericsChangeTheBytesWhereTorchAODiffers() throws {
        let cpu = try tensorBytes(FixturePaths.torchaoExpected("bf16", .twoLevel, .cpu))
        let cuda = try tensorBytes(FixturePaths.torchaoExpected("bf16", .twoLevel, .cuda))
        #expect(cpu["cuda_diff._weight_qdata"] != cuda["cuda_diff._weight_qdata"])
        #expect(cpu["cuda_diff._weight_per_tensor_scale"] == [0xDB, 0xB6, 0x8D, 0x3B])
        #expect(cuda["cuda_diff._weight_per_tensor_scale"] == [0xDC, 0xB6, 0x8D, 0x3B])
    }
}
