/// `nvfp4 verify MODEL_DIR OUT_DIR`: compares a quantized model folder in any of the three
/// layouts with its original, across shards.
///
/// Every original tensor is looked up by the names its layout gives it (wherever the output index
/// put them): quantized weights are dequantized and measured, kept tensors must be byte-identical,
/// and nothing may be missing or extra. In the engine layouts, members of a fused group must
/// carry bit-identical global scales, and every scale must be finite and positive.
public enum FolderVerifyJob {
    /// The layout of a quantized folder, from its `config.json` `quantization_config.quant_method`.
    public static func format(of folder: ModelFolder) throws(ModelFolderError) -> CheckpointFormat {
        switch folder.config?["quantization_config"]?["quant_method"]?.stringValue {
        case "torchao": return .torchao
        case "compressed-tensors": return .compressedTensors
        case "modelopt": return .modelopt
        case let other:
            throw ModelFolderError(path: "\(folder.path)/config.json", reason: "quantization_config.quant_method is \(other.map { "\"\($0)\"" } ?? "missing"); expected torchao, compressed-tensors or modelopt")
        }
    }

    public static func run(original: ModelFolder, quantized: ModelFolder, tolerance: Double) throws -> VerifyReport {
        let format = try format(of: quantized)
        let layout = format.layout(mode: .twoLevel, dynamicActivations: true)
        var readers: [SafetensorsReader] = []
        var stored: [String: (reader: Int, tensor: TensorInfo)] = [:]
        for name in quantized.shards {
            let reader = try SafetensorsReader.randomAccess(path: "\(quantized.path)/\(name)")
            for t in reader.header.tensors { stored[t.name] = (readers.count, t) }
            readers.append(reader)
        }
        var report = VerifyReport(tolerance: tolerance, tensors: [], mismatches: [])
        var consumed = Set<String>()
        var globalScales: [String: Float] = [:]
        var originalNames: [String] = []
        for shard in original.shards {
            let source = try SafetensorsReader.randomAccess(path: "\(original.path)/\(shard)")
            for tensor in source.header.tensors {
                originalNames.append(tensor.name)
                if format == .torchao, tensor.shape.count == 3, let torchao = layout as? TorchAOWeightLayout,
                    stored[torchao.torchao.storedName(.packed, of: tensor.name)] != nil
                {
                    let parts = StackedExperts.storedParts(tensor, layout: torchao.torchao)
                    report.tensors.append(try compareStacked(tensor, source: source, parts: parts, readers: readers, stored: stored, tolerance: tolerance))
                    consumed.formUnion(parts.map(\.tensor.name))
                } else if tensor.shape.count == 2, tensor.name.hasSuffix(".weight"), tensor.dtype.isQuantizable,
                    let parts = quantizedParts(of: tensor, layout: layout, stored: stored)
                {
                    let verified = try compare(tensor, source: source, parts: parts, layout: layout, readers: readers, stored: stored, tolerance: tolerance)
                    report.tensors.append(verified.tensor)
                    globalScales[tensor.name] = verified.pts
                    consumed.formUnion(parts.map(\.tensor.name))
                } else if let (r, kept) = stored[tensor.name] {
                    consumed.insert(tensor.name)
                    guard kept.dtype == tensor.dtype, kept.shape == tensor.shape else {
                        report.mismatches.append("tensor \"\(tensor.name)\": original \(tensor.dtype.rawValue) \(tensor.shape) but stored as \(kept.dtype.rawValue) \(kept.shape)")
                        continue
                    }
                    let identical = try source.withBytes(of: tensor) { a in try readers[r].withBytes(of: kept) { a.elementsEqual($0) } }
                    report.tensors.append(VerifiedTensor(
                        name: tensor.name, kind: .kept, shape: tensor.shape, error: nil,
                        failures: identical ? [] : ["kept tensor's bytes differ from the original"]))
                } else {
                    report.mismatches.append("tensor \"\(tensor.name)\" is missing from \(quantized.path)")
                }
            }
        }
        for name in stored.keys.sorted() where !consumed.contains(name) {
            report.mismatches.append("tensor \"\(name)\" in \(quantized.path) has no counterpart in the original")
        }
        if format != .torchao {
            for group in FusedGroups(config: original.config).groups(in: originalNames) {
                let scales = group.weights.compactMap { globalScales[$0] }
                guard scales.count == group.weights.count else { continue }
                if Set(scales.map(\.bitPattern)).count > 1, let i = report.tensors.firstIndex(where: { $0.name == group.weights[0] }) {
                    report.tensors[i].failures.append("fused group \(group.weights.map(moduleName)) has different global scales \(scales); engines need one shared scale")
                }
            }
        }
        return report
    }

    /// The stored parts of a quantized `tensor`, or `nil` if it was kept.
    static func quantizedParts(
        of tensor: TensorInfo, layout: any WeightLayout, stored: [String: (reader: Int, tensor: TensorInfo)]
    ) -> [StoredPart]? {
        let calibrated = layout.storedParts(ofWeight: tensor.name, rows: tensor.shape[0], columns: tensor.shape[1], calibrated: true)
        // The global scale is what marks a weight as quantized (ModelOpt keeps the name `weight`).
        guard let global = calibrated.first(where: { $0.part == .weightGlobalScale }), stored[global.tensor.name] != nil else { return nil }
        return calibrated.filter { $0.part != .inputGlobalScale || stored[$0.tensor.name] != nil }
    }

    /// A stacked `[E, N, K]` torchao weight: each expert dequantized with its own scale.
    private static func compareStacked(
        _ tensor: TensorInfo, source: SafetensorsReader, parts: [StoredPart],
        readers: [SafetensorsReader], stored: [String: (reader: Int, tensor: TensorInfo)], tolerance: Double
    ) throws -> VerifiedTensor {
        var found: [LayoutPart: (reader: Int, tensor: TensorInfo)] = [:]
        for part in parts {
            guard let f = stored[part.tensor.name], f.tensor.dtype == part.tensor.dtype, f.tensor.shape == part.tensor.shape else {
                return VerifiedTensor(name: tensor.name, kind: .quantized, shape: tensor.shape, error: nil,
                                      failures: ["part \"\(part.tensor.name)\" is missing or has the wrong dtype or shape"])
            }
            found[part.part] = f
        }
        let (packed, scales, global) = (found[.packed]!, found[.blockScales]!, found[.weightGlobalScale]!)
        guard packed.reader == scales.reader, packed.reader == global.reader else {
            return VerifiedTensor(name: tensor.name, kind: .quantized, shape: tensor.shape, error: nil, failures: ["parts are split across shards"])
        }
        let (experts, rows, columns) = (tensor.shape[0], tensor.shape[1], tensor.shape[2])
        let reader = readers[packed.reader]
        var failures: [String] = []
        var error = QuantizationError()
        let weight = NVFP4Weight(
            name: tensor.name, rows: rows, columns: columns, packed: packed.tensor, scales: scales.tensor,
            scaleLayout: .swizzled, perTensorScale: nil, activationScale: nil, originalDtype: tensor.dtype)
        let scaleBytes = ScaleLayout.swizzled.storedByteCount(rows: rows, blocks: columns / 16)
        let sourceBytes = rows * columns * tensor.dtype.bitWidth / 8
        try reader.withBytes(of: global.tensor) { ptsBytes in
            try reader.withBytes(of: scales.tensor) { allScales in
                try reader.withBytes(of: packed.tensor) { allPacked in
                    try source.withBytes(of: tensor) { bytes in
                        for e in 0..<experts {
                            let pts = Float(bitPattern: UInt32(littleEndian: ptsBytes.loadUnaligned(fromByteOffset: 4 * e, as: UInt32.self)))
                            if !(pts.isFinite && pts > 0) { failures.append("expert \(e): per-tensor scale \(pts) is not a positive finite number") }
                            let s = UnsafeRawBufferPointer(rebasing: allScales[(e * scaleBytes)..<((e + 1) * scaleBytes)])
                            let invalid = weight.invalidScaleCodes(s)
                            if invalid.count > 0 { failures.append("expert \(e): \(invalid.count) invalid block-scale codes") }
                            let p = UnsafeRawBufferPointer(rebasing: allPacked[(e * rows * columns / 2)..<((e + 1) * rows * columns / 2)])
                            let matrix = DenseMatrix(
                                bytes: UnsafeRawBufferPointer(rebasing: bytes[(e * sourceBytes)..<((e + 1) * sourceBytes)]),
                                dtype: tensor.dtype, rows: rows, columns: columns)
                            weight.dequantize(packed: p, scaleBytes: s, perTensorScale: pts, rows: 0..<rows) { row, values in
                                for (i, v) in values.enumerated() { error.add(original: matrix.element(row * columns + i), reconstructed: v) }
                            }
                        }
                    }
                }
            }
        }
        if !(error.relativeRMSE <= tolerance) { failures.append("relative RMSE \(error.relativeRMSE) exceeds tolerance \(tolerance)") }
        return VerifiedTensor(name: tensor.name, kind: .quantized, shape: tensor.shape, error: error, failures: failures)
    }

    private static func compare(
        _ tensor: TensorInfo, source: SafetensorsReader, parts: [StoredPart], layout: any WeightLayout,
        readers: [SafetensorsReader], stored: [String: (reader: Int, tensor: TensorInfo)], tolerance: Double
    ) throws -> (tensor: VerifiedTensor, pts: Float?) {
        var failures: [String] = []
        var infos: [LayoutPart: (reader: Int, tensor: TensorInfo)] = [:]
        for part in parts {
            guard let found = stored[part.tensor.name] else {
                failures.append("missing part \"\(part.tensor.name)\"")
                continue
            }
            if found.tensor.dtype != part.tensor.dtype || found.tensor.shape != part.tensor.shape {
                failures.append("part \"\(part.tensor.name)\" is \(found.tensor.dtype.rawValue) \(found.tensor.shape), expected \(part.tensor.dtype.rawValue) \(part.tensor.shape)")
                continue
            }
            infos[part.part] = found
        }
        guard let packed = infos[.packed], let scales = infos[.blockScales], let global = infos[.weightGlobalScale],
            packed.reader == scales.reader
        else {
            return (VerifiedTensor(name: tensor.name, kind: .quantized, shape: tensor.shape, error: nil,
                                   failures: failures.isEmpty ? ["parts are split across shards"] : failures), nil)
        }
        let scalar: ((reader: Int, tensor: TensorInfo)) -> Float = { found in
            (try? readers[found.reader].withBytes(of: found.tensor) { Float(bitPattern: UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self))) }) ?? .nan
        }
        let stored = scalar(global)
        let pts = layout.format == .compressedTensors ? 1 / stored : stored
        if !(stored.isFinite && stored > 0 && pts.isFinite && pts > 0) {
            failures.append("global scale \(stored) is not a positive finite number")
        }
        if let input = infos[.inputGlobalScale] {
            let value = scalar(input)
            if !(value.isFinite && value > 0) { failures.append("input scale \(value) is not a positive finite number") }
        }
        let weight = NVFP4Weight(
            name: tensor.name, rows: tensor.shape[0], columns: tensor.shape[1], packed: packed.tensor, scales: scales.tensor,
            scaleLayout: layout.scaleLayout, perTensorScale: nil, activationScale: nil, originalDtype: tensor.dtype)
        let reader = readers[packed.reader]
        // For a torchao or ModelOpt folder (pts stored as is) this gives back the error sums
        // recorded while quantizing.
        let error = try reader.withBytes(of: scales.tensor) { scaleBytes in
            try reader.withBytes(of: packed.tensor) { packedBytes in
                try source.withBytes(of: tensor) { bytes in
                    VerifyJob.check(
                        weight, original: bytes, dtype: tensor.dtype, packed: packedBytes, scales: scaleBytes, perTensorScale: pts,
                        tolerance: tolerance, threads: ParallelLoop.availableCores, failures: &failures)
                }
            }
        }
        source.release(tensor)
        return (VerifiedTensor(name: tensor.name, kind: .quantized, shape: tensor.shape, error: error, failures: failures), stored)
    }
}
