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
    /// The order `--method gptq` uses (docs/quality.md, "Error feedback", has the measurements).
    public static let defaultOrder: ColumnOrder = .descendingMoments

    /// `K`: the input channels.
    public let columns: Int
    /// The order columns are quantized in: position `p` holds column `order[p]`. `U` is the
    /// factor of the moments in this order (``ColumnOrder``).
    public let order: [Int]
    /// Whether ``order`` is column 0, 1, 2, … (set once, where the order is made).
    public let isNaturalOrder: Bool
    /// `U`, row-major `K × K`, upper triangular, of the moments permuted to ``order``.
    public let upper: [Float]
    /// `diag(H)` scaled to mean 1 and floored at 10⁻⁶ (``ImportanceStatistics/searchWeights(_:)``).
    public let columnWeights: [Float]

    /// The order in which error feedback quantizes a weight's columns.
    public enum ColumnOrder: String, Sendable, CaseIterable {
        /// Column 0 first.
        case natural
        /// Largest `H_kk` first (GPTQ's "act-order"): the channels that carry the most signal are
        /// quantized while the most columns remain to absorb their error. Stable: equal moments
        /// keep their column order.
        case descendingMoments
    }

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
    /// in column order `columnOrder`, on up to `threads` threads (the result is the same for any count).
    public init(
        secondMoments h: UnsafeBufferPointer<Float>, columns n: Int, damping: Float = FeedbackFactor.defaultDamping,
        order columnOrder: ColumnOrder = .natural, threads: Int = 1
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
        let order = columnOrder == .natural ? Array(0..<n) : (0..<n).sorted { (diagonal[$0], $1) > (diagonal[$1], $0) }
        // a = J P (H + λI) Pᵀ J, lower triangle, with P the column order (H's lower triangle read).
        var a = [Float](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0...i {
                let (oi, oj) = (order[i], order[j])
                a[(n - 1 - j) * n + (n - 1 - i)] = i == j ? diagonal[oi] + lambda : h[max(oi, oj) * n + min(oi, oj)]
            }
        }
        let failed = a.withUnsafeMutableBufferPointer { nvfp4_cholesky_lower($0.baseAddress, n, Int32(clamping: threads)) }
        if failed >= 0 { throw .notPositiveDefinite(pivot: order[n - 1 - failed]) }
        var inverse = [Float](repeating: 0, count: n * n)
        a.withUnsafeBufferPointer { m in
            inverse.withUnsafeMutableBufferPointer { nvfp4_invert_lower(m.baseAddress, $0.baseAddress, n, Int32(clamping: threads)) }
        }
        // U = J M⁻¹ J, into `a`'s storage.
        for i in 0..<n {
            for j in 0..<n { a[i * n + j] = inverse[(n - 1 - i) * n + (n - 1 - j)] }
        }
        columns = n
        self.order = order
        isNaturalOrder = columnOrder == .natural || order.indices.allSatisfy { order[$0] == $0 }
        upper = a
        columnWeights = ImportanceStatistics.searchWeights((0..<n).map { h[$0 * n + $0] })
    }

    /// A factor given directly (tests): `upper` is `U` of the moments in `order` (natural when
    /// `nil`), `columnWeights` the scale-choice weights in column order.
    public init(upper: [Float], columnWeights: [Float], order: [Int]? = nil) {
        precondition(upper.count == columnWeights.count * columnWeights.count)
        columns = columnWeights.count
        let permutation = order ?? Array(0..<columns)
        precondition(permutation.sorted() == Array(0..<columns), "order must be a permutation of the columns")
        self.order = permutation
        isNaturalOrder = permutation.indices.allSatisfy { permutation[$0] == $0 }
        self.upper = upper
        self.columnWeights = columnWeights
    }
}
