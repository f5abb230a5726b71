/// The methods `verify --compare-method` can re-run: those that need nothing but the weight.
public enum ComparableMethod: String, Sendable, CaseIterable {
    case rtn, mse
}

/// Re-quantizes an original tensor in memory to measure another method's error on the same input
/// (`nvfp4 verify --compare-method`).
public enum MethodComparison {
    /// The error `method` would give `matrix` under the per-tensor scale `perTensorScale` (the
    /// quantized file's, so both sides share it; `nil` for single-level files).
    ///
    /// RTN uses CUDA numerics for `blockAmax / 6`; `.mse` searches ±``ScaleSearch/defaultRadius``
    /// codes, unweighted. Rows run in fixed chunks of 128 on `threads` threads, so the result does
    /// not depend on `threads`.
    public static func error(
        of matrix: DenseMatrix, perTensorScale: Float?, method: ComparableMethod, threads: Int = ParallelLoop.availableCores
    ) -> QuantizationError {
        let blocks = matrix.columns / NVFP4Codec.blockSize
        guard matrix.rows > 0, blocks > 0 else { return QuantizationError() }
        let amax = ParallelLoop.magnitudeMaximum(matrix, threads: threads).amax
        let codec = NVFP4Codec(scale: TensorScale(amax: amax, perTensorScale: perTensorScale), numerics: .cuda)
        let chunkRows = 128
        let chunks = (matrix.rows + chunkRows - 1) / chunkRows
        let packed = UnsafeMutableRawBufferPointer.allocate(byteCount: matrix.rows * matrix.columns / 2, alignment: 64)
        let scales = UnsafeMutableRawBufferPointer.allocate(byteCount: matrix.rows * blocks, alignment: 64)
        defer { packed.deallocate(); scales.deallocate() }
        var errors = [QuantizationError](repeating: QuantizationError(), count: chunks)
        errors.withUnsafeMutableBufferPointer { results in
            let results = results
            ParallelLoop.run(iterations: chunks, threads: threads) { chunk in
                let rows = (chunk * chunkRows)..<min(matrix.rows, (chunk + 1) * chunkRows)
                let target = UnsafeMutableRawBufferPointer(
                    rebasing: packed[(rows.lowerBound * matrix.columns / 2)..<(rows.upperBound * matrix.columns / 2)])
                switch method {
                case .rtn:
                    codec.quantize(matrix, rows: rows, packed: target, scales: scales, layout: .rowMajor, error: &results[chunk])
                case .mse:
                    codec.quantize(matrix, rows: rows, packed: target, scales: scales, layout: .rowMajor, search: ScaleSearch(), error: &results[chunk])
                }
            }
        }
        var total = QuantizationError()
        for e in errors { total.merge(e) }
        return total
    }
}
