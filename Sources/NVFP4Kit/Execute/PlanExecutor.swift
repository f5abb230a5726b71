/// Writes a ``QuantizePlan``, one output shard at a time.
///
/// The output header comes from the plan before any data is read. Tensors are then written in
/// the plan's order by their write kind: kept tensors are copied; 2-D matrices, torchao's stacked
/// experts and per-expert slices all go through one codec entry (``QuantizeJob/writeQuantized``
/// or, for torchao's 3-D layout, ``QuantizeJob/quantizeRows``), so every method and option applies
/// to every kind. Memory is bounded by one tensor's block scales plus one wave of rows, apart from
/// the input mapping, whose pages are released behind the cursor.
public enum PlanExecutor {
    /// Writes output shard `index` of `plan`, reading input shard `plan.outputShards[index].input` from `reader`.
    ///
    /// - Parameters:
    ///   - sink: The output; sealed on success (the caller publishes it), aborted on failure. It
    ///     need not hash: the executor hashes the output itself as `plan.options.hashes` asks.
    ///   - progress: Advanced by each tensor's input bytes, named by the tensor.
    public static func writeShard(
        _ index: Int, of plan: QuantizePlan, reader: SafetensorsReader, sink: any OutputSink, progress: JobProgress? = nil
    ) throws -> QuantizeResult {
        let options = plan.options
        // Hashing and writing run behind the codec, each on its own thread.
        let behind = WriteBehindSink(wrapping: sink, bufferBytes: max(options.waveBytes, 1 << 16), hashing: options.hashes.hashesOutput)
        do {
            return try write(index, of: plan, reader: reader, sink: behind, progress: progress)
        } catch {
            behind.abort()  // waits for the writer, then aborts `sink`
            throw error
        }
    }

    private static func write(
        _ index: Int, of plan: QuantizePlan, reader: SafetensorsReader, sink: WriteBehindSink, progress: JobProgress?
    ) throws -> QuantizeResult {
        let options = plan.options
        let entries = plan.tensors(ofOutputShard: index)
        try ImportanceCheck.run(entries, options: options)
        try StatisticsCheck.run(entries, options: options)
        // The header (a hundred megabytes for a million tensors) is streamed, never held.
        let dataBytes = try plan.writeOutputHeader(ofOutputShard: index, to: sink)
        let source = SourceReader(reader: reader, shard: plan.outputShards[index].input, threads: options.threads, open: plan.openInputShard)
        let writer = TensorWriter(options: options, layout: options.layout, input: source, sink: sink)
        var reports = TensorReports(plan: plan, outputShard: index)
        for entry in entries {
            reports.append(try writer.write(entry))
            progress?.advance(UInt64(entry.tensor.byteCount), item: entry.tensor.name)
        }
        // Kept tensors may still be read from the input's mapping until the writer is done.
        try sink.flush()
        let input = try reader.finish()
        let output = try sink.seal()
        return QuantizeResult(
            tensors: reports,
            input: FileSummary(path: reader.displayPath, byteCount: input.byteCount, sha256: input.sha256),
            output: FileSummary(path: sink.displayPath, byteCount: output.byteCount, sha256: output.sha256),
            dataBytes: dataBytes)
    }
}

/// Writes one planned tensor by its kind.
struct TensorWriter {
    let options: QuantizeOptions
    let layout: any WeightLayout
    let input: SourceReader
    let sink: WriteBehindSink
    var reader: SafetensorsReader { input.reader }
    let scratch = ScratchBuffers()
    let chunks = ChunkBuffers()

    /// Writes `entry`; returns its report when the writing measured something (a quantized
    /// weight), `nil` when the plan entry says all there is (``TensorReports``).
    func write(_ entry: TensorPlan) throws -> TensorReport? {
        let tensor = entry.tensor
        if entry.kind == .kept {
            try sink.writeKept(tensor, from: reader)
            return nil
        }
        var report = TensorReport(planned: entry)
        var measured = true
        switch entry.kind {
        case .kept:
            preconditionFailure("written above")
        case .consumed:
            try input.remember(entry)
            measured = false
        case .dequantized:
            try writeDequantized(entry)
            measured = false
        case .matrix:
            // An FP8 weight is dequantized 128 rows at a time, right before the codec reads them.
            try input.withMatrices(of: entry, buffers: chunks) { matrices in
                // A fused member that shares a scale uses the group's amax from the plan's pre-pass.
                let codec = try QuantizeJob.makeCodec(for: matrices[0], tensor: entry.source, options: options, path: reader.displayPath)
                try writeMatrix(matrices[0], weight: tensor.name, codec: codec, into: &report)
            }
        case .stackedExperts:
            let written = try input.withMatrices(of: entry, buffers: chunks) { experts in
                try StackedExperts.write(entry.source, experts: experts, options: options, sink: sink, path: reader.displayPath)
            }
            report.amax = written.amax.max()
            report.error = written.error
            report.importanceWeighted = written.importanceWeighted
            report.errorFeedback = written.errorFeedback
        case .expertSlices(let naming):
            try input.withMatrices(of: entry, buffers: chunks) { experts in
                try writeSlices(naming, tensor: entry.source, experts: experts, into: &report)
            }
        }
        reader.release(tensor)
        input.finished(entry)
        return measured ? report : nil
    }

    /// Quantizes one 2-D weight (a whole tensor or an expert's slice) and writes its parts in the layout's order.
    private func writeMatrix(_ matrix: CodecRows, weight name: String, codec: NVFP4Codec, into report: inout TensorReport) throws {
        let parts = layout.storedParts(
            ofWeight: name, rows: matrix.rows, columns: matrix.columns, calibrated: options.scalePlan.inputAmax[name] != nil)
        let scales = try options.scalePlan.scales(for: name, codec: codec, numerics: options.numerics, path: reader.displayPath)
        let search = try QuantizeJob.scaleSearch(forWeight: name, columns: matrix.columns, options: options)
        let feedback = try QuantizeJob.errorFeedback(forWeight: name, columns: matrix.columns, options: options)
        let error = try QuantizeJob.writeQuantized(
            matrix, codec: codec, layout: layout, parts: parts, scales: scales, sink: sink, threads: options.threads,
            waveBytes: options.waveBytes, scratch: scratch, search: search, feedback: feedback, scaleBufferLimit: options.scaleBufferLimit)
        report.amax = max(report.amax ?? 0, codec.scale.amax)
        report.perTensorScale = report.perTensorScale ?? codec.scale.perTensorScale
        report.inputScale = report.inputScale ?? scales.input
        report.importanceWeighted = report.importanceWeighted || search?.importance != nil
        report.errorFeedback = report.errorFeedback || feedback != nil
        var total = report.error ?? QuantizationError()
        total.merge(error)
        report.error = total
    }

    /// A kept FP8 weight's dequantization, matrix by matrix, 128 rows at a time.
    private func writeDequantized(_ entry: TensorPlan) throws {
        try input.withMatrices(of: entry, buffers: chunks) { matrices in
            for case .fp8(let fp8, _) in matrices {
                for start in stride(from: 0, to: fp8.rows, by: QuantizeJob.rowsPerChunk) {
                    let rows = start..<min(fp8.rows, start + QuantizeJob.rowsPerChunk)
                    try chunks.with(byteCount: fp8.denseByteCount(rows: rows.count)) { buffer in
                        try sink.write(fp8.dequantize(rows, into: buffer).bytes)
                    }
                }
            }
        }
    }

    /// Each expert's slices, expert by expert: the slices of one expert (gate and up of a fused
    /// `gate_up_proj`) share that expert's global scale, from the amax over the whole expert.
    private func writeSlices(_ naming: StackedExpertNaming, tensor: TensorInfo, experts: [CodecRows], into report: inout TensorReport) throws {
        let slices = naming.slices
        for (e, expert) in experts.enumerated() {
            var named = tensor
            named.name = "\(tensor.name)[\(e)]"
            let codec = try QuantizeJob.makeCodec(for: expert, tensor: named, options: options, path: reader.displayPath)
            for slice in slices where slice.expert == e {
                try writeMatrix(expert.rows(slice.rows), weight: StackedExpertNaming.weightName(of: slice), codec: codec, into: &report)
            }
        }
        report.perTensorScale = nil  // one per expert: see the outputs
    }
}
