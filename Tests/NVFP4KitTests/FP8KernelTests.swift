import CNVFP4Kernel
@testable import NVFP4Kit
import Testing

/// The FP8 row kernel (`nvfp4_fp8_e4m3_dequantize_rows`: the rows the codec reads, bf16 or fp32)
/// against a scalar decode written here (E4M3 exactly, one fp32 multiply, one rounding to the
/// target, widened back) and against the dequantizer's stored values (``FP8Dequantizer``), for
/// every compiled vector width, all 256 codes under every scale kind, partial edge blocks and
/// row ranges that start inside a block.
@Suite("FP8 row kernel")
struct FP8KernelTests {
    struct Case: CustomStringConvertible, Sendable {
        var description: String
        var rows: Int
        var columns: Int
        var blockRows: Int
        var blockColumns: Int
        var target: DType
        /// The scale dtype: every scale is a value of it.
        var scaleDType: DType
    }

    static let cases = [
        Case(description: "128x128 blocks, F32 scales, partial edges", rows: 200, columns: 336, blockRows: 128, blockColumns: 128, target: .bf16, scaleDType: .f32),
        Case(description: "128x128 blocks, E8M0 scales", rows: 160, columns: 272, blockRows: 128, blockColumns: 128, target: .bf16, scaleDType: .f8E8M0),
        Case(description: "odd blocks 24x40 (tails inside a block), F32", rows: 50, columns: 104, blockRows: 24, blockColumns: 40, target: .bf16, scaleDType: .f32),
        Case(description: "per channel, BF16 scales", rows: 40, columns: 512, blockRows: 1, blockColumns: 512, target: .bf16, scaleDType: .bf16),
        Case(description: "per channel, F16 scales, f16 target", rows: 40, columns: 512, blockRows: 1, blockColumns: 512, target: .f16, scaleDType: .f16),
        Case(description: "128x128 blocks, F16 scales, f16 target", rows: 130, columns: 256, blockRows: 128, blockColumns: 128, target: .f16, scaleDType: .f16),
        Case(description: "per tensor, F32 scale, f32 target", rows: 16, columns: 272, blockRows: 16, blockColumns: 272, target: .f32, scaleDType: .f32),
    ]

    /// Scales of `dtype`: full fp32 mantissas around amax/448, extremes that overflow or reach
    /// subnormals, powers of two (all E8M0 bytes but NaN among them).
    static func scales(count: Int, dtype: DType) -> [Float] {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        return (0..<count).map { i in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let random = Float(state >> 40) / Float(1 << 24)
            switch dtype {
            case .f8E8M0: return Float(sign: .plus, exponent: [0, 1, 100, 120, 126, 127, 130, 200, 254][i % 9] - 127, significand: 1)
            case .bf16: return Float(bitPattern: UInt32(FP8InputTests.bf16RoundedBits((1e-4 + random * 1e-2) * (i % 2 == 0 ? 1 : -1))) << 16)
            case .f16: return Float(Float16((1e-3 + random) * (i % 5 == 0 ? 100 : 1)))
            default: return [1e-4 + random * 1e-2, 3e36, 1e-40, 1, 0.0021 + random * 1e-6][i % 5]
            }
        }
    }

    /// Every code in every block: code = (row · 37 + column) mod 256.
    static func codes(rows: Int, columns: Int) -> [UInt8] {
        (0..<(rows * columns)).map { UInt8(truncatingIfNeeded: ($0 / columns) * 37 + $0 % columns) }
    }

    /// The scalar decode (E4M3FN: 0x7F and 0xFF are NaN).
    static func expected(_ code: UInt8, scale: Float, target: DType) -> Float {
        if code & 0x7F == 0x7F { return .nan }
        let product = FP8InputTests.e4m3(code) * scale
        switch target {
        case .bf16: return Float(bitPattern: UInt32(FP8InputTests.bf16RoundedBits(product)) << 16)
        case .f16: return Float(Float16(product))
        default: return product
        }
    }

    static func same(_ a: Float, _ b: Float) -> Bool { a.isNaN ? b.isNaN : a.bitPattern == b.bitPattern }

    @Test("every variant equals the scalar decode and the dequantizer's stored values", arguments: cases)
    func rows(_ c: Case) throws {
        let grid = ((c.rows + c.blockRows - 1) / c.blockRows, (c.columns + c.blockColumns - 1) / c.blockColumns)
        let scales = Self.scales(count: grid.0 * grid.1, dtype: c.scaleDType)
        let codes = Self.codes(rows: c.rows, columns: c.columns)
        let scaling = FP8Scaling(blockRows: c.blockRows, blockColumns: c.blockColumns, target: c.target)
        let want = (0..<codes.count).map { i in
            Self.expected(codes[i], scale: scales[(i / c.columns / c.blockRows) * grid.1 + (i % c.columns) / c.blockColumns], target: c.target)
        }
        // The dequantizer's stored values, widened.
        var stored = [UInt8](repeating: 0, count: codes.count * c.target.bitWidth / 8)
        codes.withUnsafeBytes { input in
            stored.withUnsafeMutableBytes {
                _ = FP8Dequantizer.dequantize(codes: input, matrices: 1, rows: c.rows, columns: c.columns, scales: scales, scaling: scaling, into: $0, threads: 1)
            }
        }
        let widened = stored.withUnsafeBytes { DenseMatrix(bytes: $0, dtype: c.target, rows: c.rows, columns: c.columns) }
        for i in 0..<codes.count {
            #expect(Self.same(widened.element(i), want[i]), "\(c) stored, element \(i): code \(codes[i])")
        }
        #expect(Set(codes).count == 256, "all 256 codes")
        var ran = 0
        for variant in 0..<Int(nvfp4_kernel_variant_count()) {
            // Whole matrix, and a range from inside the first block row to the end.
            for first in [0, c.rows / 3] {
                let dtype: DType = c.target == .bf16 ? .bf16 : .f32
                var out = [UInt8](repeating: 0xFF, count: (c.rows - first) * c.columns * dtype.bitWidth / 8)
                let status = codes.withUnsafeBufferPointer { input in
                    out.withUnsafeMutableBytes { o in
                        nvfp4_fp8_e4m3_dequantize_rows_variant(
                            Int32(variant), input.baseAddress! + first * c.columns, c.rows - first, c.columns, scales, first,
                            c.blockRows, c.blockColumns, scaling.kernelTarget, o.baseAddress!)
                    }
                }
                if status != 0 { continue }
                ran += 1
                let got = out.withUnsafeBytes { bytes in
                    (0..<((c.rows - first) * c.columns)).map { DenseMatrix(bytes: bytes, dtype: dtype, rows: c.rows - first, columns: c.columns).element($0) }
                }
                let wrong = (0..<got.count).filter { !Self.same(got[$0], want[first * c.columns + $0]) }
                #expect(wrong.isEmpty, "\(c) variant \(variant) from row \(first): \(wrong.count) differ, first at \(wrong.first ?? 0)")
            }
        }
        #expect(ran >= 2)
        // The public entry over a view of rows, as QuantizeJob reads a chunk.
        try codes.withUnsafeBytes { input in
            let matrix = FP8Matrix(codes: input, rows: c.rows, columns: c.columns, scales: scales, scaling: scaling)
            let range = (c.rows / 2)..<c.rows
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: matrix.codecByteCount(rows: range.count), alignment: 64)
            defer { buffer.deallocate() }
            let view = matrix.rows(1..<c.rows).codecRows((range.lowerBound - 1)..<(range.upperBound - 1), into: buffer)
            try #require(view.dtype == (c.target == .bf16 ? .bf16 : .f32) && view.rows == range.count)
            let wrong = (0..<(range.count * c.columns)).filter { !Self.same(view.element($0), want[range.lowerBound * c.columns + $0]) }
            #expect(wrong.isEmpty, "\(c) codecRows: \(wrong.count) differ")
        }
    }

    @Test("the codec gives the same bytes from codecRows as from the dequantizer's stored rows (bf16 and f16 targets)")
    func codecSameBytes() throws {
        let (rows, columns) = (256, 384)
        let codes = Self.codes(rows: rows, columns: columns).map { $0 & 0x7F == 0x7F ? $0 ^ 1 : $0 }
        let scales = Self.scales(count: 2 * 3, dtype: .f32).map { Float(Float16(min(abs($0), 1) + 1e-3)) }
        for target in [DType.bf16, .f16] {
        let scaling = FP8Scaling(blockRows: 128, blockColumns: 128, target: target)
        try codes.withUnsafeBytes { input in
            let matrix = FP8Matrix(codes: input, rows: rows, columns: columns, scales: scales, scaling: scaling)
            let codec = NVFP4Codec(scale: try TensorScale(amax: matrix.magnitudeMaximum(threads: 1), mode: .twoLevel, numerics: .cuda, tensor: "t"), numerics: .cuda)
            func quantize(fused: Bool) -> ([UInt8], [UInt8], QuantizationError) {
                var packed = [UInt8](repeating: 0, count: rows * columns / 2)
                var scaleBytes = [UInt8](repeating: 0, count: ScaleLayout.swizzled.storedByteCount(rows: rows, blocks: columns / 16))
                var error = QuantizationError()
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: matrix.codecByteCount(rows: rows), alignment: 64)
                defer { buffer.deallocate() }
                let dense = fused ? matrix.codecRows(0..<rows, into: buffer) : matrix.dequantize(0..<rows, into: buffer)
                packed.withUnsafeMutableBytes { p in
                    scaleBytes.withUnsafeMutableBytes { s in codec.quantize(dense, rows: 0..<rows, packed: p, scales: s, layout: .swizzled, error: &error) }
                }
                return (packed, scaleBytes, error)
            }
            let (a, b) = (quantize(fused: false), quantize(fused: true))
            #expect(a.0 == b.0 && a.1 == b.1 && a.2 == b.2, "\(target)")
            #expect(a.0.contains { $0 != 0 })
        }
        }
    }
}
