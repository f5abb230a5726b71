/// Stacked MoE expert weights `[E, N, K]` in torchao's layout: one per-tensor scale per expert.
///
/// torchao's 3-D path (`NVFP4Tensor.to_nvfp4` on a 3-D weight with `per_tensor_scale` of shape
/// `(E, 1, 1)`) quantizes each expert against its own scale, packs `qdata` as `[E, N, K/2]`, and
/// swizzles the flattened `(E·N, K/16)` block scales with `to_blocked` before viewing them as
/// `(E, scale_M, scale_K)`. That view only exists when `N % 128 == 0`, and then the swizzled
/// tiles of each expert are contiguous, so the result equals per-expert 2-D quantization
/// concatenated (pytorch/ao `test_nvfp4_per_expert_scale` asserts exactly that).
///
/// Only the torchao layout writes them (the engine layouts store one 2-D tensor per expert
/// projection: ``TensorWriteKind/expertSlices``); ``QuantizePlan`` decides which tensors qualify.
/// Each expert goes through the same codec entry as a 2-D weight, with the same method and
/// importance statistics (looked up by the expert's per-expert module name, else the stacked name).
public enum StackedExperts {
    /// The stored parts, in write order: per-expert scales `F32 [E,1,1]`, `U8 [E, N, K/2]`, and
    /// swizzled `F8_E4M3 [E, N/128·32, ⌈K/64⌉·16]`.
    static func storedParts(_ tensor: TensorInfo, layout: TorchAOLayout) -> [StoredPart] {
        let (e, n, k) = (tensor.shape[0], tensor.shape[1], tensor.shape[2])
        let scale = ScaleLayout.swizzled.storedShape(rows: n, blocks: k / 16)
        return [
            StoredPart(part: .weightGlobalScale, tensor: PlannedTensor(name: layout.storedName(.perTensorScale, of: tensor.name), dtype: .f32, shape: [e, 1, 1])),
            StoredPart(part: .packed, tensor: PlannedTensor(name: layout.storedName(.packed, of: tensor.name), dtype: .u8, shape: [e, n, k / 2])),
            StoredPart(part: .blockScales, tensor: PlannedTensor(name: layout.storedName(.blockScales, of: tensor.name), dtype: .f8E4M3, shape: [e] + scale)),
        ]
    }

    /// Quantizes every expert (`matrices`, one `[N, K]` each, as the codec reads them) against its
    /// own scale and writes the three parts.
    static func write(
        _ tensor: TensorInfo, experts matrices: [CodecRows], options: QuantizeOptions, sink: any OutputSink, path: String
    ) throws -> (amax: [Float], scales: [Float], error: QuantizationError, importanceWeighted: Bool, errorFeedback: Bool) {
        let (experts, rows, columns) = (tensor.shape[0], tensor.shape[1], tensor.shape[2])
        var codecs: [NVFP4Codec] = []
        var searches: [ScaleSearch?] = []
        var feedbacks: [ErrorFeedback?] = []
        let naming = StackedExpertNaming(tensor)
        for (e, matrix) in matrices.enumerated() {
            var expert = tensor
            expert.name = "\(tensor.name)[\(e)]"
            codecs.append(try QuantizeJob.makeCodec(for: matrix, tensor: expert, options: options, path: path))
            let perExpert = naming.map { StackedExpertNaming.weightName(of: $0.slices[e * $0.leaves.count]) }
            let statisticsName = perExpert.flatMap { options.importance?.modules[ImportanceStatistics.moduleName(ofWeight: $0)] != nil ? $0 : nil }
            searches.append(try QuantizeJob.scaleSearch(forWeight: statisticsName ?? tensor.name, columns: columns, options: options))
            let momentsName = try perExpert.flatMap { try options.statistics?.covers(weight: $0, columns: columns) == true ? $0 : nil }
            feedbacks.append(try QuantizeJob.errorFeedback(forWeight: momentsName ?? tensor.name, columns: columns, options: options))
        }
        for codec in codecs {
            var bits = codec.scale.perTensorScale!.bitPattern.littleEndian
            try withUnsafeBytes(of: &bits) { try sink.write($0) }
        }
        let scaleBytes = ScaleLayout.swizzled.storedByteCount(rows: rows, blocks: columns / 16)
        // Every expert's scales follow all the packed data: kept when they fit the limit, else
        // computed again expert by expert afterwards (same bytes; one more codec pass).
        let keepsScales = experts * scaleBytes <= options.scaleBufferLimit
        let scaleBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, keepsScales ? experts * scaleBytes : scaleBytes), alignment: 64)
        defer { scaleBuffer.deallocate() }
        let packed = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, rows * columns / 2), alignment: 64)
        defer { packed.deallocate() }
        /// Quantizes expert `e` into `packed` and its scales into the scale buffer (merging its
        /// chunks' error sums into `error` one by one); returns those scales.
        func quantize(_ e: Int, error: inout QuantizationError) -> UnsafeMutableRawBufferPointer {
            let slot = keepsScales ? e : 0
            let scales = UnsafeMutableRawBufferPointer(rebasing: scaleBuffer[(slot * scaleBytes)..<((slot + 1) * scaleBytes)])
            scales.initializeMemory(as: UInt8.self, repeating: 0)  // swizzled padding must read as zero
            QuantizeJob.quantizeRows(
                matrices[e], rows: 0..<rows, codec: codecs[e], packed: packed, scales: scales, layout: .swizzled, threads: options.threads,
                search: searches[e], feedback: feedbacks[e], error: &error)
            return scales
        }
        var total = QuantizationError()
        for e in 0..<experts {
            _ = quantize(e, error: &total)
            try sink.write(UnsafeRawBufferPointer(packed))
        }
        if keepsScales {
            try sink.write(UnsafeRawBufferPointer(rebasing: scaleBuffer[0..<(experts * scaleBytes)]))
        } else {
            var discarded = QuantizationError()
            for e in 0..<experts { try sink.write(UnsafeRawBufferPointer(quantize(e, error: &discarded))) }
        }
        return (codecs.map(\.scale.amax), codecs.map { $0.scale.perTensorScale! }, total, searches.contains { $0?.importance != nil },
                feedbacks.contains { $0 != nil })
    }
}
