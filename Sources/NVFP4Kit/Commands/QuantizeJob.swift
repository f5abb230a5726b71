/// Settings of one quantization run.
public struct QuantizeOptions: Sendable {
    public var mode: ScalingMode = .twoLevel
    public var numerics: DivisionNumerics = .cuda
    public var selection = TensorSelection()
    /// torchao's dynamic NVFP4 activations (`true`) or weight-only (`false`).
    public var dynamicActivations = true
    /// Worker threads; the output does not depend on it.
    public var threads = ParallelLoop.availableCores
    /// How block scales are chosen: torchao's round-to-nearest, or the error-minimizing search.
    public var method: QuantizationMethod = .rtn
    /// Codes searched on each side of the RTN code by `.mse`.
    public var searchRadius = ScaleSearch.defaultRadius
    /// Activation statistics that weight the `.mse` search (`--importance`), and their file.
    public var importance: ImportanceStatistics?
    public var importancePath: String?

    public init() {}
}

/// What happened to one input tensor.
public struct TensorReport: Sendable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public var decision: TensorDecision
    /// The output tensors written for it.
    public var outputs: [String]
    /// max |w| (quantized tensors only).
    public var amax: Float?
    /// The fp32 per-tensor scale (two-level only).
    public var perTensorScale: Float?
    /// The reconstruction error measured while quantizing.
    public var error: QuantizationError?
    /// Whether the `.mse` search was weighted by this module's activation statistics.
    public var importanceWeighted = false
}

/// A file's identity for the manifest.
public struct FileSummary: Sendable {
    public var path: String
    public var byteCount: UInt64
    public var sha256: String
}

/// The outcome of ``QuantizeJob/run(reader:sink:options:progress:)``.
public struct QuantizeResult: Sendable {
    public var tensors: [TensorReport]
    public var input: FileSummary
    public var output: FileSummary
}

/// Streams a safetensors checkpoint through the NVFP4 codec into torchao's layout.
///
/// The output header is derived from the input header before any data is read. Tensors are then
/// processed in file order: kept tensors are copied, quantized ones read once for amax and once
/// for the codec, 128 rows at a time. Memory is bounded by one tensor's block scales plus one row
/// chunk, apart from the input mapping, whose pages are released behind the cursor.
public enum QuantizeJob {
    /// Rows quantized per chunk: a whole band of the 128-row swizzled scale tiles.
    static let rowsPerChunk = 128
    /// Packed output produced between two writes.
    static let waveBytes = 8 << 20

    /// Plans the output of `header` without reading data: decisions and the output header.
    public static func plan(
        header: SafetensorsHeader, options: QuantizeOptions
    ) -> (decisions: [TensorDecision], layout: SafetensorsLayoutPlan) {
        let torchao = TorchAOLayout(mode: options.mode, dynamicActivations: options.dynamicActivations)
        var decisions: [TensorDecision] = []
        var planned: [PlannedTensor] = []
        var described: [(key: String, value: String)] = []
        for tensor in header.tensors {
            let decision = options.selection.decide(tensor)
            decisions.append(decision)
            if decision == .quantize {
                for part in torchao.parts {
                    planned.append(torchao.plannedTensor(part, of: tensor.name, rows: tensor.shape[0], columns: tensor.shape[1]))
                }
                described.append((tensor.name, torchao.weightMetadata(originalDtype: tensor.dtype)))
            } else {
                planned.append(PlannedTensor(name: tensor.name, dtype: tensor.dtype, shape: tensor.shape))
                described.append((tensor.name, TorchAOLayout.plainTensorMetadata))
            }
        }
        let ours = Set(described.map(\.key) + ["tensor_names"])
        var metadata = header.metadata.filter { !ours.contains($0.key) }
        metadata += described
        metadata.append(("tensor_names", JSONValue.array(header.tensors.map { .string($0.name) }).serialized(.python)))
        return (decisions, SafetensorsLayoutPlan(tensors: planned, metadata: metadata))
    }

    /// Runs the whole conversion.
    ///
    /// - Parameters:
    ///   - reader: The input, header already read.
    ///   - sink: The output; sealed on success (the caller publishes it), aborted on failure.
    ///   - options: The settings.
    ///   - progress: Called after each tensor with (bytes done, total bytes).
    /// - Throws: ``FileError`` for bad input (naming the file and tensor), ``SystemError`` for I/O.
    public static func run(
        reader: SafetensorsReader, sink: any OutputSink, options: QuantizeOptions,
        progress: ((UInt64, UInt64) -> Void)? = nil
    ) throws -> QuantizeResult {
        do {
            let result = try convert(reader: reader, sink: sink, options: options, progress: progress)
            return result
        } catch {
            sink.abort()
            throw error
        }
    }

    private static func convert(
        reader: SafetensorsReader, sink: any OutputSink, options: QuantizeOptions,
        progress: ((UInt64, UInt64) -> Void)?
    ) throws -> QuantizeResult {
        let header = reader.header
        let (decisions, layout) = plan(header: header, options: options)
        let torchao = TorchAOLayout(mode: options.mode, dynamicActivations: options.dynamicActivations)
        try checkImportance(header: header, decisions: decisions, options: options)
        try sink.write(layout.headerBytes)
        var reports: [TensorReport] = []
        var done: UInt64 = 0
        for (tensor, decision) in zip(header.tensors, decisions) {
            var report = TensorReport(
                name: tensor.name, dtype: tensor.dtype, shape: tensor.shape, decision: decision, outputs: [tensor.name])
            if decision == .quantize {
                report.outputs = torchao.parts.map { torchao.storedName($0, of: tensor.name) }
                try reader.withBytes(of: tensor) { bytes in
                    let matrix = DenseMatrix(bytes: bytes, dtype: tensor.dtype, rows: tensor.shape[0], columns: tensor.shape[1])
                    let codec = try makeCodec(for: matrix, tensor: tensor, options: options, path: reader.displayPath)
                    report.amax = codec.scale.amax
                    report.perTensorScale = codec.scale.perTensorScale
                    let search = try scaleSearch(for: tensor, options: options)
                    report.importanceWeighted = search?.importance != nil
                    report.error = try writeQuantized(
                        matrix, codec: codec, layout: torchao, sink: sink, threads: options.threads, search: search)
                }
            } else {
                try reader.withBytes(of: tensor) { try sink.write($0) }
            }
            reader.release(tensor)
            reports.append(report)
            done += UInt64(tensor.byteCount)
            progress?(done, header.dataByteCount)
        }
        let input = try reader.finish()
        let output = try sink.seal()
        return QuantizeResult(
            tensors: reports,
            input: FileSummary(path: reader.displayPath, byteCount: input.byteCount, sha256: input.sha256),
            output: FileSummary(path: sink.displayPath, byteCount: output.byteCount, sha256: output.sha256))
    }

    /// Checks the weight's values and derives its per-tensor scale.
    static func makeCodec(
        for matrix: DenseMatrix, tensor: TensorInfo, options: QuantizeOptions, path: String
    ) throws(FileError) -> NVFP4Codec {
        let (amax, bad) = ParallelLoop.magnitudeMaximum(matrix, threads: options.threads)
        if let bad {
            throw FileError(path: path, cause: WeightError.nonFinite(
                tensor: tensor.name, index: bad, row: bad / matrix.columns, column: bad % matrix.columns))
        }
        do {
            let scale = try TensorScale(amax: amax, mode: options.mode, numerics: options.numerics, tensor: tensor.name)
            return NVFP4Codec(scale: scale, numerics: options.numerics)
        } catch {
            throw FileError(path: path, cause: error)
        }
    }

    /// Quantizes `matrix` and writes its parts in the layout's order.
    ///
    /// Rows are cut into fixed chunks of ``rowsPerChunk``; chunks of one wave (about
    /// ``waveBytes`` of packed output) run on `threads` threads, then the wave is written. The
    /// chunking never depends on the thread count, so bytes and error sums are identical for every N.
    static func writeQuantized(
        _ matrix: DenseMatrix, codec: NVFP4Codec, layout: TorchAOLayout, sink: any OutputSink, threads: Int,
        search: ScaleSearch? = nil
    ) throws -> QuantizationError {
        let blocks = matrix.columns / NVFP4Codec.blockSize
        let scaleByteCount = layout.scaleLayout.storedByteCount(rows: matrix.rows, blocks: blocks)
        let scaleBytes = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, scaleByteCount), alignment: 64)
        defer { scaleBytes.deallocate() }
        scaleBytes.initializeMemory(as: UInt8.self, repeating: 0)
        let rowBytes = matrix.columns / 2
        let waveRows = max(rowsPerChunk, waveBytes / max(1, rowBytes) / rowsPerChunk * rowsPerChunk)
        let wave = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, min(matrix.rows, waveRows) * rowBytes), alignment: 64)
        defer { wave.deallocate() }
        var error = QuantizationError()
        for part in layout.parts {
            switch part {
            case .perTensorScale:
                var bits = codec.scale.perTensorScale!.bitPattern.littleEndian
                try withUnsafeBytes(of: &bits) { try sink.write($0) }
            case .packed:
                var first = 0
                while first < matrix.rows {
                    let rows = first..<min(matrix.rows, first + waveRows)
                    let chunks = ceilDiv(rows.count, rowsPerChunk)
                    var errors = [QuantizationError](repeating: QuantizationError(), count: chunks)
                    errors.withUnsafeMutableBufferPointer { partial in
                        let results = partial
                        ParallelLoop.run(iterations: chunks, threads: threads) { chunk in
                            let start = rows.lowerBound + chunk * rowsPerChunk
                            let chunkRows = start..<min(rows.upperBound, start + rowsPerChunk)
                            let target = UnsafeMutableRawBufferPointer(
                                rebasing: wave[((start - rows.lowerBound) * rowBytes)..<((chunkRows.upperBound - rows.lowerBound) * rowBytes)])
                            if let search {
                                codec.quantize(matrix, rows: chunkRows, packed: target, scales: scaleBytes, layout: layout.scaleLayout, search: search, error: &results[chunk])
                            } else {
                                codec.quantize(matrix, rows: chunkRows, packed: target, scales: scaleBytes, layout: layout.scaleLayout, error: &results[chunk])
                            }
                        }
                    }
                    for e in errors { error.merge(e) }
                    try sink.write(UnsafeRawBufferPointer(rebasing: wave[0..<(rows.count * rowBytes)]))
                    first = rows.upperBound
                }
            case .blockScales:
                try sink.write(UnsafeRawBufferPointer(rebasing: scaleBytes[0..<scaleByteCount]))
            }
        }
        return error
    }
}
