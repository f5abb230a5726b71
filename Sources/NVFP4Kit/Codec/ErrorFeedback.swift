import CNVFP4Kernel

/// GPTQ-class error feedback on NVFP4 (`--method gptq`).
///
/// Each row of a weight is quantized column by column, in the factor's column order
/// (``FeedbackFactor/order``); the error of the column at position `p`, divided by `U_pp`, is
/// pushed onto the columns not yet quantized through row `p` of the factor `U`, so that later
/// columns absorb what earlier ones lost, weighted by the input's second moments. The per-tensor
/// scale is fixed before (the plan's, shared by a fused group); a 16-element block's e4m3 scale is
/// chosen by ``ScaleChoice`` either up front from the original weights or when the block's first
/// column is reached (``ScaleTiming``); every element is then rounded with RTN's own rule,
/// `e2m1(min(|x| · RN(RN(1/pts)/s), 6))`, under its block's scale. The output has the layout,
/// dtypes and metadata of RTN; only codes and nibbles differ.
///
/// Updates are lazy (`nvfp4_feedback_block`, `nvfp4_feedback_subtract`): a column's error goes
/// at once onto the rest of its 16-element block; a block, when reached, receives the errors of the earlier columns of
/// its lazy block (``lazyColumns``) at once; the columns after a lazy block receive all its
/// errors at once. Every update is one fused multiply-add and every element receives its
/// updates one at a time in column order, so the result is bit-identical to the plain
/// column-by-column algorithm with fused multiply-adds.
///
/// Rows are independent, so a chunk of rows is solved on its own: memory per thread is one
/// chunk of rows in fp32 (`4 · rows · K` bytes) plus half that for scratch codes, its errors and scalings.
public struct ErrorFeedback: Sendable {
    /// How the e4m3 code of a block is chosen when the block is reached.
    public enum ScaleChoice: Sendable, Equatable {
        /// torchao's RTN code of the block's current values. With `U` diagonal (`H = I`) the
        /// output is RTN's, byte for byte.
        case roundToNearest
        /// ``ScaleSearch`` with this radius over the block's current values, weighted by
        /// `diag(H)` (as `--method mse --importance`).
        case search(radius: Int)
    }

    /// When the e4m3 code of a block is chosen.
    public enum ScaleTiming: String, Sendable, CaseIterable {
        /// Up front, from the original weights (GPTQ's "static groups"); every column is then
        /// rounded under its block's fixed code, in any column order.
        case upFront
        /// When the block's first column is reached, from its values at that moment (already
        /// corrected by the feedback of earlier columns). Needs the natural column order.
        case whenReached
    }

    /// The timing `--method gptq` uses (docs/quality.md, "Error feedback", has the measurements).
    public static let defaultTiming: ScaleTiming = .upFront

    /// Columns per lazy update block (a multiple of 16).
    public static let lazyColumns = 128

    /// `U` and the column order.
    public var factor: FeedbackFactor
    /// The rule that picks a block's code.
    public var scaleChoice: ScaleChoice
    /// When it is applied.
    public var timing: ScaleTiming

    /// - Precondition: `timing` is `.upFront` unless `factor.order` is the natural order.
    public init(factor: FeedbackFactor, scaleChoice: ScaleChoice = .search(radius: ScaleSearch.defaultRadius), timing: ScaleTiming = ErrorFeedback.defaultTiming) {
        precondition(timing == .upFront || factor.isNaturalOrder, "codes chosen when reached need the natural column order")
        self.factor = factor
        self.scaleChoice = scaleChoice
        self.timing = timing
    }
}

extension NVFP4Codec {
    /// Quantizes rows of `matrix` with error feedback; the arguments and the output are those of
    /// ``quantize(_:rows:packed:scales:layout:error:)``. `error` accumulates the plain
    /// reconstruction error against `matrix`, measured as `verify` measures it.
    public func quantize(
        _ matrix: DenseMatrix, rows: Range<Int>, packed: UnsafeMutableRawBufferPointer,
        scales: UnsafeMutableRawBufferPointer, layout: ScaleLayout, feedback: ErrorFeedback, error: inout QuantizationError
    ) {
        let n = rows.count, k = matrix.columns, blocks = k / NVFP4Codec.blockSize
        precondition(feedback.factor.columns == k, "the factor needs one row per column")
        precondition(packed.count >= n * k / 2, "quantize: output buffer too small")
        guard n > 0, k > 0 else { return }
        let source = matrix.rows(rows)
        var work = [Float](repeating: 0, count: n * k)
        for i in 0..<(n * k) { work[i] = source.element(i) }
        var codes = [UInt8](repeating: 0, count: n * blocks)
        work.withUnsafeMutableBufferPointer { w in
            codes.withUnsafeMutableBufferPointer { c in
                feedback.factor.upper.withUnsafeBufferPointer { u in
                    solve(w.baseAddress!, rows: n, columns: k, codes: c.baseAddress!, upper: u.baseAddress!, feedback: feedback)
                }
            }
        }
        // The reached values under their codes, as RTN rounds them; then the codes into the layout.
        let out = packed.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var reciprocals = [Float](repeating: 0, count: blocks)
        for r in 0..<n {
            for b in 0..<blocks { reciprocals[b] = scaling(codes[r * blocks + b]).reciprocal }
            work.withUnsafeBufferPointer { nvfp4_feedback_pack($0.baseAddress! + r * k, reciprocals, blocks, out + r * k / 2) }
            codes.withUnsafeBufferPointer { c in
                layout.storeRow(c.baseAddress! + r * blocks, count: blocks, row: rows.lowerBound + r, firstBlock: 0, blocks: blocks, into: scales.baseAddress!)
            }
        }
        codes.withUnsafeBytes { c in
            NVFP4Kernel.compare(
                source, rows: 0..<n, packed: UnsafeRawBufferPointer(packed), scales: c, layout: .rowMajor,
                perTensorScale: scale.perTensorScale, error: &error)
        }
    }

    /// The element reciprocal `RN(RN(1/pts)/s)` (or `1/s`) and the decode factor `RN(pts·s)` (or `s`) of a code.
    @inline(__always)
    func scaling(_ code: UInt8) -> (reciprocal: Float, factor: Float) {
        let s = E4M3.decode(code)
        if let pts = scale.perTensorScale { return ((1 / pts) / s, pts * s) }
        return (1 / s, s)
    }

    /// The codes `scaleChoice` gives the `n × 16·blocks` values at `values` (row-major) into `codes`.
    private func chooseCodes(
        _ values: UnsafePointer<Float>, rows n: Int, columns: Int, weights: ArraySlice<Float>, choice: ErrorFeedback.ScaleChoice,
        packed: UnsafeMutableRawBufferPointer, codes: UnsafeMutableRawBufferPointer
    ) {
        let bytes = UnsafeRawBufferPointer(start: values, count: n * columns * 4)
        let block = DenseMatrix(bytes: bytes, dtype: .f32, rows: n, columns: columns)
        var ignored = QuantizationError()
        switch choice {
        case .roundToNearest:
            quantize(block, rows: 0..<n, packed: packed, scales: codes, layout: .rowMajor, error: &ignored)
        case .search(let radius):
            quantize(block, rows: 0..<n, packed: packed, scales: codes, layout: .rowMajor, search: ScaleSearch(radius: radius, importance: Array(weights)), error: &ignored)
        }
    }

    /// The column loop over `rows × columns` values in `w` (row-major), in place: on return each
    /// value is the one its column was quantized from, and `codes` (`rows × columns/16`) the block codes.
    /// Columns are visited in `factor.order`: `w` is permuted into that order for the loop and back after it.
    private func solve(
        _ w: UnsafeMutablePointer<Float>, rows n: Int, columns k: Int, codes: UnsafeMutablePointer<UInt8>,
        upper u: UnsafePointer<Float>, feedback: ErrorFeedback
    ) {
        let blockSize = NVFP4Codec.blockSize
        let blocks = k / blockSize
        let lazy = ErrorFeedback.lazyColumns
        let order = feedback.factor.order
        let natural = feedback.factor.isNaturalOrder
        let errors = UnsafeMutablePointer<Float>.allocate(capacity: n * lazy)
        let snapshot = UnsafeMutablePointer<Float>.allocate(capacity: n * blockSize)
        let scratchPacked = UnsafeMutableRawBufferPointer.allocate(byteCount: n * k / 2, alignment: 64)
        let scratchCodes = UnsafeMutableRawBufferPointer.allocate(byteCount: n * blocks, alignment: 64)
        let row = UnsafeMutablePointer<Float>.allocate(capacity: k)
        defer { errors.deallocate(); snapshot.deallocate(); scratchPacked.deallocate(); scratchCodes.deallocate(); row.deallocate() }
        var reciprocals = [Float](repeating: 0, count: n * blocks)
        var factors = [Float](repeating: 0, count: n * blocks)
        var positionReciprocals = [Float](repeating: 0, count: n * blockSize)
        var positionFactors = [Float](repeating: 0, count: n * blockSize)
        func setCode(_ code: UInt8, row r: Int, block b: Int) {
            codes[r * blocks + b] = code
            (reciprocals[r * blocks + b], factors[r * blocks + b]) = scaling(code)
        }
        if feedback.timing == .upFront {
            chooseCodes(w, rows: n, columns: k, weights: feedback.factor.columnWeights[...], choice: feedback.scaleChoice, packed: scratchPacked, codes: scratchCodes)
            for r in 0..<n { for b in 0..<blocks { setCode(scratchCodes[r * blocks + b], row: r, block: b) } }
        }
        func permute(_ forward: Bool) {
            for r in 0..<n {
                let base = w + r * k
                for p in 0..<k { row[p] = base[p] }
                for p in 0..<k { if forward { base[p] = row[order[p]] } else { base[order[p]] = row[p] } }
            }
        }
        if !natural { permute(true) }
        var start = 0
        while start < k {
            let end = Swift.min(k, start + lazy)
            for j in stride(from: start, to: end, by: blockSize) {
                // The block receives the updates of the lazy block's earlier columns.
                nvfp4_feedback_subtract(w + j, k, errors, lazy, u + start * k + j, k, n, j - start, blockSize)
                if feedback.timing == .whenReached {
                    // Every row's code for this block from its current values (natural order).
                    for r in 0..<n { for c in 0..<blockSize { snapshot[r * blockSize + c] = w[r * k + j + c] } }
                    chooseCodes(
                        snapshot, rows: n, columns: blockSize, weights: feedback.factor.columnWeights[j..<(j + blockSize)],
                        choice: feedback.scaleChoice, packed: scratchPacked, codes: scratchCodes)
                    for r in 0..<n { setCode(scratchCodes[r], row: r, block: j / blockSize) }
                }
                // Each position's scaling per row (position-major): in act-order the 16
                // positions belong to different e4m3 blocks.
                for c in 0..<blockSize {
                    let b = order[j + c] / blockSize
                    for r in 0..<n {
                        positionReciprocals[c * n + r] = reciprocals[r * blocks + b]
                        positionFactors[c * n + r] = factors[r * blocks + b]
                    }
                }
                // The block's columns in order, each error onto the rest of the block at once.
                nvfp4_feedback_block(w + j, k, u + j * k + j, k, positionReciprocals, positionFactors, n, errors + (j - start), lazy, n, blockSize)
            }
            if end < k {
                nvfp4_feedback_subtract(w + end, k, errors, lazy, u + start * k + end, k, n, end - start, k - end)
            }
            start = end
        }
        if !natural { permute(false) }
    }
}
