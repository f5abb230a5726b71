import NVFP4Kit
import Testing

/// `verify`'s vectorised comparison against a plain per-element reference, and against the error
/// the quantizer recorded for the same file.
@Suite struct VerifyKernelTests {
    static let cases: [(dtype: String, mode: ScalingMode)] = ["bf16", "f32"].flatMap { d in ScalingMode.allCases.map { (d, $0) } }

    /// Dequantizes element by element (NVFP4Matrix.dequantize) and accumulates in Double.
    static func reference(_ weight: QuantizedModule, original: SafetensorsReader, quantized: CheckpointSource) throws -> QuantizationError {
        let source = try #require(original.header.tensor(named: weight.originalName))
        let pts = weight.perTensorScales(in: quantized)?.first
        var error = QuantizationError()
        try quantized.withBytes(of: try #require(weight.blockScales)) { scales in
            try quantized.withBytes(of: weight.packed) { packed in
                try original.withBytes(of: source) { bytes in
                    let matrix = DenseMatrix(bytes: bytes, dtype: source.dtype, rows: weight.rows, columns: weight.columns)
                    weight.matrix.dequantize(packed: packed, scaleBytes: scales, perTensorScale: pts, rows: 0..<weight.rows) { row, values in
                        for (i, v) in values.enumerated() { error.add(original: matrix.element(row * weight.columns + i), reconstructed: v) }
                    }
                }
            }
        }
        return error
    }

    /// The kernel squares and sums 16 elements per lane in fp32 before adding a group into fp64,
    /// the reference works in fp64 throughout: they agree to a few fp32 ulps, not bit for bit.
    static func close(_ a: Double, _ b: Double) -> Bool { abs(a - b) <= 2e-6 * max(abs(a), abs(b)) + 1e-30 }

    @Test("verify's error equals the per-element reference on torchao's own files", arguments: cases)
    func matchesReferenceOnTorchAOFiles(_ c: (dtype: String, mode: ScalingMode)) throws {
        let originalPath = FixturePaths.torchaoInput(c.dtype)
        let quantizedPath = FixturePaths.torchaoExpected(c.dtype, c.mode, .cuda)
        let original = try SafetensorsReader.randomAccess(path: originalPath)
        let quantized = try CheckpointSource(path: quantizedPath)
        let report = try VerifyJob.run(original: try CheckpointSource(singleFile: original, path: originalPath), quantized: quantized, tolerance: 1, threads: 2)
        let weights = CheckpointModel(source: quantized).modules
        #expect(weights.count >= 20)
        for weight in weights {
            let measured = try #require(report.tensors.first { $0.name == weight.originalName }?.error)
            let expected = try Self.reference(weight, original: original, quantized: quantized)
            #expect(measured.count == expected.count)
            #expect(Self.close(measured.signalSquareSum, expected.signalSquareSum), "\(weight.originalName) signal")
            #expect(Self.close(measured.errorSquareSum, expected.errorSquareSum), "\(weight.originalName) error \(measured.errorSquareSum) vs \(expected.errorSquareSum)")
            #expect(Self.close(measured.maxAbsoluteError, expected.maxAbsoluteError), "\(weight.originalName) max")
        }
    }

    @Test("verify reproduces the quantizer's error sums exactly, for any thread count", arguments: cases)
    func reproducesTheQuantizersSums(_ c: (dtype: String, mode: ScalingMode)) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let output = scratch.file("q.safetensors")
        var options = QuantizeOptions()
        options.mode = c.mode
        let sink = try AtomicFileSink(path: output, replace: false)
        let result = try QuantizeJob.run(reader: try SafetensorsReader(path: FixturePaths.torchaoInput(c.dtype)), sink: sink, options: options)
        try sink.publish()
        for threads in [1, 3] {
            let report = try VerifyJob.run(
                original: try CheckpointSource(path: FixturePaths.torchaoInput(c.dtype)),
                quantized: try CheckpointSource(path: output), tolerance: 1, threads: threads)
            for t in result.tensors {
                let recorded = try #require(t.error)
                let measured = try #require(report.tensors.first { $0.name == t.name }?.error)
                #expect(measured.signalSquareSum == recorded.signalSquareSum, "\(t.name)")
                #expect(measured.errorSquareSum == recorded.errorSquareSum, "\(t.name)")
                #expect(measured.maxAbsoluteError == recorded.maxAbsoluteError, "\(t.name)")
                #expect(measured.count == recorded.count)
            }
        }
    }

    /// A 640×64 bf16 weight whose values spread over ~80 binades, so that the order of additions
    /// shows in the last bits of the sums.
    static func wideRangeCheckpoint(seed: UInt64) -> [UInt8] {
        var random = SeededRandom(seed: seed)
        let (rows, columns) = (640, 64)
        var data: [UInt8] = []
        for _ in 0..<(rows * columns) {
            let r = random.next()
            let magnitude = Float(sign: r & 1 == 0 ? .plus : .minus, exponent: Int(r >> 8 & 63) - 40, significand: 1 + Float(r >> 40 & 0xFFFF) / 65536)
            let bits = UInt16(magnitude.bitPattern >> 16)
            data += [UInt8(bits & 0xFF), UInt8(bits >> 8)]
        }
        let plan = SafetensorsLayoutPlan(tensors: [PlannedTensor(name: "layer.weight", dtype: .bf16, shape: [rows, columns])], metadata: [])
        return plan.headerBytes + data
    }

    /// Several waves of several chunks each (and scales recomputed per wave): the quantizer must
    /// still merge chunk by chunk, as verify does, or the last bits of the sums drift.
    @Test("verify reproduces the quantizer's sums when a tensor spans several multi-chunk waves", arguments: [1 << 30, 0])
    func reproducesSumsAcrossWaves(scaleLimit: Int) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        for seed in UInt64(1)...8 {
            let input = scratch.file("in\(seed).safetensors")
            let bytes = Self.wideRangeCheckpoint(seed: seed)
            try writeWholeFile(input, bytes)
            let output = scratch.file("q\(seed).safetensors")
            var options = QuantizeOptions()
            options.waveBytes = 8192  // 64 columns: 32 packed bytes a row, 256-row waves of two chunks
            options.scaleBufferLimit = scaleLimit
            let sink = try AtomicFileSink(path: output, replace: false)
            let result = try QuantizeJob.run(reader: try SafetensorsReader(path: input), sink: sink, options: options)
            try sink.publish()
            let report = try VerifyJob.run(
                original: try CheckpointSource(path: input), quantized: try CheckpointSource(path: output),
                tolerance: 1e9, threads: 1)
            let recorded = try #require(result.tensors.first?.error)
            let measured = try #require(report.tensors.first?.error)
            #expect(measured.signalSquareSum == recorded.signalSquareSum, "seed \(seed)")
            #expect(measured.errorSquareSum == recorded.errorSquareSum, "seed \(seed)")
        }
    }
}
