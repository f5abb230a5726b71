import NVFP4Kit
import Testing

/// Quantizes one row of f32 values; returns (per-tensor scale bits, row-major scales, packed bytes).
private func quantizeRow(
    _ values: [Float], mode: ScalingMode, numerics: DivisionNumerics = .cpu
) throws -> (pts: UInt32?, scales: [UInt8], packed: [UInt8]) {
    let padded = values + [Float](repeating: 0, count: (16 - values.count % 16) % 16)
    var raw = [UInt8]()
    for v in padded { withUnsafeBytes(of: v.bitPattern.littleEndian) { raw.append(contentsOf: $0) } }
    return try raw.withUnsafeBytes { bytes in
        let matrix = DenseMatrix(bytes: bytes, dtype: .f32, rows: 1, columns: padded.count)
        let scale = try TensorScale(amax: matrix.magnitudeMaximum().amax, mode: mode, numerics: numerics, tensor: "t")
        let codec = NVFP4Codec(scale: scale, numerics: numerics)
        var packed = [UInt8](repeating: 0, count: padded.count / 2)
        var scales = [UInt8](repeating: 0, count: padded.count / 16)
        var error = QuantizationError()
        packed.withUnsafeMutableBytes { p in
            scales.withUnsafeMutableBytes { s in
                codec.quantize(matrix, rows: 0..<1, packed: p, scales: s, layout: .rowMajor, error: &error)
            }
        }
        return (scale.perTensorScale?.bitPattern, scales, packed)
    }
}

private func bf16(_ bits: [UInt16]) -> [Float] { bits.map { BFloat16.toFloat($0) } }

/// The scalar test vectors of the reference notes (§6), computed by torchao 0.18.
@Suite struct CodecVectorTests {
    static let case1: [Float] = [6, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, -0.25, -0.0, 0, -6, 0.1, -0.1, 5.9, -5]

    @Test func tiesSingleLevel() throws {
        let r = try quantizeRow(Self.case1, mode: .singleLevel)
        #expect(r.scales == [0x38])
        #expect(r.packed == [0x07, 0x22, 0x44, 0x66, 0x88, 0xF0, 0x80, 0xE7])
    }

    @Test func tiesTwoLevelRoundDownThroughTheGlobalScale() throws {
        let r = try quantizeRow(Self.case1, mode: .twoLevel)
        #expect(r.pts == 0x3B12_4925)
        #expect(r.scales == [0x7E])
        #expect(r.packed == [0x07, 0x21, 0x43, 0x65, 0x88, 0xF0, 0x80, 0xE7])
    }

    @Test(arguments: [
        // (input, expected scale, expected qdata) single-level, cases 3–12 of §6.
        ([Float](repeating: 0, count: 16), UInt8(0x08), [UInt8](repeating: 0, count: 8)),
        ([Float](repeating: -0.0, count: 16), 0x08, [UInt8](repeating: 0x88, count: 8)),
        ([1e-40, -1e-40, 1.4e-45, -1.4e-45], 0x08, [0x80, 0x80, 0, 0, 0, 0, 0, 0]),
        ([0.05, -0.05, 0.01, 0.0234375, 0.0078125, -0.00390625], 0x08, [0xD5, 0x31, 0x81, 0, 0, 0, 0, 0]),
        ([1, -1, 0.5, 0.25, 0.75, -0.3, 0.1, 0.9], 0x23, [0xF7, 0x35, 0xB6, 0x71, 0, 0, 0, 0]),
        ([6.375, 0, 1, 3.1875, -6.375], 0x38, [0x07, 0x52, 0x0F, 0, 0, 0, 0, 0]),
        ([7.125, 0, 1, 3.5625, -7.125], 0x3A, [0x07, 0x52, 0x0F, 0, 0, 0, 0, 0]),
        ([1e30, -1e30, 1, 2688, 2240, 112, 89.6], 0x7E, [0xF7, 0x70, 0x06, 0, 0, 0, 0, 0]),
        ([3000, 2688, -1344, 672, 100], 0x7E, [0x77, 0x3D, 0, 0, 0, 0, 0, 0]),
    ] as [([Float], UInt8, [UInt8])])
    func singleLevelVectors(_ input: [Float], _ scale: UInt8, _ packed: [UInt8]) throws {
        for numerics in DivisionNumerics.allCases {
            let r = try quantizeRow(input, mode: .singleLevel, numerics: numerics)
            #expect(r.scales == [scale])
            #expect(r.packed == packed)
        }
    }

    @Test func bf16TieAtMinusPointThree() throws {
        let values = bf16([1, -1, 0.5, 0.25, 0.75, -0.3, 0.1, 0.9].map { BFloat16.fromFloat($0) })
        let r = try quantizeRow(values, mode: .singleLevel)
        #expect(r.packed == [0xF7, 0x35, 0xC6, 0x71, 0, 0, 0, 0])
        let two = try quantizeRow(values, mode: .twoLevel)
        #expect(two.pts == 0x39C3_0C31)
        #expect(two.packed == [0xF7, 0x35, 0xC6, 0x71, 0, 0, 0, 0])
    }

    @Test func twoLevelSmallValuesAndZeroBlock() throws {
        let six = try quantizeRow([0.05, -0.05, 0.01, 0.0234375, 0.0078125, -0.00390625], mode: .twoLevel)
        #expect(six.pts == 0x379C_09C1)
        #expect(six.packed == [0xF7, 0x52, 0x92, 0, 0, 0, 0, 0])
        let ten = try quantizeRow([1e30, -1e30, 1, 2688, 2240, 112, 89.6], mode: .twoLevel)
        #expect(ten.pts == 0x6B99_DD8E)
        #expect(ten.packed == [0xF7, 0, 0, 0, 0, 0, 0, 0])
        let fourteen = try quantizeRow([Float](repeating: 0, count: 16) + [1, -2, 3, 0.5], mode: .twoLevel)
        #expect(fourteen.pts == 0x3A92_4925)
        #expect(fourteen.scales == [0x08, 0x7E])
        #expect(fourteen.packed == [UInt8](repeating: 0, count: 8) + [0xE4, 0x27, 0, 0, 0, 0, 0, 0])
    }

    /// §6 case 9: the two divisions round differently on CPU and CUDA.
    @Test func case9DependsOnNumerics() throws {
        let input = bf16([0x413A, 0xC068, 0x40D9, 0xBF54, 0x4124, 0x3F5C, 0xC10D, 0x3F2E,
                          0xBF0B, 0x411B, 0xC12A, 0xC113, 0xC11B, 0x40D6, 0xC0F3, 0x4084])
        let cpu = try quantizeRow(input, mode: .twoLevel, numerics: .cpu)
        #expect(cpu.pts == 0x3B8D_B6DB)
        #expect(cpu.packed == [0xC7, 0x96, 0x17, 0x1E, 0x79, 0xEF, 0x5F, 0x4E])
        let cuda = try quantizeRow(input, mode: .twoLevel, numerics: .cuda)
        #expect(cuda.pts == 0x3B8D_B6DC)
        #expect(cuda.packed == [0xC7, 0x96, 0x17, 0x1E, 0x69, 0xEF, 0x5E, 0x4E])
    }

    @Test func degenerateWeightsAreRejected() {
        #expect(throws: WeightError.allZero(tensor: "t")) {
            try TensorScale(amax: 0, mode: .twoLevel, numerics: .cuda, tensor: "t")
        }
        #expect(throws: WeightError.amaxTooSmall(tensor: "t", amax: 1e-42)) {
            try TensorScale(amax: 1e-42, mode: .twoLevel, numerics: .cpu, tensor: "t")
        }
        #expect(throws: Never.self) { try TensorScale(amax: 0, mode: .singleLevel, numerics: .cuda, tensor: "t") }
    }
}

@Suite struct MiniFloatTests {
    /// torchao's `test_fp4_*` tie table: ties go to the even code.
    @Test(arguments: [
        (Float(0.25), UInt8(0)), (0.75, 2), (1.25, 2), (1.75, 4), (2.5, 4), (3.5, 6), (5, 6), (6.1, 7), (100, 7),
        (0.2500001, 1), (0.7499999, 1), (1.2500001, 3), (2.5000002, 5), (5.0000005, 7),
        (-0.25, 8), (-0.0, 8), (0, 0), (-6, 15), (-1e-40, 8), (0.5, 1), (3, 5), (4, 6),
    ])
    func e2m1Rounding(_ value: Float, _ code: UInt8) {
        #expect(E2M1.encode(value) == code)
    }

    @Test func e2m1PackExample() {
        // torchao test_fp4_pack_unpack: [[0,.5,4,-0],[-0,1,-6,3]] → [[0x10,0x86],[0x28,0x5F]].
        let codes = [Float(0), 0.5, 4, -0.0, -0.0, 1, -6, 3].map(E2M1.encode)
        let packed = stride(from: 0, to: 8, by: 2).map { codes[$0] | codes[$0 + 1] << 4 }
        #expect(packed == [0x10, 0x86, 0x28, 0x5F])
    }

    @Test func e4m3MatchesTorchRoundingAtMidpoints() {
        #expect(E4M3.encodeClamped(1.0625) == 0x38)  // tie to 1.0
        #expect(E4M3.encodeClamped(1.1875) == 0x3A)  // tie to 1.25
        #expect(E4M3.encodeClamped(448) == 0x7E)
        #expect(E4M3.encodeClamped(.infinity) == 0x7E)
        #expect(E4M3.encodeClamped(1e-9) == 0x08)
        #expect(E4M3.encodeClamped(0.015625) == 0x08)
        #expect(E4M3.encodeClamped(460) == 0x7E)
        #expect(E4M3.decode(0x7E) == 448)
        #expect(E4M3.decode(0x08) == 0.015625)
        #expect(E4M3.decode(0x01) == 0.001953125)
        #expect(E4M3.decode(0x7F).isNaN && E4M3.decode(0xFF).isNaN)
    }

    /// Every normal e4m3 value and every midpoint between neighbours (±1 ulp) round correctly.
    @Test func e4m3RoundTripsAndMidpointsExhaustively() {
        for code in UInt8(0x08)...UInt8(0x7E) {
            let v = E4M3.decode(code)
            #expect(E4M3.encodeClamped(v) == code)
            guard code < 0x7E else { continue }
            let next = E4M3.decode(code + 1)
            let mid = (v + next) / 2
            let even = code & 1 == 0 ? code : code + 1
            #expect(E4M3.encodeClamped(mid) == even)
            #expect(E4M3.encodeClamped(mid.nextDown) == code)
            #expect(E4M3.encodeClamped(mid.nextUp) == code + 1)
        }
    }

    @Test func bf16Rounding() {
        #expect(BFloat16.fromFloat(1.0) == 0x3F80)
        #expect(BFloat16.fromFloat(Float(bitPattern: 0x3F80_8000)) == 0x3F80)  // tie to even
        #expect(BFloat16.fromFloat(Float(bitPattern: 0x3F81_8000)) == 0x3F82)  // tie to even (up)
        #expect(BFloat16.fromFloat(-0.0) == 0x8000)
        #expect(BFloat16.fromFloat(.nan) & 0x7FC0 == 0x7FC0)
        #expect(BFloat16.toFloat(0x4020) == 2.5)
    }

    /// The codec's swizzled scales hold, at the reference offset of every (row, block), the code
    /// its row-major scales hold at `row * blocks + block`, and zero in the padding; for widths
    /// whose block count is and is not a multiple of 4, rows cut at odd places (so code runs start
    /// at every block column), and all four alignments of a run.
    @Test(arguments: [1, 3, 4, 5, 12, 13, 256, 257])
    func swizzledScalesAreRowMajorScalesMoved(blocks: Int) throws {
        let rows = 300, columns = blocks * 16
        var rng = SystemRandomNumberGenerator()
        let values = (0..<(rows * columns)).map { _ in Float.random(in: -3...3, using: &rng) * Float(1 << Int.random(in: 0...6, using: &rng)) }
        try values.withUnsafeBytes { raw in
            let matrix = DenseMatrix(bytes: raw, dtype: .f32, rows: rows, columns: columns)
            let scale = try TensorScale(amax: values.map(abs).max()!, mode: .twoLevel, numerics: .cuda, tensor: "w")
            let codec = NVFP4Codec(scale: scale, numerics: .cuda)
            var stored: [ScaleLayout: [UInt8]] = [:]
            for layout in [ScaleLayout.rowMajor, .swizzled] {
                var scales = [UInt8](repeating: 0, count: layout.storedByteCount(rows: rows, blocks: blocks))
                var packed = [UInt8](repeating: 0, count: rows * columns / 2)
                var error = QuantizationError()
                // Row ranges cut at odd places, as the parallel chunks and waves cut them.
                for cut in [0..<1, 1..<7, 7..<128, 128..<131, 131..<300] {
                    packed.withUnsafeMutableBytes { p in
                        scales.withUnsafeMutableBytes { s in
                            codec.quantize(matrix, rows: cut, packed: UnsafeMutableRawBufferPointer(rebasing: p[(cut.lowerBound * columns / 2)...]), scales: s, layout: layout, error: &error)
                        }
                    }
                }
                stored[layout] = scales
            }
            let rowMajor = try #require(stored[.rowMajor]), swizzled = try #require(stored[.swizzled])
            var expected = [UInt8](repeating: 0, count: swizzled.count)
            for r in 0..<rows {
                for b in 0..<blocks { expected[ScaleLayout.swizzled.offset(row: r, block: b, blocks: blocks)] = rowMajor[r * blocks + b] }
            }
            #expect(rowMajor.contains { $0 != 0 })
            #expect(swizzled == expected)
        }
    }

    /// The swizzled offsets of the reference formula, checked against a direct construction of
    /// torchao's `to_blocked` for a shape with padding in both dimensions.
    @Test func swizzleMatchesToBlocked() {
        let rows = 200, blocks = 12
        let paddedRows = 256, paddedBlocks = 12
        var seen = Set<Int>()
        for r in 0..<rows {
            for c in 0..<blocks {
                // to_blocked: view(n_row_blocks,128,n_col_blocks,4).permute(0,2,1,3) → (…,4,32,4)
                // .transpose(1,2) → (…,32,4,4): tile (rb, cb), then (r%32, (r%128)/32, c%4).
                let rb = r / 128, cb = c / 4
                let expected = ((rb * (paddedBlocks / 4) + cb) * 32 + r % 32) * 16 + ((r % 128) / 32) * 4 + c % 4
                let offset = ScaleLayout.swizzled.offset(row: r, block: c, blocks: blocks)
                #expect(offset == expected)
                seen.insert(offset)
            }
        }
        #expect(seen.count == rows * blocks)
        #expect(ScaleLayout.swizzled.storedShape(rows: rows, blocks: blocks) == [paddedRows / 4, paddedBlocks * 4])
    }
}
