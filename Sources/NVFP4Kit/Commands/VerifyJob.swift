/// The comparison of one original tensor with its counterpart in the quantized file.
public struct VerifiedTensor: Sendable {
    public enum Kind: String, Sendable {
        /// Dequantized and compared.
        case quantized
        /// Stored unchanged; compared byte for byte.
        case kept
    }

    // 48 bytes: the name shares the original header's buffer and the errors (quantized tensors
    // only) live out of line, so a million kept tensors cost little.
    private var storedName: TensorName
    public var kind: Kind
    public var shape: [Int]
    /// Check failures for this tensor (invalid scale codes, altered bytes, over tolerance).
    public var failures: [String]
    private var errors: Errors?

    private final class Errors: Sendable {
        let error: QuantizationError?
        let comparison: QuantizationError?
        init(_ error: QuantizationError?, _ comparison: QuantizationError?) { (self.error, self.comparison) = (error, comparison) }
    }

    public init(name: String, kind: Kind, shape: [Int], error: QuantizationError?, failures: [String], comparisonError: QuantizationError? = nil) {
        self.init(storedName: TensorName(name), kind: kind, shape: shape, error: error, failures: failures, comparisonError: comparisonError)
    }

    /// The comparison of original tensor `original` (sharing its name).
    init(original: TensorInfo, kind: Kind, shape: [Int], error: QuantizationError?, failures: [String]) {
        self.init(storedName: original.storedName, kind: kind, shape: shape, error: error, failures: failures, comparisonError: nil)
    }

    private init(storedName: TensorName, kind: Kind, shape: [Int], error: QuantizationError?, failures: [String], comparisonError: QuantizationError?) {
        self.storedName = storedName
        self.kind = kind
        self.shape = shape
        self.failures = failures
        errors = error == nil && comparisonError == nil ? nil : Errors(error, comparisonError)
    }

    public var name: String {
        get { storedName.string }
        set { storedName = TensorName(newValue) }
    }
    /// Error statistics (quantized tensors).
    public var error: QuantizationError? {
        get { errors?.error }
        set { errors = Errors(newValue, comparisonError) }
    }
    /// The error of ``VerifyReport/comparisonMethod`` on the same original (quantized tensors).
    public var comparisonError: QuantizationError? {
        get { errors?.comparison }
        set { errors = Errors(error, newValue) }
    }
}

/// The outcome of ``VerifyJob/run(original:quantized:tolerance:)``.
public struct VerifyReport: Sendable {
    public var tolerance: Double
    /// Why the tolerance differs from ``VerifyTolerance/standard`` when the user gave none.
    public var toleranceReason: String? = nil
    public var tensors: VerifiedTensors
    /// Structural mismatches that prevent a comparison (missing, extra or reshaped tensors).
    public var mismatches: [String]
    /// The method each original was also quantized with in memory, for comparison (`--compare-method`).
    public var comparisonMethod: ComparableMethod? = nil

    /// Differences from the quantize manifest: SHA-256 or size.
    public var manifestFailures: [String] = []
    /// The manifest checked against, if any.
    public var manifest: ManifestUse? = nil

    /// Whether every check passed.
    public var passed: Bool { mismatches.isEmpty && manifestFailures.isEmpty && tensors.allSatisfy(\.failures.isEmpty) }
    /// Whether the files could be compared at all.
    public var comparable: Bool { mismatches.isEmpty }
}

/// Which manifest `verify` used and what it checked with it.
public struct ManifestUse: Sendable {
    public var path: String
    /// Found beside the output (`false`: named by `--manifest`).
    public var discovered: Bool
    /// The method every block was re-quantized with, or `nil` when the manifest's options cannot be
    /// re-run (an importance-weighted search): then the tolerance alone applies to the values.
    public var blockMethod: QuantizationMethod?
    /// The method the manifest names (`options.method`).
    public var method: QuantizationMethod?

    public init(path: String, discovered: Bool, blockMethod: QuantizationMethod?, method: QuantizationMethod? = nil) {
        self.path = path
        self.discovered = discovered
        self.blockMethod = blockMethod
        self.method = method
    }

    /// `manifest: m.manifest.json (found beside the output): SHA-256 checked, every block re-quantized with rtn`.
    public var summary: String {
        "manifest: \(path) (\(discovered ? "found beside the output" : "--manifest")): SHA-256 checked, "
            + (blockMethod.map { "every block re-quantized with \($0.rawValue) and compared exactly" }
                ?? "blocks not re-quantized (\(method == .gptq ? "error feedback needs the calibration statistics" : "importance-weighted search")), tolerance only")
    }
}

/// Compares a quantized checkpoint (any layout, a file or a model folder) with its original.
///
/// A single file is a folder of one shard: one path serves both. Every original tensor is looked
/// up by the names the quantized checkpoint's layout gives it (wherever its shards put them):
/// a quantized module standing for it is dequantized and measured (each expert of a stacked
/// tensor with its own scale; per-expert modules cut from a stacked original slice by slice,
/// through ``StackedExpertNaming``), kept tensors must be byte-identical, and nothing may be
/// missing or extra. In a layout whose fused groups share a scale (the format table's
/// `sharesFusedScales`: compressed-tensors, ModelOpt), members of a fused group must carry
/// bit-identical global scales, in files and folders alike.
public enum VerifyJob {
    /// Runs every comparison.
    ///
    /// - Parameters:
    ///   - original: The source checkpoint (random access).
    ///   - quantized: The NVFP4 checkpoint (random access).
    ///   - tolerance: The largest relative RMSE that passes.
    ///   - comparisonMethod: Also quantize each original 2-D weight with this method in memory and
    ///     report its error (``VerifiedTensor/comparisonError``).
    ///   - blockRule: Also re-quantize every block as the manifest says the run did and require
    ///     the stored bytes exactly (``BlockCheck``).
    ///   - fp8BlockSize: The block of the original's block-scaled FP8 weights where no `config.json`
    ///     names it (`--fp8-block-size`, or the manifest's). An FP8 original is compared through its
    ///     dequantization, the tensors quantize read (``FP8Dequantizer``).
    ///   - threads: Worker threads; the report does not depend on it.
    /// - Throws: ``FileError`` when a file is unreadable or its NVFP4 parts are malformed.
    public static func run(
        original: CheckpointSource, quantized: CheckpointSource, tolerance: Double,
        comparisonMethod: ComparableMethod? = nil, blockRule: BlockRule? = nil, fp8BlockSize: [Int]? = nil,
        threads: Int = ParallelLoop.availableCores, progress: JobProgress? = nil
    ) throws -> VerifyReport {
        let model = CheckpointModel(source: quantized)
        try model.requireDecodable(in: quantized)
        // Plain tensors by name (first of a name wins), and which were matched: positions, not names.
        let plain = model.plain
        var plainIndex = NameIndex(capacity: plain.count)
        for k in plain.indices { _ = plainIndex.insert(Int32(k), named: plain[k].name) { plain[Int($0)].name } }
        var plainMatched = [Bool](repeating: false, count: plain.count)
        let originals = try VerifyOriginal(original, fp8BlockSize: fp8BlockSize, threads: threads)
        let comparison = Comparison(original: originals, quantized: quantized, tolerance: tolerance, threads: threads, blockRule: blockRule)
        var matched = Set<String>()
        var globalScales: [String: Float] = [:]
        let tensors = originals.tensors
        var report = VerifyReport(tolerance: tolerance, tensors: VerifiedTensors(originals: tensors), mismatches: [], comparisonMethod: comparisonMethod)
        for (position, source) in tensors.enumerated() {
            let name = source.name
            let info = originals.info(of: source)
            defer { progress?.advance(UInt64(source.info.byteCount), item: name) }
            if let m = model.module(forOriginal: name), !matched.contains(m.originalName) {
                matched.insert(m.originalName)
                guard info.shape == m.logicalShape, info.dtype.isQuantizable else {
                    report.mismatches.append("tensor \"\(name)\": original \(info.dtype.rawValue) \(info.shape) cannot be NVFP4 \(m.logicalShape)")
                    continue
                }
                var verified = try comparison.compare(source, with: VerifiedPart.whole(m))
                if let comparisonMethod, m.matrixCount == 1 {
                    let pts = m.perTensorScales(in: quantized)?.first
                    verified.comparisonError = try originals.withMatrix(source, matrix: 0) { matrix in
                        MethodComparison.error(of: matrix, perTensorScale: pts, method: comparisonMethod, threads: threads)
                    }
                }
                report.tensors.append(verified)
                if let g = m.globalScale, let stored = quantized.scalar(g) { globalScales[name] = stored }
            } else if let parts = perExpertModules(of: info, in: model), parts.allSatisfy({ !matched.contains($0.module.originalName) }) {
                matched.formUnion(parts.map(\.module.originalName))
                report.tensors.append(try comparison.compare(source, with: parts))
            } else if let k = plainIndex.key(of: name, nameOf: { plain[Int($0)].name }).map(Int.init), !plainMatched[k], !matched.contains(name) {
                plainMatched[k] = true
                let kept = plain[k]
                guard kept.info.dtype == info.dtype, kept.info.shape == info.shape else {
                    report.mismatches.append("tensor \"\(name)\": original \(info.dtype.rawValue) \(info.shape) but stored as \(kept.info.dtype.rawValue) \(kept.info.shape)")
                    continue
                }
                if try quantized.withBytes(of: kept, { try originals.equals(source, $0) }) {
                    report.tensors.appendIdenticalKept(at: position)
                } else {
                    report.tensors.append(VerifiedTensor(
                        original: source.info, kind: .kept, shape: info.shape, error: nil,
                        failures: [originals.isFP8(source) ? "kept tensor's bytes differ from the original's FP8 dequantization" : "kept tensor's bytes differ from the original"]))
                }
                originals.release(source)
                quantized.release(kept)
            } else {
                report.mismatches.append("tensor \"\(name)\" is missing from \(quantized.path)")
            }
        }
        for m in model.modules where !matched.contains(m.originalName) {
            report.mismatches.append("NVFP4 weight \"\(m.originalName)\" in \(quantized.path) has no counterpart in the original")
        }
        for (k, t) in plain.enumerated() where !plainMatched[k] && !matched.contains(t.name) {
            report.mismatches.append("tensor \"\(t.name)\" in \(quantized.path) has no counterpart in the original")
        }
        if model.layout.format?.names.sharesFusedScales == true {
            // Only `.weight` names can fuse (FusedGroups reads no other): a million other names stay unread.
            checkFusedScales(&report, globalScales: globalScales, names: tensors.lazy.map(\.name).filter { $0.hasSuffix(".weight") }, config: original.config ?? quantized.config)
        }
        return report
    }

    /// The per-expert 2-D modules a stacked `[E, N, K]` original was cut into, with the rows of the
    /// expert's matrix each holds; `nil` unless every one is there.
    static func perExpertModules(of tensor: TensorInfo, in model: CheckpointModel) -> [VerifiedPart]? {
        guard tensor.dtype.isQuantizable, let naming = StackedExpertNaming(tensor) else { return nil }
        var found: [VerifiedPart] = []
        for slice in naming.slices {
            guard let m = model.module(named: slice.module), m.matrixCount == 1, m.rows == slice.rows.count, m.columns == naming.columns else { return nil }
            found.append(VerifiedPart(module: m, matrix: 0, originalMatrix: slice.expert, rows: slice.rows))
        }
        return found
    }

    /// Where the layout shares fused scales, members of a fused group must carry one global scale.
    private static func checkFusedScales(_ report: inout VerifyReport, globalScales: [String: Float], names: [String], config: JSONValue?) {
        for group in FusedGroups(config: config).groups(in: names) {
            let scales = group.weights.compactMap { globalScales[$0] }
            guard scales.count == group.weights.count, Set(scales.map(\.bitPattern)).count > 1,
                let i = report.tensors.firstIndex(where: { $0.name == group.weights[0] })
            else { continue }
            report.tensors.appendFailure("fused group \(group.weights.map(moduleName)) has different global scales \(scales); engines need one shared scale", at: i)
        }
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
}
