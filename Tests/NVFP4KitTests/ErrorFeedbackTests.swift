import Glibc
import NVFP4Kit
import Testing

// The error-feedback solver (`--method gptq`) against a plain column-by-column GPTQ written here,
// with its own e4m3/e2m1 rounding and scale search (from the format's definition and docs/quality.md).

/// Seeded normal samples (Box–Muller on an LCG).
struct NormalSource {
    var state: UInt64
    mutating func uniform() -> Float {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return (Float(state >> 40) + 0.5) / Float(1 << 24)
    }
    mutating func next() -> Float {
        let (u, v) = (uniform(), uniform())
        return (-2 * logf(u)).squareRoot() * cosf(2 * .pi * v)
    }
}

enum ReferenceGPTQ {
    static let e2m1: [Float] = [0, 0.5, 1, 1.5, 2, 3, 4, 6]

    /// Nearest e2m1 magnitude code of `y` (0 ≤ y ≤ 6), ties to the even code.
    static func e2m1Code(_ y: Float) -> Int {
        var best = 0
        for c in 1..<8 {
            let d = abs(e2m1[c] - y), bestD = abs(e2m1[best] - y)
            if d < bestD || (d == bestD && c % 2 == 0) { best = c }
        }
        return best
    }

    /// Nearest normal e4m3 code of `v` clamped to [2^-6, 448], ties to the even code.
    static func e4m3Code(_ value: Float) -> UInt8 {
        let v = min(max(value, 0.015625), 448)
        var best: UInt8 = 0x08
        for c in UInt8(0x08)...UInt8(0x7E) {
            let d = abs(IndependentDecode.e4m3(c) - v), bestD = abs(IndependentDecode.e4m3(best) - v)
            if d < bestD || (d == bestD && c % 2 == 0) { best = c }
        }
        return best
    }

    /// Σ w_k (|x_k| − q_k f)² of a block under `code` (the search's fp32 operations).
    static func blockError(_ x: ArraySlice<Float>, _ w: ArraySlice<Float>, code: UInt8, pts: Float) -> Float {
        let s = IndependentDecode.e4m3(code)
        let (r, f) = ((1 / pts) / s, pts * s)
        var sum: Float = 0
        for (a, wk) in zip(x.map(\.magnitude), w) {
            let d = a - e2m1[e2m1Code(min(a * r, 6))] * f
            sum += wk * (d * d)
        }
        return sum
    }

    /// The block code: RTN (CUDA numerics), or the ±radius search with "four over six" (docs/quality.md).
    static func code(_ x: ArraySlice<Float>, _ w: ArraySlice<Float>, pts: Float, radius: Int?) -> UInt8 {
        let amax = x.map(\.magnitude).max()!
        let c0 = e4m3Code((amax * NVFP4Codec.sixReciprocal) / pts)
        guard let radius else { return c0 }
        var best = c0, bestError = blockError(x, w, code: c0, pts: pts)
        func consider(_ c: UInt8) {
            let e = blockError(x, w, code: c, pts: pts)
            if e < bestError { (best, bestError) = (c, e) }
        }
        for k in stride(from: 1, through: radius, by: 1) { consider(UInt8(max(Int(c0) - k, 1))) }
        for k in stride(from: 1, through: radius, by: 1) { consider(UInt8(min(Int(c0) + k, 0x7E))) }
        let four = e4m3Code((amax * 0.25) / pts)
        if Int(four) > Int(c0) + radius || Int(four) + radius < Int(c0) { consider(four) }
        return best
    }

    /// Plain GPTQ, one column at a time in `order` (natural when `nil`), every update applied at
    /// once (each a fused multiply-add), in the weight's own column coordinates: codes `[rows, K/16]` and e2m1 codes (sign in
    /// bit 3) `[rows, K]`. `upFront`: every block's code from the original weights before the loop;
    /// otherwise from the block's current values when its first column is reached.
    static func solve(
        _ w0: [Float], rows: Int, columns k: Int, upper u: [Float], weights: [Float], pts: Float, radius: Int?,
        order: [Int]? = nil, upFront: Bool
    ) -> (codes: [UInt8], nibbles: [UInt8]) {
        var w = w0
        let order = order ?? Array(0..<k)
        var codes = [UInt8](repeating: 0, count: rows * k / 16), nibbles = [UInt8](repeating: 0, count: rows * k)
        for r in 0..<rows {
            if upFront {
                for b in 0..<(k / 16) {
                    let i = r * k + b * 16
                    codes[r * k / 16 + b] = code(w0[i..<(i + 16)], weights[(b * 16)..<(b * 16 + 16)], pts: pts, radius: radius)
                }
            }
            for p in 0..<k {
                let j = order[p], i = r * k + j
                if !upFront && j % 16 == 0 {
                    codes[r * k / 16 + j / 16] = code(w[i..<(i + 16)], weights[j..<(j + 16)], pts: pts, radius: radius)
                }
                let s = IndependentDecode.e4m3(codes[r * k / 16 + j / 16])
                let (rec, f) = ((1 / pts) / s, pts * s)
                let x = w[i]
                let m = e2m1Code(min(x.magnitude * rec, 6))
                nibbles[i] = UInt8(m) | (x.sign == .minus ? 8 : 0)
                let q = (x.sign == .minus ? -e2m1[m] : e2m1[m]) * f
                let e = (x - q) / u[p * k + p]
                for later in (p + 1)..<max(p + 1, k) { w[r * k + order[later]].addProduct(-e, u[p * k + later]) }  // one fused multiply-add
            }
        }
        return (codes, nibbles)
    }
}

@Suite("error feedback (--method gptq)")
struct ErrorFeedbackTests {
    /// `H = XᵀX / T` of correlated samples (channel k mixes k−1), `K` channels.
    static func moments(columns k: Int, samples t: Int = 400, seed: UInt64 = 7) -> [Float] {
        var g = NormalSource(state: seed)
        var h = [Double](repeating: 0, count: k * k)
        for _ in 0..<t {
            var x = [Double](repeating: 0, count: k)
            for c in 0..<k { x[c] = Double(g.next()) * Double(1 + c % 5) + (c > 0 ? 0.8 * x[c - 1] : 0) }
            for a in 0..<k { for b in 0..<k { h[a * k + b] += x[a] * x[b] } }
        }
        return h.map { Float($0 / Double(t)) }
    }

    static func matrix(rows: Int, columns: Int, seed: UInt64) -> [Float] {
        var g = NormalSource(state: seed)
        return (0..<(rows * columns)).map { _ in g.next() * 0.02 }
    }

    /// The factor of ``moments(columns:samples:seed:)`` and a weight of `rows × columns` (seeds: moments, weight).
    static func problem(rows: Int, columns k: Int, seeds: (moments: UInt64, weight: UInt64)) throws -> (factor: FeedbackFactor, w: [Float]) {
        let h = moments(columns: k, seed: seeds.moments)
        let factor = try h.withUnsafeBufferPointer { try FeedbackFactor(secondMoments: $0, columns: k) }
        return (factor, matrix(rows: rows, columns: k, seed: seeds.weight))
    }

    /// Runs the library solver; returns codes `[rows, K/16]` (read back from `layout`) and e2m1 codes.
    static func run(_ w: [Float], rows: Int, columns k: Int, feedback: ErrorFeedback, layout: ScaleLayout) -> (codes: [UInt8], nibbles: [UInt8], codec: NVFP4Codec) {
        let amax = w.map(\.magnitude).max()!
        let codec = NVFP4Codec(scale: try! TensorScale(amax: amax, mode: .twoLevel, numerics: .cuda, tensor: "t"), numerics: .cuda)
        let blocks = k / 16
        var packed = [UInt8](repeating: 0, count: rows * k / 2)
        var scales = [UInt8](repeating: 0, count: layout.storedByteCount(rows: rows, blocks: blocks))
        var error = QuantizationError()
        w.withUnsafeBytes { bytes in
            let m = DenseMatrix(bytes: bytes, dtype: .f32, rows: rows, columns: k)
            packed.withUnsafeMutableBytes { p in
                scales.withUnsafeMutableBytes { s in codec.quantize(m, rows: 0..<rows, packed: p, scales: s, layout: layout, feedback: feedback, error: &error) }
            }
        }
        let codes = (0..<rows).flatMap { r in
            (0..<blocks).map { b in scales[layout == .swizzled ? IndependentDecode.swizzledOffset(row: r, block: b, blocks: blocks) : r * blocks + b] }
        }
        let nibbles = packed.flatMap { [$0 & 0x0F, $0 >> 4] }
        #expect(error.count == rows * k)
        return (codes, nibbles, codec)
    }

    @Test("the factor is upper triangular with UᵀU = (H + λI)⁻¹; a dead channel is allowed; bad moments are errors")
    func factor() throws {
        let k = 48
        var h = Self.moments(columns: k)
        for c in 0..<k { h[5 * k + c] = 0; h[c * k + 5] = 0 }  // channel 5 never fired
        let f = try h.withUnsafeBufferPointer { try FeedbackFactor(secondMoments: $0, columns: k) }
        let diagonal = (0..<k).map { h[$0 * k + $0] > 0 ? Double(h[$0 * k + $0]) : 1 }
        let lambda = 0.01 * diagonal.reduce(0, +) / Double(k)
        for i in 0..<k { for j in 0..<i { #expect(f.upper[i * k + j] == 0) } }
        // (H' + λI) · UᵀU ≈ I, with H' the moments whose dead diagonal is 1.
        var worst = 0.0
        for i in 0..<k {
            for j in 0..<k {
                var s = 0.0
                for m in 0..<k {
                    let hm = i == m ? diagonal[i] + lambda : Double(h[i * k + m])
                    var inv = 0.0
                    for l in 0...min(m, j) { inv += Double(f.upper[l * k + m]) * Double(f.upper[l * k + j]) }
                    s += hm * inv
                }
                worst = max(worst, abs(s - (i == j ? 1 : 0)))
            }
        }
        #expect(worst < 2e-3, "max |(H+λI)UᵀU − I| = \(worst)")
        #expect(f.columnWeights.count == k && f.columnWeights[5] == Float(1e-6))

        let indefinite: [Float] = [1, 2, 2, 1]
        #expect(throws: FeedbackFactor.Problem.notPositiveDefinite(pivot: 0)) {
            try indefinite.withUnsafeBufferPointer { try FeedbackFactor(secondMoments: $0, columns: 2) }
        }
        let negative: [Float] = [1, 0, 0, -1]
        #expect(throws: FeedbackFactor.Problem.negativeDiagonal(channel: 1)) {
            try negative.withUnsafeBufferPointer { try FeedbackFactor(secondMoments: $0, columns: 2) }
        }
        let nan: [Float] = [1, 0, .nan, 1]
        #expect(throws: FeedbackFactor.Problem.nonFinite(row: 1, column: 0)) {
            try nan.withUnsafeBufferPointer { try FeedbackFactor(secondMoments: $0, columns: 2) }
        }
    }

    /// (scale search?, timing, column order) combinations the solver supports.
    static let variants: [(search: Bool, timing: ErrorFeedback.ScaleTiming, order: FeedbackFactor.ColumnOrder)] = [
        (true, .whenReached, .natural), (false, .whenReached, .natural),
        (true, .upFront, .natural), (false, .upFront, .natural),
        (true, .upFront, .descendingMoments), (false, .upFront, .descendingMoments),
    ]

    @Test("equals plain column-by-column GPTQ bit for bit (lazy blocks, scale choices, timings, orders, both layouts)",
          arguments: [(5, 288), (3, 64), (2, 144), (13, 400)], 0..<6)
    func exact(shape: (rows: Int, columns: Int), variant: Int) throws {
        let (n, k) = shape
        let (search, timing, order) = Self.variants[variant]
        let h = Self.moments(columns: k, seed: UInt64(k))
        let factor = try h.withUnsafeBufferPointer { try FeedbackFactor(secondMoments: $0, columns: k, order: order) }
        if order == .descendingMoments {
            #expect(factor.order != Array(0..<k))
            #expect(zip(factor.order, factor.order.dropFirst()).allSatisfy { h[$0 * k + $0] >= h[$1 * k + $1] })
        }
        let w = Self.matrix(rows: n, columns: k, seed: UInt64(n * 1000 + k))
        let feedback = ErrorFeedback(factor: factor, scaleChoice: search ? .search(radius: 8) : .roundToNearest, timing: timing)
        for layout in [ScaleLayout.rowMajor, .swizzled] {
            let got = Self.run(w, rows: n, columns: k, feedback: feedback, layout: layout)
            let expected = ReferenceGPTQ.solve(
                w, rows: n, columns: k, upper: factor.upper, weights: factor.columnWeights,
                pts: got.codec.scale.perTensorScale!, radius: search ? 8 : nil, order: factor.order, upFront: timing == .upFront)
            #expect(got.codes == expected.codes, "\(layout)")
            #expect(got.nibbles == expected.nibbles, "\(layout)")
        }
    }

    @Test("with H = I there is no feedback: RTN's bytes (and --method mse's with the search)")
    func identityIsRTN() throws {
        let (n, k) = (150, 96)
        let identity = (0..<(k * k)).map { $0 % (k + 1) == 0 ? Float(1) : 0 }
        let factor = try identity.withUnsafeBufferPointer { try FeedbackFactor(secondMoments: $0, columns: k) }
        let w = Self.matrix(rows: n, columns: k, seed: 3)
        let choices = [(ErrorFeedback.ScaleChoice.roundToNearest, ScaleSearch?.none), (.search(radius: 8), ScaleSearch())]
        for ((choice, search), timing) in choices.flatMap({ c in ErrorFeedback.ScaleTiming.allCases.map { (c, $0) } }) {
            let got = Self.run(w, rows: n, columns: k, feedback: ErrorFeedback(factor: factor, scaleChoice: choice, timing: timing), layout: .swizzled)
            var packed = [UInt8](repeating: 0, count: n * k / 2)
            var scales = [UInt8](repeating: 0, count: ScaleLayout.swizzled.storedByteCount(rows: n, blocks: k / 16))
            var error = QuantizationError()
            w.withUnsafeBytes { bytes in
                let m = DenseMatrix(bytes: bytes, dtype: .f32, rows: n, columns: k)
                packed.withUnsafeMutableBytes { p in
                    scales.withUnsafeMutableBytes { s in
                        if let search {
                            got.codec.quantize(m, rows: 0..<n, packed: p, scales: s, layout: .swizzled, search: search, error: &error)
                        } else {
                            got.codec.quantize(m, rows: 0..<n, packed: p, scales: s, layout: .swizzled, error: &error)
                        }
                    }
                }
            }
            #expect(got.nibbles == packed.flatMap { [$0 & 0x0F, $0 >> 4] }, "\(choice) \(timing)")
            let blocks = k / 16
            #expect(got.codes == (0..<n).flatMap { r in (0..<blocks).map { scales[IndependentDecode.swizzledOffset(row: r, block: $0, blocks: blocks)] } })
        }
    }

    @Test("feedback lowers the output error tr(ΔW H ΔWᵀ) below RTN's and the weighted search's")
    func lowersOutputError() throws {
        let (n, k) = (64, 128)
        let h = Self.moments(columns: k, seed: 11)
        let factor = try h.withUnsafeBufferPointer { try FeedbackFactor(secondMoments: $0, columns: k) }
        let w = Self.matrix(rows: n, columns: k, seed: 5)
        func outputError(_ codes: [UInt8], _ nibbles: [UInt8], pts: Float) -> Double {
            var total = 0.0
            for r in 0..<n {
                let d = (0..<k).map { c -> Double in
                    let q = IndependentDecode.e2m1[Int(nibbles[r * k + c])] * (pts * IndependentDecode.e4m3(codes[r * k / 16 + c / 16]))
                    return Double(w[r * k + c]) - Double(q)
                }
                for a in 0..<k { for b in 0..<k { total += d[a] * Double(h[a * k + b]) * d[b] } }
            }
            return total
        }
        let gptq = Self.run(w, rows: n, columns: k, feedback: ErrorFeedback(factor: factor), layout: .rowMajor)
        let pts = gptq.codec.scale.perTensorScale!
        let diagonalOnly = (0..<(k * k)).map { $0 % (k + 1) == 0 ? h[$0] : 0 }
        let plainFactor = try diagonalOnly.withUnsafeBufferPointer { try FeedbackFactor(secondMoments: $0, columns: k) }
        let rtn = Self.run(w, rows: n, columns: k, feedback: ErrorFeedback(factor: plainFactor, scaleChoice: .roundToNearest), layout: .rowMajor)
        let gptqError = outputError(gptq.codes, gptq.nibbles, pts: pts), rtnError = outputError(rtn.codes, rtn.nibbles, pts: pts)
        #expect(gptqError < 0.8 * rtnError, "gptq \(gptqError) vs rtn \(rtnError)")
    }
}
