import CNVFP4Kernel
import NVFP4Kit
import Testing

// The C kernels of `--method gptq` (nvfp4_feedback.c, nvfp4_factor.c) against plain loops
// written here, and their copies against each other: the portable copy (fmaf), the CPU's
// (AVX2+FMA where present) and every thread count give the same bytes.

/// Runs `body` with the portable copy forced (other tests running meanwhile get the same results, slower).
func withPortableFeedbackKernels<T>(_ body: () throws -> T) rethrows -> T {
    let previous = nvfp4_feedback_force_portable(1)
    defer { nvfp4_feedback_force_portable(previous) }
    return try body()
}

@Suite("error feedback kernels", .serialized)
struct ErrorFeedbackKernelTests {
    static func values(_ count: Int, seed: UInt64) -> [Float] {
        var g = NormalSource(state: seed)
        return (0..<count).map { _ in g.next() }
    }

    /// `nvfp4_feedback_subtract` on `w` (rows × stride) with `e` (rows × eStride), `u` (inner × uStride).
    static func subtract(_ w: [Float], _ e: [Float], _ u: [Float], strides: (w: Int, e: Int, u: Int), rows: Int, inner: Int, columns: Int) -> [Float] {
        var out = w
        out.withUnsafeMutableBufferPointer { o in
            e.withUnsafeBufferPointer { eb in
                u.withUnsafeBufferPointer { ub in
                    nvfp4_feedback_subtract(o.baseAddress!, strides.w, eb.baseAddress!, strides.e, ub.baseAddress!, strides.u, rows, inner, columns)
                }
            }
        }
        return out
    }

    @Test("the block update is one fused multiply-add per update, in increasing k, on every tile edge",
          arguments: [(1, 1, 1), (5, 1, 15), (6, 2, 16), (7, 3, 17), (13, 128, 40), (12, 300, 300), (128, 128, 513)])
    func subtractIsPlainFMA(shape: (rows: Int, inner: Int, columns: Int)) {
        let (rows, inner, columns) = shape
        let strides = (w: columns + 3, e: inner + 5, u: columns + 7)
        let w = Self.values(rows * strides.w, seed: 1), e = Self.values(rows * strides.e, seed: 2), u = Self.values(inner * strides.u, seed: 3)
        var expected = w
        for r in 0..<rows {
            for k in 0..<inner {
                for c in 0..<columns { expected[r * strides.w + c].addProduct(-e[r * strides.e + k], u[k * strides.u + c]) }
            }
        }
        let got = Self.subtract(w, e, u, strides: strides, rows: rows, inner: inner, columns: columns)
        let portable = withPortableFeedbackKernels { Self.subtract(w, e, u, strides: strides, rows: rows, inner: inner, columns: columns) }
        #expect(got.map(\.bitPattern) == expected.map(\.bitPattern), "\(String(cString: nvfp4_feedback_isa()))")
        #expect(portable.map(\.bitPattern) == expected.map(\.bitPattern), "portable")
    }

    @Test("the blocked factor is accurate past one panel and the same bytes for any thread count and copy")
    func blockedFactor() throws {
        let k = 300  // three panels of 128, the last partial
        let h = ErrorFeedbackTests.moments(columns: k, samples: 600, seed: 21)
        func factor(threads: Int) throws -> FeedbackFactor {
            try h.withUnsafeBufferPointer { try FeedbackFactor(secondMoments: $0, columns: k, threads: threads) }
        }
        let one = try factor(threads: 1)
        for threads in [2, 3] { #expect(try factor(threads: threads).upper.map(\.bitPattern) == one.upper.map(\.bitPattern), "\(threads) threads") }
        let portable = try withPortableFeedbackKernels { try factor(threads: 2) }
        #expect(portable.upper.map(\.bitPattern) == one.upper.map(\.bitPattern), "portable")
        for i in 0..<k { for j in 0..<i { #expect(one.upper[i * k + j] == 0) } }
        // (H + λI) · UᵀU ≈ I on every 7th row.
        let lambda = 0.01 * (0..<k).map { Double(h[$0 * k + $0]) }.reduce(0, +) / Double(k)
        var inverse = [Double](repeating: 0, count: k * k)  // UᵀU
        for l in 0..<k {
            for m in l..<k where one.upper[l * k + m] != 0 {
                let a = Double(one.upper[l * k + m])
                for j in l..<k { inverse[m * k + j] += a * Double(one.upper[l * k + j]) }
            }
        }
        var worst = 0.0
        for i in stride(from: 0, to: k, by: 7) {
            for j in 0..<k {
                var s = 0.0
                for m in 0..<k { s += (Double(h[i * k + m]) + (i == m ? lambda : 0)) * inverse[m * k + j] }
                worst = max(worst, abs(s - (i == j ? 1 : 0)))
            }
        }
        #expect(worst < 2e-3, "max |(H+λI)UᵀU − I| = \(worst)")
    }

    @Test("a solve gives the same bytes with the portable copy")
    func solvePortable() throws {
        let (n, k) = (20, 272)
        let (factor, w) = try ErrorFeedbackTests.problem(rows: n, columns: k, seeds: (moments: 4, weight: 9))
        let feedback = ErrorFeedback(factor: factor)
        let native = ErrorFeedbackTests.run(w, rows: n, columns: k, feedback: feedback, layout: .rowMajor)
        let portable = withPortableFeedbackKernels { ErrorFeedbackTests.run(w, rows: n, columns: k, feedback: feedback, layout: .rowMajor) }
        #expect(native.codes == portable.codes)
        #expect(native.nibbles == portable.nibbles)
    }
}
