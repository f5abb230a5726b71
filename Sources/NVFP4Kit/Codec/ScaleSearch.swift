/// How the e4m3 block scale of each 16-element block is chosen.
///
/// Every engine dequantizes NVFP4 as `e2m1 × e4m3 block scale × per-tensor scale`, so any valid
/// scale code gives a loadable file; the method only decides which one.
public enum QuantizationMethod: String, Sendable, CaseIterable {
    /// Round to nearest: `e4m3(blockAmax / 6 / pts)`, bit-exact with torchao (the default).
    case rtn
    /// Error-minimizing: the scale code near the RTN code whose dequantized block has the lowest
    /// (optionally importance-weighted) squared error. See ``ScaleSearch``.
    case mse
    /// Error feedback from the input's second moments (`--statistics`): GPTQ-class, see ``ErrorFeedback``.
    case gptq
}

/// The error-minimizing block-scale search of `--method mse`.
///
/// For each block the candidates are the RTN code `c₀`, every code in `c₀ − radius … c₀ + radius`
/// (clamped to the positive finite codes `0x01…0x7E`, subnormals included) and the "four over six"
/// code `e4m3(blockAmax / 4 / pts)` when it lies outside that window. Under each candidate scale
/// `s` the elements are rounded exactly as the RTN path rounds them, `e2m1(min(|x| · RN(RN(1/pts)/s), 6))`,
/// and the error is measured on the value engines decode, `e2m1 × RN(pts · s)`. The candidate with
/// the lowest error wins; ties keep the earlier candidate and `c₀` comes first, so a block never
/// has a larger error than under RTN (in the search's own `Float` arithmetic) and an all-zero
/// block keeps torchao's bytes.
///
/// Code `0x00` (a zero scale) is never a candidate: it decodes every element to 0, and the
/// smallest subnormal code is never worse because 0 is on the e2m1 grid.
public struct ScaleSearch: Sendable {
    /// ±8 codes (one octave each way) matched an exhaustive search in prior measurements.
    public static let defaultRadius = 8

    /// Codes searched on each side of the RTN code.
    public var radius: Int
    /// Per-input-channel weights (one per column, finite and non-negative) of the block error:
    /// the search minimises `Σ w_k (x_k − x̂_k)²` instead of `Σ (x_k − x̂_k)²`. `nil`: unweighted.
    public var importance: [Float]?

    /// - Parameters:
    ///   - radius: Codes searched on each side of the RTN code (0…126).
    ///   - importance: Per-column weights, or `nil`.
    public init(radius: Int = ScaleSearch.defaultRadius, importance: [Float]? = nil) {
        precondition(radius >= 0 && radius <= 126, "ScaleSearch radius out of range")
        self.radius = radius
        self.importance = importance
    }
}

extension NVFP4Codec {
    /// Quantizes rows of `matrix` with block scales chosen by `search` (see ``ScaleSearch``);
    /// the arguments are those of ``quantize(_:rows:packed:scales:layout:error:)``, whose output
    /// format this keeps. `error` accumulates the unweighted reconstruction error.
    public func quantize(
        _ matrix: DenseMatrix, rows: Range<Int>, packed: UnsafeMutableRawBufferPointer,
        scales: UnsafeMutableRawBufferPointer, layout: ScaleLayout, search: ScaleSearch, error: inout QuantizationError
    ) {
        if let importance = search.importance {
            precondition(importance.count == matrix.columns, "importance needs one weight per column")
        }
        let pts = scale.perTensorScale
        let parameters = ScaleSearchKernel.Parameters(
            twoLevel: pts != nil, cpuDivision: numerics == .cpu, pts: pts ?? 1, rpts: pts.map { 1 / $0 } ?? 1,
            radius: UInt32(search.radius))
        if let importance = search.importance {
            importance.withUnsafeBufferPointer { weights in
                ScaleSearchKernel.quantize(
                    matrix, rows: rows, packed: packed, scales: scales, layout: layout, parameters: parameters,
                    importance: weights.baseAddress, error: &error)
            }
        } else {
            ScaleSearchKernel.quantize(
                matrix, rows: rows, packed: packed, scales: scales, layout: layout, parameters: parameters,
                importance: nil, error: &error)
        }
    }

    /// The (optionally weighted) squared error of one 16-element block under scale `code`, with
    /// the same fp32 operations as the search: the reference its tests compare against.
    public func blockError(_ block: [Float], code: UInt8, weights: [Float]? = nil) -> Float {
        precondition(block.count == NVFP4Codec.blockSize && code & 0x7F != 0x7F && code & 0x80 == 0)
        let s = E4M3.decode(code)
        let (r, f): (Float, Float)
        if let pts = scale.perTensorScale { (r, f) = ((1 / pts) / s, pts * s) } else { (r, f) = (1 / s, s) }
        var sum: Float = 0
        for k in 0..<NVFP4Codec.blockSize {
            let a = block[k].magnitude
            let q = E2M1.values[Int(E2M1.encode(Swift.min(a * r, E2M1.max)))]
            let d = a - q * f
            sum += (weights?[k] ?? 1) * (d * d)
        }
        return sum
    }

    /// The block scale code RTN (torchao) gives a block whose largest magnitude is `amax`.
    public func roundToNearestCode(blockAmax amax: Float) -> UInt8 {
        let v = numerics == .cpu ? amax / 6 : amax * NVFP4Codec.sixReciprocal
        return E4M3.encodeClamped(scale.perTensorScale.map { v / $0 } ?? v)
    }
}

/// The vectorised search behind ``NVFP4Codec/quantize(_:rows:packed:scales:layout:search:error:)``.
///
/// Blocks are taken 16 at a time and transposed, so lane `i` of vector `k` is element `k` of block
/// `i`: each candidate is then evaluated for 16 blocks at once with lane-wise operations and no
/// horizontal sums. The chosen codes are applied with the RTN path's element rounding.
enum ScaleSearchKernel {
    struct Parameters {
        var twoLevel: Bool
        var cpuDivision: Bool
        var pts: Float
        var rpts: Float
        var radius: UInt32
    }

    /// The smallest and largest candidate codes.
    static let lowestCode: UInt32 = 0x01
    static let highestCode: UInt32 = 0x7E

    /// Decodes positive finite e4m3 codes (subnormals included) lane by lane.
    @inline(__always)
    static func decode(_ codes: SIMD16<UInt32>) -> SIMD16<Float> {
        // Normal: rebias the exponent (7 → 127) and place the 3 mantissa bits. Subnormal: code · 2^-9.
        let normal = SIMD16<Float>(bitPattern: (codes &+ 960) &<< 20)
        // Float(code) exactly, as (2^23 + code) − 2^23: the generic integer-to-float SIMD init is a lane loop.
        let subnormal = (SIMD16<Float>(bitPattern: codes | 0x4B00_0000) - 8_388_608) * 0.001953125
        return normal.replacing(with: subnormal, where: codes .< SIMD16<UInt32>(repeating: 8))
    }

    /// e4m3 codes of values already clamped to [2^-6, 448], ties to even (as `E4M3.encodeClampedNormal`).
    @inline(__always)
    static func encodeClampedNormal(_ v: SIMD16<Float>) -> SIMD16<UInt32> {
        let low = SIMD16<Float>(repeating: E4M3.smallestNormal)
        let high = SIMD16<Float>(repeating: E4M3.max)
        var clamped = v.replacing(with: low, where: low .>= v)
        clamped.replace(with: high, where: high .< clamped)
        let bits = clamped.bitPattern
        return (((bits &+ 0x7FFFF &+ ((bits &>> 20) & 1)) &>> 20) &- 960) & 0xFF
    }

    /// Rounds non-negative `y` (already clamped to ≤ 6) onto the e2m1 grid, ties to even: adding
    /// `M` = 2^22, 2^23 or 2^24 (chosen from y's binade) makes ulp(M) the e2m1 step there.
    @inline(__always)
    static func roundE2M1(_ y: SIMD16<Float>) -> (m: SIMD16<UInt32>, t: SIMD16<Float>, value: SIMD16<Float>) {
        // 2^⌊log2 y⌋ (0 below 2^-126), at least 1: `one > e ? one : e` is one `maxps`.
        let e = SIMD16<Float>(bitPattern: y.bitPattern & 0x7F80_0000)
        let one = SIMD16<Float>(repeating: 1)
        let mBits = e.replacing(with: one, where: one .> e).bitPattern &+ 0x0B00_0000
        let m = SIMD16<Float>(bitPattern: mBits)
        let t = y + m
        return (mBits, t, t - m)
    }

    /// `min(y, 6)` as one `minps` per register: `six < y ? six : y`.
    @inline(__always)
    static func clampToSix(_ y: SIMD16<Float>) -> SIMD16<Float> {
        let six = SIMD16<Float>(repeating: E2M1.max)
        return y.replacing(with: six, where: six .< y)
    }

    /// Σ_k w_k (a_k − x̂_k)² of 16 transposed blocks under per-lane reciprocal `r` and factor `f`
    /// (`weighted == false`: w = 1; a constant after inlining).
    @inline(__always)
    static func errors(
        _ magnitudes: UnsafeRawPointer, _ weights: UnsafeRawPointer, weighted: Bool,
        scaling: (reciprocal: SIMD16<Float>, factor: SIMD16<Float>)
    ) -> SIMD16<Float> {
        let (r, f) = scaling
        var sum = SIMD16<Float>()
        for k in 0..<NVFP4Codec.blockSize {
            let a = magnitudes.load(fromByteOffset: k * 64, as: SIMD16<Float>.self)
            let q = roundE2M1(clampToSix(a * r)).value
            let d = a - q * f
            if weighted { sum += weights.load(fromByteOffset: k * 64, as: SIMD16<Float>.self) * (d * d) } else { sum += d * d }
        }
        return sum
    }

    /// Reciprocals and factors of per-lane codes.
    @inline(__always)
    static func scaling(_ codes: SIMD16<UInt32>, _ p: Parameters) -> (reciprocal: SIMD16<Float>, factor: SIMD16<Float>) {
        let s = decode(codes)
        return p.twoLevel ? (p.rpts / s, p.pts * s) : (1 / s, s)
    }

    /// Chooses the codes of 16 transposed blocks.
    ///
    /// Codes below c₀ are tried in decreasing order and the descent stops once, in every lane, the
    /// clipping error of the block maximum alone, `w_max (amax − RN(6·f))²` (w_max: the weight of
    /// the maximum's channel), already reaches the best error: the block error includes that
    /// element's term, which is at least its clipping error, and a smaller code only clips more,
    /// so no skipped code could win (the bound uses monotone roundings, so this holds in `Float` too).
    @inline(__always)
    static func choose(
        _ magnitudes: UnsafeRawPointer, _ weights: UnsafeRawPointer, weighted: Bool, _ p: Parameters
    ) -> SIMD16<UInt32> {
        // The block maxima and, when weighted, the weight of (one of) the elements holding them.
        var amax = magnitudes.load(as: SIMD16<Float>.self)
        var weightAtMaximum = SIMD16<Float>(repeating: 1)
        if weighted { weightAtMaximum = weights.load(as: SIMD16<Float>.self) }
        for k in 1..<NVFP4Codec.blockSize {
            let a = magnitudes.load(fromByteOffset: k * 64, as: SIMD16<Float>.self)
            let larger = a .> amax
            amax = amax.replacing(with: a, where: larger)
            if weighted { weightAtMaximum.replace(with: weights.load(fromByteOffset: k * 64, as: SIMD16<Float>.self), where: larger) }
        }
        let blockValue = p.cpuDivision ? amax / 6 : amax * NVFP4Codec.sixReciprocal
        let rtn = encodeClampedNormal(p.twoLevel ? blockValue / p.pts : blockValue)
        var best = rtn
        var bestError = errors(magnitudes, weights, weighted: weighted, scaling: scaling(rtn, p))
        let low = SIMD16<UInt32>(repeating: lowestCode)
        let high = SIMD16<UInt32>(repeating: highestCode)
        let zero = SIMD16<Float>()
        var k: UInt32 = 1
        while k <= p.radius {
            // Below c₀, saturating at 0x01.
            let down = (rtn &- k).replacing(with: low, where: rtn .< low &+ k)
            let candidate = scaling(down, p)
            let clip = amax - 6 * candidate.factor
            let clipped = clip.replacing(with: zero, where: clip .< zero)
            if all(weightAtMaximum * (clipped * clipped) .>= bestError) { break }
            let e = errors(magnitudes, weights, weighted: weighted, scaling: candidate)
            let better = e .< bestError
            best.replace(with: down, where: better)
            bestError.replace(with: e, where: better)
            k += 1
        }
        // Above c₀, saturating at 0x7E; then "four over six" (the block maximum mapped to 4
        // instead of 6) when it lies outside the window.
        let four = encodeClampedNormal(p.twoLevel ? (amax * 0.25) / p.pts : amax * 0.25)
        let fourOutside = any(four .> rtn &+ p.radius) || any(four &+ p.radius .< rtn)
        k = 1
        while k <= p.radius + (fourOutside ? 1 : 0) {
            let up = k <= p.radius ? (rtn &+ k).replacing(with: high, where: rtn &+ k .> high) : four
            let e = errors(magnitudes, weights, weighted: weighted, scaling: scaling(up, p))
            let better = e .< bestError
            best.replace(with: up, where: better)
            bestError.replace(with: e, where: better)
            k += 1
        }
        return best
    }

    /// Quantizes `rows` of `matrix`; `importance` has `matrix.columns` weights or is `nil`.
    static func quantize(
        _ matrix: DenseMatrix, rows: Range<Int>, packed: UnsafeMutableRawBufferPointer,
        scales: UnsafeMutableRawBufferPointer, layout: ScaleLayout, parameters: Parameters,
        importance: UnsafePointer<Float>?, error: inout QuantizationError
    ) {
        let blockSize = NVFP4Codec.blockSize
        let blocksPerRow = matrix.columns / blockSize
        let totalBlocks = rows.count * blocksPerRow
        guard totalBlocks > 0 else { return }
        precondition(
            rows.lowerBound >= 0 && rows.upperBound <= matrix.rows && packed.count >= totalBlocks * 8
                && scales.count >= (layout == .rowMajor
                    ? rows.upperBound * blocksPerRow
                    : layout.storedByteCount(rows: rows.upperBound, blocks: blocksPerRow)),
            "quantize: output buffers too small")
        // 16 × 16 transposed magnitudes and weights.
        let magnitudes = UnsafeMutableRawPointer.allocate(byteCount: 1024, alignment: 64)
        let weights = UnsafeMutableRawPointer.allocate(byteCount: 1024, alignment: 64)
        defer { magnitudes.deallocate(); weights.deallocate() }
        var lanes = Lanes()
        if let importance {
            run(matrix, firstBlock: rows.lowerBound * blocksPerRow, totalBlocks: totalBlocks, packed: packed.baseAddress!,
                scales: scales, layout: layout, parameters: parameters, importance: importance, weighted: true,
                magnitudes: magnitudes, weights: weights, lanes: &lanes)
        } else {
            run(matrix, firstBlock: rows.lowerBound * blocksPerRow, totalBlocks: totalBlocks, packed: packed.baseAddress!,
                scales: scales, layout: layout, parameters: parameters, importance: nil, weighted: false,
                magnitudes: magnitudes, weights: weights, lanes: &lanes)
        }
        let (signal, squares, maxAbs) = (lanes.signal, lanes.squares, lanes.maxAbs)
        var local = QuantizationError()
        for l in 0..<16 {
            local.signalSquareSum += signal[l]
            local.errorSquareSum += squares[l]
            local.maxAbsoluteError = Swift.max(local.maxAbsoluteError, Double(maxAbs[l]))
        }
        local.count = totalBlocks * blockSize
        error.merge(local)
    }

    /// Error sums: `Float` lanes within a group, `Double` across groups.
    struct Lanes {
        var signal = SIMD16<Double>()
        var squares = SIMD16<Double>()
        var maxAbs = SIMD16<Float>()
    }

    /// The block loop, specialised on `weighted` by inlining at its two call sites.
    @inline(__always)
    static func run(
        _ matrix: DenseMatrix, firstBlock: Int, totalBlocks: Int, packed out: UnsafeMutableRawPointer,
        scales: UnsafeMutableRawBufferPointer, layout: ScaleLayout, parameters: Parameters,
        importance: UnsafePointer<Float>?, weighted: Bool,
        magnitudes transposed: UnsafeMutableRawPointer, weights transposedWeights: UnsafeMutableRawPointer, lanes: inout Lanes
    ) {
        let blockSize = NVFP4Codec.blockSize
        let blocksPerRow = matrix.columns / blockSize
        var maxAbs = lanes.maxAbs
        var g = 0
        while g < totalBlocks {
            let valid = Swift.min(16, totalBlocks - g)
            // Transpose with scalar stores: lane i of magnitudes[k] is |element k| of block g + i
            // (zero past `valid`).
            if valid < 16 { for o in stride(from: 0, to: 1024, by: 4) { transposed.storeBytes(of: 0, toByteOffset: o, as: Float.self) } }
            for i in 0..<valid {
                let v = matrix.block(at: (firstBlock + g + i) * blockSize)
                let a = SIMD16<Float>(bitPattern: v.bitPattern & 0x7FFF_FFFF)
                for k in 0..<blockSize { transposed.storeBytes(of: a[k], toByteOffset: (k * 16 + i) * 4, as: Float.self) }
            }
            if weighted, let importance {
                if valid < 16 { for o in stride(from: 0, to: 1024, by: 4) { transposedWeights.storeBytes(of: 1, toByteOffset: o, as: Float.self) } }
                for i in 0..<valid {
                    let column = (firstBlock + g + i) % blocksPerRow * blockSize
                    for k in 0..<blockSize {
                        transposedWeights.storeBytes(of: importance[column + k], toByteOffset: (k * 16 + i) * 4, as: Float.self)
                    }
                }
            }
            let codes = choose(transposed, transposedWeights, weighted: weighted, parameters)
            let (reciprocals, factors) = scaling(codes, parameters)
            var groupSignal = SIMD16<Float>()
            var groupSquares = SIMD16<Float>()
            for i in 0..<valid {
                let flat = firstBlock + g + i
                let row = flat / blocksPerRow
                let block = flat % blocksPerRow
                scales.storeBytes(
                    of: UInt8(truncatingIfNeeded: codes[i]), toByteOffset: layout.offset(row: row, block: block, blocks: blocksPerRow),
                    as: UInt8.self)
                let x = matrix.block(at: flat * blockSize)
                let bits = x.bitPattern
                let a = SIMD16<Float>(bitPattern: bits & 0x7FFF_FFFF)
                let (mBits, t, q) = roundE2M1(clampToSix(a * SIMD16(repeating: reciprocals[i])))
                // Steps above M, plus 2 codes per binade above [1, 2); bit 3 is x's sign.
                let e2m1 = ((t.bitPattern &- (mBits &- (mBits &>> 22) &+ 298)) & 7) | ((bits &>> 28) & 0x8)
                let nibbles = SIMD16<UInt8>(truncatingIfNeeded: e2m1)
                let bytes = nibbles.evenHalf | (nibbles.oddHalf &<< 4)
                (out + (flat - firstBlock) * 8).storeBytes(of: bytes, as: SIMD8<UInt8>.self)
                let d = a - q * SIMD16(repeating: factors[i])
                groupSignal += a * a
                groupSquares += d * d
                let magnitude = SIMD16<Float>(bitPattern: d.bitPattern & 0x7FFF_FFFF)
                maxAbs.replace(with: magnitude, where: magnitude .> maxAbs)
            }
            for l in 0..<16 {
                lanes.signal[l] += Double(groupSignal[l])
                lanes.squares[l] += Double(groupSquares[l])
            }
            g += valid
        }
        lanes.maxAbs = maxAbs
    }
}
