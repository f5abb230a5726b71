import CNVFP4Kernel

/// What error feedback (`--method gptq`) needs of one linear input: the upper Cholesky factor `U`
/// of the damped inverse second moments, `UᵀU = (H + λI)⁻¹`, with `H = E[x xᵀ]` over calibration
/// tokens, and the per-column weights `diag(H)` that choose block scales.
///
/// As in GPTQ: a channel that never fired (`H_kk = 0`) gets `H_kk = 1`, and `λ` is `damping` times
/// the mean of the diagonal. The factor is computed in fp32 without forming `(H + λI)⁻¹`:
/// with `J` the reversal permutation and `M Mᵀ = J H J` (a lower Cholesky factor),
/// `U = J M⁻¹ J`, since `(J M⁻¹ J)ᵀ (J M⁻¹ J) = J (M Mᵀ)⁻¹ J = H⁻¹`.
///
/// Both are blocked (panels of 128 columns whose bulk is a register-blocked matrix product, C,
/// AVX2+FMA or portable) and spread over `threads`; every element is a chain of fused
/// multiply-adds in a fixed order, so `U` does not depend on the thread count or the CPU.
///
/// Memory: two `K × K` fp32 matrices while it is computed (`8 K²` bytes) plus a `128 × K` panel,
/// one (`4 K²`) kept. Time: `K³/3` multiply-adds (Cholesky and triangular inverse, `K³/6` each).
public struct FeedbackFactor: Sendable {
    /// GPTQ's default: 1 % of the mean diagonal.
    public static let defaultDamping: Float = 0.01

    /// `K`: the input channels.
    public let columns: Int
    /// `U`, row-major `K × K`, upper triangular.
    public let upper: [Float]
    /// `diag(H)` scaled to mean 1 and floored at 10⁻⁶ (``ImportanceStatistics/searchWeights(_:)``).
    public let columnWeights: [Float]

    /// Why second moments cannot be factored.
    public enum Problem: Error, Sendable, Equatable, CustomStringConvertible {
        case wrongSize(expected: Int, actual: Int)
        case nonFinite(row: Int, column: Int)
        case negativeDiagonal(channel: Int)
        case notPositiveDefinite(pivot: Int)

        public var description: String {
            switch self {
            case .wrongSize(let e, let a): return "second moments have \(a) values; expected \(e) (K × K)"
            case .nonFinite(let r, let c): return "second moment (\(r), \(c)) is not finite"
            case .negativeDiagonal(let k): return "second moment (\(k), \(k)) is negative; a mean square cannot be"
            case .notPositiveDefinite(let p):
                return "second moments are not positive definite even after damping (pivot \(p)); they are not the statistics of one input"
            }
        }
    }

    /// Factors the `columns × columns` second moments `h` (row-major; the lower triangle is read)
    /// on up to `threads` threads (the result is the same for any count).
    public init(
        secondMoments h: UnsafeBufferPointer<Float>, columns n: Int, damping: Float = FeedbackFactor.defaultDamping, threads: Int = 1
    ) throws(Problem) {
        guard h.count == n * n else { throw .wrongSize(expected: n * n, actual: h.count) }
        var diagonal = [Float](repeating: 0, count: n)
        for i in 0..<n {
            for j in 0...i where !h[i * n + j].isFinite { throw .nonFinite(row: i, column: j) }
            if h[i * n + i] < 0 { throw .negativeDiagonal(channel: i) }
            diagonal[i] = h[i * n + i] > 0 ? h[i * n + i] : 1
        }
        let mean = diagonal.reduce(0.0) { $0 + Double($1) } / Double(max(1, n))
        let lambda = damping * Float(mean)
        // a = J (H + λI) J, lower triangle.
        var a = [Float](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0...i {
                a[(n - 1 - j) * n + (n - 1 - i)] = i == j ? diagonal[i] + lambda : h[i * n + j]
            }
        }
        let failed = a.withUnsafeMutableBufferPointer { nvfp4_cholesky_lower($0.baseAddress, n, Int32(clamping: threads)) }
        if failed >= 0 { throw .notPositiveDefinite(pivot: n - 1 - failed) }
        var inverse = [Float](repeating: 0, count: n * n)
        a.withUnsafeBufferPointer { m in
            inverse.withUnsafeMutableBufferPointer { nvfp4_invert_lower(m.baseAddress, $0.baseAddress, n, Int32(clamping: threads)) }
        }
        // U = J M⁻¹ J, into `a`'s storage.
        for i in 0..<n {
            for j in 0..<n { a[i * n + j] = inverse[(n - 1 - i) * n + (n - 1 - j)] }
        }
        columns = n
        upper = a
        columnWeights = ImportanceStatistics.searchWeights((0..<n).map { h[$0 * n + $0] })
    }

    /// A factor given directly (tests): `upper` is `U`, `columnWeights` the scale-choice weights.
    public init(upper: [Float], columnWeights: [Float]) {
        precondition(upper.count == columnWeights.count * columnWeights.count)
        columns = columnWeights.count
        self.upper = upper
        self.columnWeights = columnWeights
    }
}
