/// The comparison of one original tensor with its counterpart in the quantized file.
public struct VerifiedTensor: Sendable {
    public enum Kind: String, Sendable {
        /// Dequantized and compared.
        case quantized
        /// Stored unchanged; compared byte for byte.
        case kept
    }

    public var name: String
    public var kind: Kind
    public var shape: [Int]
    /// Error statistics (quantized tensors).
    public var error: QuantizationError?
    /// Check failures for this tensor (invalid scale codes, altered bytes, over tolerance).
    public var failures: [String]
    /// The error of ``VerifyReport/comparisonMethod`` on the same original (quantized tensors).
    public var comparisonError: QuantizationError? = nil
}

/// The outcome of ``VerifyJob/run(original:quantized:tolerance:)``.
public struct VerifyReport: Sendable {
    public var tolerance: Double
    public var tensors: [VerifiedTensor]
    /// Structural mismatches that prevent a comparison (missing, extra or reshaped tensors).
    public var mismatches: [String]
    /// The method each original was also quantized with in memory, for comparison (`--compare-method`).
    public var comparisonMethod: QuantizationMethod? = nil

    /// Differences from a quantize manifest (`verify --manifest`): SHA-256 or size.
    public var manifestFailures: [String] = []

    /// Whether every check passed.
    public var passed: Bool { mismatches.isEmpty && manifestFailures.isEmpty && tensors.allSatisfy(\.failures.isEmpty) }
    /// Whether the files could be compared at all.
    public var comparable: Bool { mismatches.isEmpty }
}

/// Compares a quantized checkpoint against its original.
public enum VerifyJob {
    /// Dequantizes every NVFP4 weight and measures it against the original; checks that kept
    /// tensors are byte-identical, that nothing is missing or extra, and that block scales are
    /// valid codes.
    ///
    /// - Parameters:
    ///   - original: The source checkpoint (random access).
    ///   - quantized: The NVFP4 checkpoint (random access).
    ///   - tolerance: The largest relative RMSE that passes.
    ///   - comparisonMethod: Also quantize each original with this method in memory and report its
    ///     error (``VerifiedTensor/comparisonError``).
    /// - Throws: ``FileError`` when a file is unreadable or its NVFP4 parts are malformed.
    ///   - threads: Worker threads; the report does not depend on it.
    public static func run(
        original: SafetensorsReader, quantized: SafetensorsReader, tolerance: Double,
        comparisonMethod: QuantizationMethod? = nil, threads: Int = ParallelLoop.availableCores
    ) throws -> VerifyReport {
        precondition(
            original.isRandomAccess && quantized.isRandomAccess,
            "VerifyJob reads tensors in any order: open both files with SafetensorsReader.randomAccess(path:)")
        let contents: CheckpointContents
        do { contents = try CheckpointContents(header: quantized.header) } catch {
            throw FileError(path: quantized.displayPath, cause: error)
        }
        let weights = Dictionary(contents.weights.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let plain = Dictionary(contents.plain.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var report = VerifyReport(tolerance: tolerance, tensors: [], mismatches: [], comparisonMethod: comparisonMethod)
        var matched = Set<String>()
        for source in original.header.tensors {
            if let weight = weights[source.name] {
                matched.insert(weight.name)
                guard source.shape == weight.logicalShape else {
                    report.mismatches.append("tensor \"\(source.name)\": original shape \(source.shape) but NVFP4 shape \(weight.logicalShape)")
                    continue
                }
                guard source.dtype.isQuantizable else {
                    report.mismatches.append("tensor \"\(source.name)\": original dtype \(source.dtype.rawValue) cannot have been quantized")
                    continue
                }
                var verified = try compare(
                    source, weight, original: original, quantized: quantized, tolerance: tolerance, threads: threads)
                if let comparisonMethod {
                    let pts = try weight.perTensorScaleValue(in: quantized)
                    verified.comparisonError = try original.withBytes(of: source) { bytes in
                        MethodComparison.error(
                            of: DenseMatrix(bytes: bytes, dtype: source.dtype, rows: weight.rows, columns: weight.columns),
                            perTensorScale: pts, method: comparisonMethod)
                    }
                }
                report.tensors.append(verified)
                original.release(source)
                weight.parts.forEach(quantized.release)
            } else if let kept = plain[source.name] {
                matched.insert(kept.name)
                guard kept.dtype == source.dtype, kept.shape == source.shape else {
                    report.mismatches.append("tensor \"\(source.name)\": original \(source.dtype.rawValue) \(source.shape) but stored as \(kept.dtype.rawValue) \(kept.shape)")
                    continue
                }
                let identical = try original.withBytes(of: source) { a in
                    try quantized.withBytes(of: kept) { b in a.elementsEqual(b) }
                }
                report.tensors.append(VerifiedTensor(
                    name: source.name, kind: .kept, shape: source.shape, error: nil,
                    failures: identical ? [] : ["kept tensor's bytes differ from the original"]))
                original.release(source)
                quantized.release(kept)
            } else {
                report.mismatches.append("tensor \"\(source.name)\" is missing from the quantized file")
            }
        }
        for weight in contents.weights where !matched.contains(weight.name) {
            report.mismatches.append("NVFP4 weight \"\(weight.name)\" has no counterpart in the original")
        }
        for tensor in contents.plain where !matched.contains(tensor.name) {
            report.mismatches.append("tensor \"\(tensor.name)\" has no counterpart in the original")
        }
        return report
    }

    /// The error of `matrix`'s NVFP4 encoding, over 128-row chunks on `threads` threads, merged in
    /// row order: the same chunks and order as ``QuantizeJob``, so our own files give back the
    /// manifest's numbers exactly, for any thread count.
    static func measure(
        _ matrix: DenseMatrix, packed: UnsafeRawBufferPointer, scales: UnsafeRawBufferPointer, layout: ScaleLayout,
        perTensorScale: Float?, threads: Int
    ) -> QuantizationError {
        let chunkRows = QuantizeJob.rowsPerChunk
        let chunks = ceilDiv(matrix.rows, chunkRows)
        var errors = [QuantizationError](repeating: QuantizationError(), count: chunks)
        errors.withUnsafeMutableBufferPointer { partial in
            let results = partial
            ParallelLoop.run(iterations: chunks, threads: threads) { chunk in
                let rows = (chunk * chunkRows)..<min(matrix.rows, (chunk + 1) * chunkRows)
                NVFP4Kernel.compare(
                    matrix, rows: rows, packed: packed, scales: scales, layout: layout, perTensorScale: perTensorScale,
                    error: &results[chunk])
            }
        }
        var total = QuantizationError()
        for e in errors { total.merge(e) }
        return total
    }

    private static func compare(
        _ source: TensorInfo, _ weight: NVFP4Weight, original: SafetensorsReader, quantized: SafetensorsReader, tolerance: Double,
        threads: Int
    ) throws -> VerifiedTensor {
        var failures: [String] = []
        let pts = try weight.perTensorScaleValue(in: quantized)
        if let pts, !(pts.isFinite && pts > 0) {
            failures.append("per-tensor scale \(pts) is not a positive finite number")
        }
        let error = try quantized.withBytes(of: weight.scales) { scales in
            try quantized.withBytes(of: weight.packed) { packed in
                try original.withBytes(of: source) { bytes in
                    check(weight, original: bytes, dtype: source.dtype, packed: packed, scales: scales, perTensorScale: pts,
                          tolerance: tolerance, threads: threads, failures: &failures)
                }
            }
        }
        return VerifiedTensor(name: source.name, kind: .quantized, shape: source.shape, error: error, failures: failures)
    }

    /// The checks of one NVFP4 weight against its original, given their bytes: invalid block-scale
    /// codes, and the measured error against `tolerance`. Appends to `failures`; returns the error.
    static func check(
        _ weight: NVFP4Weight, original: UnsafeRawBufferPointer, dtype: DType, packed: UnsafeRawBufferPointer,
        scales: UnsafeRawBufferPointer, perTensorScale: Float?, tolerance: Double, threads: Int, failures: inout [String]
    ) -> QuantizationError {
        let invalid = weight.invalidScaleCodes(scales)
        if let first = invalid.first {
            failures.append("\(invalid.count) invalid block-scale codes (NaN or negative), first at row \(first.row), block \(first.block)")
        }
        let matrix = DenseMatrix(bytes: original, dtype: dtype, rows: weight.rows, columns: weight.columns)
        let error = measure(matrix, packed: packed, scales: scales, layout: weight.scaleLayout, perTensorScale: perTensorScale, threads: threads)
        if !(error.relativeRMSE <= tolerance) {
            failures.append("relative RMSE \(error.relativeRMSE) exceeds tolerance \(tolerance)")
        }
        return error
    }
}
