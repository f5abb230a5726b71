/// The vectorised inner loops of ``NVFP4Codec/quantize(_:rows:packed:scales:layout:error:)``.
///
/// Work is done in groups of 16 blocks (256 elements). Blocks of consecutive rows are contiguous in
/// a row-major matrix and in the packed output, so a chunk of rows is one flat run of blocks; only
/// the scale offsets need the (row, block) pair. For each group:
///
/// 1. The 16 block maxima are found with a pairwise even/odd "transpose-fold" of the groups'
///    vectors (integer max of the magnitudes' bit patterns), which needs no per-block horizontal
///    reduction: about 2–3 vector ops per block.
/// 2. The 16 e4m3 scales, reciprocals and dequantization factors are computed as one `SIMD16<Float>`
///    with the same IEEE fp32 operations, in the same order, as the scalar definition (three
///    vector divisions per group instead of three scalar divisions per block).
/// 3. Each block is multiplied by its reciprocal and rounded to e2m1 without compares: adding a
///    magic number `M` (2^22, 2^23 or 2^24, chosen from the value's binade) makes the FPU round to
///    the e2m1 grid with ties to even; `t − M` is the exact e2m1 value and `bits(t) − bits(M)` plus a
///    binade offset is the code.
/// 4. The error statistics are accumulated lane-wise in `Float` within a group and in `Double`
///    across groups (see ``QuantizationError``).
enum NVFP4Kernel {
    /// Blocks per group.
    static let groupBlocks = 16
    /// Elements per group.
    static let groupElements = 256

    /// Per-call constants of the scale computation.
    struct ScaleParameters {
        /// Two-level scaling (`pts` and `rpts` are used).
        var twoLevel: Bool
        /// CPU numerics: `blockAmax / 6` is a true division.
        var cpuDivision: Bool
        var pts: Float
        var rpts: Float
    }

    /// Lane-wise error sums: `Float` within a group, `Double` across groups.
    struct ErrorLanes {
        var signal = SIMD16<Double>()
        var error = SIMD16<Double>()
        var maxAbs = SIMD16<Float>()

        @inline(__always)
        mutating func flush(signal s: SIMD16<Float>, error e: SIMD16<Float>) {
            for i in 0..<16 {
                signal[i] += Double(s[i])
                error[i] += Double(e[i])
            }
        }
    }

    // MARK: Block maxima

    // Lane-wise maxima for concrete types: a compare and a select, which LLVM turns into one
    // `pmax`. (The same code generic over `SIMD` compiles to a per-lane loop.)
    @_transparent static func maximum(_ a: SIMD8<UInt16>, _ b: SIMD8<UInt16>) -> SIMD8<UInt16> { a.replacing(with: b, where: b .> a) }
    @_transparent static func maximum(_ a: SIMD4<UInt16>, _ b: SIMD4<UInt16>) -> SIMD4<UInt16> { a.replacing(with: b, where: b .> a) }
    @_transparent static func maximum(_ a: SIMD2<UInt16>, _ b: SIMD2<UInt16>) -> SIMD2<UInt16> { a.replacing(with: b, where: b .> a) }
    @_transparent static func maximum(_ a: SIMD8<UInt32>, _ b: SIMD8<UInt32>) -> SIMD8<UInt32> { a.replacing(with: b, where: b .> a) }
    @_transparent static func maximum(_ a: SIMD4<UInt32>, _ b: SIMD4<UInt32>) -> SIMD4<UInt32> { a.replacing(with: b, where: b .> a) }
    @_transparent static func maximum(_ a: SIMD2<UInt32>, _ b: SIMD2<UInt32>) -> SIMD2<UInt32> { a.replacing(with: b, where: b .> a) }

    /// The largest of 16 magnitudes (bit patterns with the sign cleared), by halving.
    @_transparent
    static func horizontalMaximum(_ v: SIMD16<UInt16>) -> UInt16 {
        let a = maximum(v.lowHalf, v.highHalf)
        let b = maximum(a.lowHalf, a.highHalf)
        let c = maximum(b.lowHalf, b.highHalf)
        return Swift.max(c[0], c[1])
    }

    @_transparent
    static func horizontalMaximum(_ v: SIMD16<UInt32>) -> UInt32 {
        let a = maximum(v.lowHalf, v.highHalf)
        let b = maximum(a.lowHalf, a.highHalf)
        let c = maximum(b.lowHalf, b.highHalf)
        return Swift.max(c[0], c[1])
    }

    /// The magnitude bit patterns (as fp32) of the maxima of the 16 blocks at `p`.
    @_transparent
    static func blockMaxima(_ p: UnsafeRawPointer, bf16: Bool, scratch: UnsafeMutableRawPointer) -> SIMD16<UInt32> {
        // Scalar stores and one vector load: inserting at a variable lane is a compare and blend.
        for i in 0..<groupBlocks {
            let value = bf16
                ? UInt32(horizontalMaximum(p.loadUnaligned(fromByteOffset: i * 32, as: SIMD16<UInt16>.self) & 0x7FFF)) &<< 16
                : horizontalMaximum(p.loadUnaligned(fromByteOffset: i * 64, as: SIMD16<UInt32>.self) & 0x7FFF_FFFF)
            scratch.storeBytes(of: value, toByteOffset: i * 4, as: UInt32.self)
        }
        return scratch.load(as: SIMD16<UInt32>.self)
    }

    // MARK: Scales

    /// e4m3 codes, reciprocals `RN(RN(1/pts)/s)` (or `RN(1/s)`) and factors `RN(pts·s)` (or `s`)
    /// of 16 blocks, with torchao's fp32 operations lane by lane.
    @_transparent
    static func blockScales(
        maxima: SIMD16<UInt32>, _ p: ScaleParameters
    ) -> (codes: SIMD16<UInt32>, reciprocals: SIMD16<Float>, factors: SIMD16<Float>) {
        let amax = SIMD16<Float>(bitPattern: maxima)
        let blockValue = p.cpuDivision ? amax / 6 : amax * NVFP4Codec.sixReciprocal
        let v = p.twoLevel ? blockValue / p.pts : blockValue
        // E4M3.encodeClamped: Swift.min(Swift.max(v, 2^-6), 448), then RNE to 3 mantissa bits.
        let low = SIMD16<Float>(repeating: E4M3.smallestNormal)
        let high = SIMD16<Float>(repeating: E4M3.max)
        var clamped = v.replacing(with: low, where: low .>= v)
        clamped.replace(with: high, where: high .< clamped)
        let bits = clamped.bitPattern
        let rounded = (bits &+ 0x7FFFF &+ ((bits &>> 20) & 1)) &>> 20
        let codes = (rounded &- 960) & 0xFF
        // E4M3.decode for the normal codes 0x08…0x7E that a clamped value gives.
        let decoded = SIMD16<Float>(bitPattern: (((codes & 0x7F) &+ 960) &<< 20) | ((codes & 0x80) &<< 24))
        if p.twoLevel {
            return (codes, p.rpts / decoded, p.pts * decoded)
        }
        return (codes, 1 / decoded, decoded)
    }

    // MARK: Elements

    /// Rounds 16 magnitudes `a` (already multiplied by the reciprocal) to e2m1: the codes 0…7
    /// and the exact e2m1 values.
    @_transparent
    static func roundE2M1(_ y: SIMD16<Float>) -> (codes: SIMD16<UInt32>, values: SIMD16<Float>) {
        // torchao clamps to ±6 before the cast; NaN (rejected upstream) stays NaN here.
        // (Vector operands throughout: the SIMD-with-scalar comparisons are generic loops.)
        let six = SIMD16<Float>(repeating: 6)
        let a = y.replacing(with: six, where: y .> six)
        // M = 2^22 for a < 2, 2^23 for a in [2, 4), 2^24 for a in [4, 8): ulp(M) is the e2m1 step,
        // so the fp32 addition rounds onto the e2m1 grid with ties to even.
        let e = a.bitPattern & 0x7F80_0000
        let one = SIMD16<UInt32>(repeating: 0x3F80_0000)
        let mBits = e.replacing(with: one, where: e .< one) &+ 0x0B00_0000
        let m = SIMD16<Float>(bitPattern: mBits)
        let t = a + m
        // Steps above M, plus 2 codes per binade above [1, 2): (mBits >> 22) − 298 is 0, 2 or 4.
        let codes = (t.bitPattern &- (mBits &- (mBits &>> 22) &+ 298)) & 7
        return (codes, t - m)
    }

    /// Quantizes two blocks given as their even and odd elements (fp32 bit patterns, lanes 0–7
    /// from the first block, 8–15 from the second); stores the 16 packed bytes at `out`.
    @_transparent
    static func blockPair(
        evens: SIMD16<UInt32>, odds: SIMD16<UInt32>, reciprocal: SIMD16<Float>, factor: SIMD16<Float>,
        out: UnsafeMutableRawPointer, signal: inout SIMD16<Float>, error: inout SIMD16<Float>, maxAbs: inout SIMD16<Float>
    ) {
        let ae = SIMD16<Float>(bitPattern: evens & 0x7FFF_FFFF)
        let ao = SIMD16<Float>(bitPattern: odds & 0x7FFF_FFFF)
        let (ce, qe) = roundE2M1(ae * reciprocal)
        let (co, qo) = roundE2M1(ao * reciprocal)
        // Even element → low nibble, odd → high nibble; the sign of x (= sign of x·r) is bit 3.
        let bytes = ce | ((evens &>> 28) & 0x08) | (co &<< 4) | ((odds &>> 24) & 0x80)
        out.storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: bytes), as: SIMD16<UInt8>.self)
        // |x − x̂| = | |x| − q·factor |: x̂ has the sign of x.
        let de = ae - qe * factor
        let do_ = ao - qo * factor
        signal += ae * ae
        signal += ao * ao
        error += de * de
        error += do_ * do_
        let me = SIMD16<Float>(bitPattern: de.bitPattern & 0x7FFF_FFFF)
        let mo = SIMD16<Float>(bitPattern: do_.bitPattern & 0x7FFF_FFFF)
        maxAbs = maxAbs.replacing(with: me, where: me .> maxAbs)
        maxAbs = maxAbs.replacing(with: mo, where: mo .> maxAbs)
    }

    /// Blocks `2j` and `2j + 1` of a group as even and odd elements (fp32 bit patterns).
    @_transparent
    static func loadPair(_ p: UnsafeRawPointer, pair j: Int, bf16: Bool) -> (evens: SIMD16<UInt32>, odds: SIMD16<UInt32>) {
        if bf16 {
            // Each 32-bit word holds an even element (low half) and an odd one (high half).
            let w = p.loadUnaligned(fromByteOffset: j * 64, as: SIMD16<UInt32>.self)
            return (w &<< 16, w & 0xFFFF_0000)
        }
        let a = p.loadUnaligned(fromByteOffset: j * 128, as: SIMD8<UInt64>.self)
        let b = p.loadUnaligned(fromByteOffset: j * 128 + 64, as: SIMD8<UInt64>.self)
        return (
            SIMD16(lowHalf: SIMD8<UInt32>(truncatingIfNeeded: a), highHalf: SIMD8<UInt32>(truncatingIfNeeded: b)),
            SIMD16(lowHalf: SIMD8<UInt32>(truncatingIfNeeded: a &>> 32), highHalf: SIMD8<UInt32>(truncatingIfNeeded: b &>> 32)))
    }

    /// Lanes 0–7 from `values[2j]`, 8–15 from `values[2j + 1]`.
    @_transparent
    static func pairBroadcast(_ values: SIMD16<Float>, pair j: Int) -> SIMD16<Float> {
        SIMD16(lowHalf: SIMD8(repeating: values[2 * j]), highHalf: SIMD8(repeating: values[2 * j + 1]))
    }

    /// Quantizes the `valid` (≤ 16) blocks of the group at `p`; the group's first block is flat
    /// block `flat` of the chunk, whose first row is `firstRow`.
    @_transparent
    static func group(
        _ p: UnsafeRawPointer, bf16: Bool, valid: Int, parameters: ScaleParameters,
        packed: UnsafeMutableRawPointer, scales: UnsafeMutableRawPointer, layout: ScaleLayout,
        row: inout Int, column: inout Int, blocksPerRow: Int, lanes: inout ErrorLanes,
        scratch: UnsafeMutableRawPointer
    ) {
        let maxima = blockMaxima(p, bf16: bf16, scratch: scratch)
        let (codes, reciprocals, factors) = blockScales(maxima: maxima, parameters)
        if valid == groupBlocks, layout == .rowMajor, column + groupBlocks <= blocksPerRow {
            scales.storeBytes(
                of: SIMD16<UInt8>(truncatingIfNeeded: codes), toByteOffset: row * blocksPerRow + column, as: SIMD16<UInt8>.self)
            column += groupBlocks
            if column == blocksPerRow { column = 0; row += 1 }
        } else {
            for i in 0..<valid {
                scales.storeBytes(
                    of: UInt8(truncatingIfNeeded: codes[i]),
                    toByteOffset: layout.offset(row: row, block: column, blocks: blocksPerRow), as: UInt8.self)
                column += 1
                if column == blocksPerRow { column = 0; row += 1 }
            }
        }
        var signal = SIMD16<Float>()
        var error = SIMD16<Float>()
        var maxAbs = lanes.maxAbs
        // A partial group is zero-padded to 16 blocks: quantizing the padding is harmless (zero
        // contributions), but its bytes must not be stored past the output.
        for j in 0..<(valid / 2) {
            let (evens, odds) = loadPair(p, pair: j, bf16: bf16)
            blockPair(
                evens: evens, odds: odds, reciprocal: pairBroadcast(reciprocals, pair: j),
                factor: pairBroadcast(factors, pair: j), out: packed + j * 16,
                signal: &signal, error: &error, maxAbs: &maxAbs)
        }
        if valid % 2 == 1 {
            let j = valid / 2
            let (evens, odds) = loadPair(p, pair: j, bf16: bf16)
            var bytes = SIMD16<UInt8>()
            withUnsafeMutableBytes(of: &bytes) { tmp in
                blockPair(
                    evens: evens, odds: odds, reciprocal: pairBroadcast(reciprocals, pair: j),
                    factor: pairBroadcast(factors, pair: j), out: tmp.baseAddress!,
                    signal: &signal, error: &error, maxAbs: &maxAbs)
            }
            packed.storeBytes(of: bytes.lowHalf, toByteOffset: j * 16, as: SIMD8<UInt8>.self)
        }
        lanes.maxAbs = maxAbs
        lanes.flush(signal: signal, error: error)
    }

    /// Quantizes `rows` of `matrix` (see ``NVFP4Codec/quantize(_:rows:packed:scales:layout:error:)``).
    static func quantize(
        _ matrix: DenseMatrix, rows: Range<Int>, packed: UnsafeMutableRawBufferPointer,
        scales: UnsafeMutableRawBufferPointer, layout: ScaleLayout, parameters: ScaleParameters,
        error: inout QuantizationError
    ) {
        let blocksPerRow = matrix.columns / NVFP4Codec.blockSize
        let totalBlocks = rows.count * blocksPerRow
        guard totalBlocks > 0 else { return }
        precondition(
            rows.lowerBound >= 0 && rows.upperBound <= matrix.rows && packed.count >= totalBlocks * 8
                && scales.count >= (layout == .rowMajor
                    ? rows.upperBound * blocksPerRow
                    : layout.storedByteCount(rows: rows.upperBound, blocks: blocksPerRow)),
            "quantize: output buffers too small")
        let source = matrix.bytes.baseAddress!
        let out = packed.baseAddress!
        let scaleBase = scales.baseAddress!
        let firstBlock = rows.lowerBound * blocksPerRow
        var row = rows.lowerBound
        var column = 0
        var lanes = ErrorLanes()
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
        defer { scratch.deallocate() }
        var g = 0
        switch matrix.dtype {
        case .bf16:
            while g + groupBlocks <= totalBlocks {
                group(
                    source + (firstBlock + g) * 32, bf16: true, valid: groupBlocks, parameters: parameters,
                    packed: out + g * 8, scales: scaleBase, layout: layout,
                    row: &row, column: &column, blocksPerRow: blocksPerRow, lanes: &lanes, scratch: scratch)
                g += groupBlocks
            }
        case .f32:
            while g + groupBlocks <= totalBlocks {
                group(
                    source + (firstBlock + g) * 64, bf16: false, valid: groupBlocks, parameters: parameters,
                    packed: out + g * 8, scales: scaleBase, layout: layout,
                    row: &row, column: &column, blocksPerRow: blocksPerRow, lanes: &lanes, scratch: scratch)
                g += groupBlocks
            }
        default:
            break
        }
        if g < totalBlocks {
            // f16 input and the last partial group: widen into a zero-padded fp32 buffer. Zero
            // padding blocks add nothing to the sums and are not stored.
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: groupElements)
            defer { buffer.deallocate() }
            while g < totalBlocks {
                let valid = Swift.min(groupBlocks, totalBlocks - g)
                let base = (firstBlock + g) * NVFP4Codec.blockSize
                for i in 0..<groupElements {
                    buffer[i] = i < valid * NVFP4Codec.blockSize ? matrix.element(base + i) : 0
                }
                group(
                    UnsafeRawPointer(buffer), bf16: false, valid: valid, parameters: parameters,
                    packed: out + g * 8, scales: scaleBase, layout: layout,
                    row: &row, column: &column, blocksPerRow: blocksPerRow, lanes: &lanes, scratch: scratch)
                g += valid
            }
        }
        var local = QuantizationError()
        for i in 0..<16 {
            local.signalSquareSum += lanes.signal[i]
            local.errorSquareSum += lanes.error[i]
            local.maxAbsoluteError = Swift.max(local.maxAbsoluteError, Double(lanes.maxAbs[i]))
        }
        local.count = totalBlocks * NVFP4Codec.blockSize
        error.merge(local)
    }
}
