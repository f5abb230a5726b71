/// One stored NVFP4 matrix and the rows of an original tensor it stands for.
struct VerifiedPart {
    /// The quantized module holding it.
    var module: QuantizedModule
    /// Which of the module's matrices (an expert of a stacked module, else 0).
    var matrix: Int
    /// Which `[N, K]` matrix of the original (an expert of a stacked original, else 0).
    var originalMatrix: Int
    /// The rows of that original matrix.
    var rows: Range<Int>

    /// Every matrix of `module`, matched expert by expert with an original of the same shape.
    static func whole(_ module: QuantizedModule) -> [VerifiedPart] {
        (0..<module.matrixCount).map { VerifiedPart(module: module, matrix: $0, originalMatrix: $0, rows: 0..<module.rows) }
    }
}

/// Measures quantized matrices against the original tensor they were made from.
struct Comparison {
    let original: VerifyOriginal
    let quantized: CheckpointSource
    let tolerance: Double
    let threads: Int
    /// Re-quantize every block and compare exactly (``BlockCheck``); `nil`: the tolerance alone.
    var blockRule: BlockRule? = nil

    /// Dequantizes every part and measures it against its rows of `source`; checks the scales.
    func compare(_ source: LocatedTensor, with parts: [VerifiedPart]) throws -> VerifiedTensor {
        var failures: [String] = []
        var modules: [QuantizedModule] = []
        for part in parts where !modules.contains(where: { $0.originalName == part.module.originalName }) { modules.append(part.module) }
        var scales: [String: [Float]] = [:]
        var stored: [String: [Float]] = [:]
        for m in modules {
            let label = modules.count > 1 ? "module \(m.name): " : ""
            if m.globalScale != nil {
                let values = m.perTensorScales(in: quantized) ?? [.nan]
                scales[m.originalName] = values
                stored[m.originalName] = m.globalScale.flatMap { quantized.scalars($0) }
                for (e, pts) in values.enumerated() where !(pts.isFinite && pts > 0) {
                    failures.append(label + (values.count > 1 ? "expert \(e): " : "") + "per-tensor scale \(pts) is not a positive finite number")
                }
            }
            if m.inputScale != nil {
                let value = m.inputScaleValue(in: quantized) ?? .nan
                if !(value.isFinite && value > 0) { failures.append(label + "input scale \(value) is not a positive finite number") }
            }
        }
        let shape = source.info.shape
        var total = QuantizationError()
        for part in parts {
            try original.withMatrix(source, matrix: part.originalMatrix) { matrix in
                let m = part.module
                let label = (modules.count > 1 ? "module \(m.name): " : "") + (m.matrixCount > 1 ? "expert \(part.matrix): " : "")
                let dense = matrix.rows(part.rows)
                let ranges = m.byteRanges(ofMatrix: part.matrix)
                try quantized.withBytes(of: m.blockScales!) { allScales in
                    try quantized.withBytes(of: m.packed) { allPacked in
                        let scaleBytes = UnsafeRawBufferPointer(rebasing: allScales[ranges.scales])
                        let invalid = m.matrix.invalidScaleCodes(scaleBytes)
                        if let first = invalid.first {
                            failures.append(label + "\(invalid.count) invalid block-scale codes (NaN or negative), first at row \(first.row), block \(first.block)")
                        }
                        let packedBytes = UnsafeRawBufferPointer(rebasing: allPacked[ranges.packed])
                        let pts = scales[m.originalName]?[part.matrix]
                        total.merge(VerifyJob.measure(
                            dense, packed: packedBytes, scales: scaleBytes, layout: m.scaleLayout, perTensorScale: pts, threads: threads))
                        if let blockRule, invalid.first == nil, pts.map({ $0.isFinite && $0 > 0 }) ?? true,
                            let mismatch = BlockCheck.firstMismatch(
                                dense, packed: packedBytes, scales: scaleBytes, layout: m.scaleLayout,
                                perTensorScales: Comparison.candidates(pts, stored: stored[m.originalName]?[part.matrix], names: m.names),
                                rule: blockRule, threads: threads)
                        {
                            failures.append(label + mismatch.description(method: blockRule.method))
                        }
                    }
                }
            }
        }
        if !(total.relativeRMSE <= tolerance) {
            failures.append("relative RMSE \(total.relativeRMSE) exceeds tolerance \(tolerance)")
        }
        original.release(source)
        for m in modules { m.tensors.forEach(quantized.release) }
        return VerifiedTensor(original: source.info, kind: .quantized, shape: shape, error: total, failures: failures)
    }

    /// The per-tensor scales a stored scalar can stand for: `pts` itself, and where the layout stores
    /// the reciprocal (which loses the last bit), its neighbours that store the same value.
    static func candidates(_ pts: Float?, stored: Float?, names: EngineLayoutNames) -> [Float?] {
        guard let pts, let stored, names.storesReciprocalScales else { return [pts] }
        return [pts] + [pts.nextDown, pts.nextUp].filter { names.storedScalar($0) == stored }
    }
}
