/// Settings of one quantization run.
public struct QuantizeOptions: Sendable {
    public var mode: ScalingMode = .twoLevel
    public var numerics: DivisionNumerics = .cuda
    public var selection = TensorSelection()
    /// torchao's dynamic NVFP4 activations (`true`) or weight-only (`false`).
    public var dynamicActivations = true
    /// Worker threads; the output does not depend on it.
    public var threads = ParallelLoop.availableCores
    /// Which SHA-256 sums the run computes (for the manifest); the output does not depend on it.
    public var hashes: HashScope = .output
    /// Packed output computed at a time into one buffer of the write-behind pool (also the size
    /// of the pool's buffers); the output does not depend on it. A wave holds at least one
    /// 128-row chunk.
    public var waveBytes = 8 << 20
    /// How output files are written (`--io`); the bytes do not depend on it. Used where the job
    /// opens files itself (model folders); a caller's sink is its own.
    public var outputIO: OutputIO = .direct
    /// The most bytes of block scales kept in memory for one tensor; a tensor with more has its
    /// scales computed a second time, wave by wave, after its packed data (same bytes, one more
    /// codec pass). Bounds memory for any tensor size.
    public var scaleBufferLimit = 64 << 20
    /// The checkpoint layout written (`--format`).
    public var format: CheckpointFormat = .torchao
    /// Per-tensor scale inputs decided outside the file: shared amax of fused groups and
    /// calibrated activation amax (see ``ScalePlan``).
    public var scalePlan = ScalePlan()
    /// How block scales are chosen: torchao's round-to-nearest, or the error-minimizing search.
    public var method: QuantizationMethod = .rtn
    /// Codes searched on each side of the RTN code by `.mse`.
    public var searchRadius = ScaleSearch.defaultRadius
    /// Activation statistics that weight the `.mse` search (`--importance`), and their file.
    public var importance: ImportanceStatistics?
    public var importancePath: String?
    /// Whether DeepSeek-style MLA attention projections (q_a/kv_a, q_b, o) are kept or quantized
    /// (`--mla-attention`); `kv_b_proj` is always kept.
    public var mlaAttention: MLAAttentionPolicy = .keep
    /// The `[rows, columns]` block of block-scaled FP8 weights where no `config.json` names it
    /// (`--fp8-block-size`, a bare file).
    public var fp8BlockSize: [Int]?
    /// Input second moments for `.gptq` (`--statistics`); its file path is `statistics.path`.
    public var statistics: InputStatistics?

    public init() {}

    /// The layout these options write.
    public var layout: any WeightLayout { format.layout(mode: mode, dynamicActivations: dynamicActivations) }
}

/// Which files' SHA-256 a run computes for the manifest.
///
/// The output's sum is what `verify` checks a file against later; the input's records provenance
/// but costs one more full read of the input (about 1.2 CPU-seconds per 2 GiB here).
public enum HashScope: String, Sendable, CaseIterable {
    /// Input and output.
    case all
    /// The output only (the default).
    case output
    /// Neither.
    case none

    public var hashesInput: Bool { self == .all }
    public var hashesOutput: Bool { self != .none }
}

/// What happened to one input tensor.
public struct TensorReport: Sendable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public var decision: TensorDecision
    /// The output tensors written for it.
    public var outputs: [String] {
        get { outputStorage ?? [name] }
        set { outputStorage = newValue == [name] ? nil : newValue }
    }
    /// ``outputs``, or `nil` for a kept tensor's one output, itself (no list per tensor).
    var outputStorage: [String]? = nil
    /// max |w| (quantized tensors only).
    public var amax: Float?
    /// The fp32 per-tensor scale (two-level only).
    public var perTensorScale: Float?
    /// The activation's per-tensor scale (calibrated amax / 2688), when calibrated.
    public var inputScale: Float?
    /// The reconstruction error measured while quantizing.
    public var error: QuantizationError?
    /// Whether the `.mse` search was weighted by this module's activation statistics.
    public var importanceWeighted = false
    /// Whether `.gptq` solved it with error feedback from its input statistics.
    public var errorFeedback = false
}

/// A file's identity for the manifest.
public struct FileSummary: Sendable {
    public var path: String
    public var byteCount: UInt64
    /// Lowercase hex, or `nil` when not computed (`--hash`).
    public var sha256: String?
}

/// The outcome of ``QuantizeJob/run(reader:sink:options:progress:)``.
public struct QuantizeResult: Sendable {
    public var tensors: TensorReports
    public var input: FileSummary
    public var output: FileSummary
    /// Bytes of tensor data written (an index's `total_size` sums these).
    public var dataBytes: Int = 0
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

    /// Quantizes one safetensors file into `sink`: plans it as a folder of one shard and writes
    /// that shard (``QuantizePlan/init(file:options:calibration:)``, ``PlanExecutor``).
    ///
    /// - Parameters:
    ///   - reader: The input, header already read. Formats whose fused layers share a global scale
    ///     read those weights twice: give them a random-access reader.
    ///   - sink: The output; sealed on success (the caller publishes it), aborted on failure.
    ///   - progress: Advanced after each tensor.
    /// - Throws: ``FileError`` for bad input (naming the file and tensor), ``SystemError`` for I/O.
    public static func run(
        reader: SafetensorsReader, sink: any OutputSink, options: QuantizeOptions, progress: JobProgress? = nil
    ) throws -> QuantizeResult {
        let plan: QuantizePlan
        do { plan = try QuantizePlan(file: reader, options: options) } catch {
            sink.abort()
            throw error
        }
        return try PlanExecutor.writeShard(0, of: plan, reader: reader, sink: sink, progress: progress)
    }

    /// Checks the weight's values and derives its per-tensor scale.
    ///
    /// A member of a fused group that shares a scale was already read by the plan's pre-pass
    /// (values checked, amax measured, the group's max taken): it uses that amax without a
    /// second pass over its data.
    static func makeCodec(
        for matrix: CodecRows, tensor: TensorInfo, options: QuantizeOptions, path: String
    ) throws(FileError) -> NVFP4Codec {
        var amax = options.scalePlan.sharedAmax[tensor.name] ?? 0
        if options.scalePlan.sharedAmax[tensor.name] == nil {
            amax = try matrix.magnitudeMaximum(tensor: tensor.name, threads: options.threads, path: path)
        }
        return try makeCodec(amax: amax, tensor: tensor, options: options, path: path)
    }

    /// The codec of a weight whose (finite) largest magnitude is `amax`.
    static func makeCodec(amax: Float, tensor: TensorInfo, options: QuantizeOptions, path: String) throws(FileError) -> NVFP4Codec {
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
    ///
    /// The block scales follow all the packed data in every layout, so they are kept until then.
    /// When they would take more than `scaleBufferLimit` bytes, they are not kept: each wave's
    /// scales are computed again after the packed data is written (a second codec pass over that
    /// tensor), so memory stays bounded for any tensor size, and the bytes are the same.
    static func writeQuantized(
        _ matrix: CodecRows, codec: NVFP4Codec, layout: any WeightLayout, parts: [StoredPart], scales: WeightScales,
        sink: WriteBehindSink, threads: Int, waveBytes: Int = QuantizeOptions().waveBytes, scratch: ScratchBuffers = ScratchBuffers(),
        search: ScaleSearch? = nil, feedback: ErrorFeedback? = nil, scaleBufferLimit: Int = QuantizeOptions().scaleBufferLimit
    ) throws -> QuantizationError {
        let blocks = matrix.columns / NVFP4Codec.blockSize
        let scaleLayout = layout.scaleLayout
        let scaleByteCount = scaleLayout.storedByteCount(rows: matrix.rows, blocks: blocks)
        let keepsScales = scaleByteCount <= scaleBufferLimit
        let rowBytes = matrix.columns / 2
        let waveRows = max(rowsPerChunk, waveBytes / max(1, rowBytes) / rowsPerChunk * rowsPerChunk)
        let waves = stride(from: 0, to: matrix.rows, by: waveRows).map { $0..<min(matrix.rows, $0 + waveRows) }
        // All of the tensor's scales, or one wave's (waves start on a 128-row band, so a wave's
        // scales are a contiguous slice of the tensor's in both layouts).
        let scaleBytes = scratch.scales(byteCount: keepsScales ? scaleByteCount : scaleLayout.storedByteCount(rows: waveRows, blocks: blocks))
        var error = QuantizationError()
        let order = parts.map(\.part)
        precondition(
            (order.firstIndex(of: .packed) ?? -1) < (order.firstIndex(of: .blockScales) ?? Int.max),
            "a layout must store the packed data before the block scales, which the codec fills while packing")
        /// Quantizes one wave into `packed`, its scales into `scaleBytes` (whole tensor, or this
        /// wave's slice), merging its chunks' error sums into `error` one by one.
        func quantize(_ rows: Range<Int>, into packed: UnsafeMutableRawBufferPointer, error: inout QuantizationError) {
            if keepsScales {
                quantizeRows(
                    matrix, rows: rows, codec: codec, packed: packed, scales: scaleBytes, layout: scaleLayout, threads: threads,
                    search: search, feedback: feedback, error: &error)
                return
            }
            let slice = UnsafeMutableRawBufferPointer(rebasing: scaleBytes[0..<scaleLayout.storedByteCount(rows: rows.count, blocks: blocks)])
            slice.initializeMemory(as: UInt8.self, repeating: 0)  // swizzled padding must read as zero
            quantizeRows(
                matrix.rows(rows), rows: 0..<rows.count, codec: codec, packed: packed, scales: slice, layout: scaleLayout, threads: threads,
                search: search, feedback: feedback, error: &error)
        }
        for part in order {
            switch part {
            case .weightGlobalScale, .inputGlobalScale:
                var bits = layout.scalarValue(part, scales: scales).bitPattern.littleEndian
                try withUnsafeBytes(of: &bits) { try sink.write($0) }
            case .packed:
                // Each wave is computed into a pool buffer of the write-behind sink, which hashes and
                // writes it on its own thread while the next wave (or tensor) is computed.
                for rows in waves {
                    let wave = try sink.reserve(byteCount: rows.count * rowBytes)
                    quantize(rows, into: wave, error: &error)
                    sink.commit(byteCount: wave.count)
                }
            case .blockScales:
                if keepsScales {
                    try sink.write(UnsafeRawBufferPointer(rebasing: scaleBytes[0..<scaleByteCount]))
                    continue
                }
                // The codec again, wave by wave, for the scales only (same bytes: it is deterministic).
                let discarded = scratch.packed(byteCount: waveRows * rowBytes)
                var discardedError = QuantizationError()
                for rows in waves {
                    quantize(rows, into: discarded, error: &discardedError)
                    try sink.write(UnsafeRawBufferPointer(rebasing: scaleBytes[0..<scaleLayout.storedByteCount(rows: rows.count, blocks: blocks)]))
                }
            }
        }
        return error
    }

    /// Quantizes `rows` of `matrix` in 128-row chunks on `threads` threads into `packed` (the rows'
    /// packed bytes) and `scales` (stored as for the whole of `matrix`), and merges each chunk's
    /// error sums into `error` in chunk order: so a tensor's sums are the same for any thread count
    /// and wave size, and equal what `verify` measures (``VerifyJob``), which merges the same way.
    static func quantizeRows(
        _ matrix: DenseMatrix, rows: Range<Int>, codec: NVFP4Codec, packed: UnsafeMutableRawBufferPointer,
        scales: UnsafeMutableRawBufferPointer, layout: ScaleLayout, threads: Int, search: ScaleSearch? = nil,
        feedback: ErrorFeedback? = nil, error: inout QuantizationError
    ) {
        quantizeRows(
            .dense(matrix), rows: rows, codec: codec, packed: packed, scales: scales, layout: layout, threads: threads, search: search,
            feedback: feedback, error: &error)
    }

    /// ``quantizeRows(_:rows:codec:packed:scales:layout:threads:search:error:)`` of dense or FP8
    /// rows: an FP8 chunk is dequantized (``FP8Matrix/codecRows(_:into:)``) into a buffer of its own
    /// just before the codec reads it (chunks start on a 128-row band, so their scales are a contiguous slice in both layouts).
    static func quantizeRows(
        _ matrix: CodecRows, rows: Range<Int>, codec: NVFP4Codec, packed: UnsafeMutableRawBufferPointer,
        scales: UnsafeMutableRawBufferPointer, layout: ScaleLayout, threads: Int, search: ScaleSearch? = nil,
        feedback: ErrorFeedback? = nil, error: inout QuantizationError
    ) {
        let rowBytes = matrix.columns / 2
        let blocks = matrix.columns / NVFP4Codec.blockSize
        let chunks = ceilDiv(rows.count, rowsPerChunk)
        var errors = [QuantizationError](repeating: QuantizationError(), count: chunks)
        errors.withUnsafeMutableBufferPointer { partial in
            let results = partial
            ParallelLoop.run(iterations: chunks, threads: threads) { chunk in
                let start = rows.lowerBound + chunk * rowsPerChunk
                let chunkRows = start..<min(rows.upperBound, start + rowsPerChunk)
                let target = UnsafeMutableRawBufferPointer(
                    rebasing: packed[((start - rows.lowerBound) * rowBytes)..<((chunkRows.upperBound - rows.lowerBound) * rowBytes)])
                func run(_ dense: DenseMatrix, _ denseRows: Range<Int>, _ scales: UnsafeMutableRawBufferPointer) {
                    if let feedback {
                        codec.quantize(dense, rows: denseRows, packed: target, scales: scales, layout: layout, feedback: feedback, error: &results[chunk])
                    } else if let search {
                        codec.quantize(dense, rows: denseRows, packed: target, scales: scales, layout: layout, search: search, error: &results[chunk])
                    } else {
                        codec.quantize(dense, rows: denseRows, packed: target, scales: scales, layout: layout, error: &results[chunk])
                    }
                }
                switch matrix {
                case .dense(let dense):
                    run(dense, chunkRows, scales)
                case .fp8(let fp8, let buffers):
                    buffers.with(byteCount: fp8.codecByteCount(rows: chunkRows.count)) { buffer in
                        let offset = layout.storedByteCount(rows: chunkRows.lowerBound, blocks: blocks)
                        run(fp8.codecRows(chunkRows, into: buffer), 0..<chunkRows.count, UnsafeMutableRawBufferPointer(rebasing: scales[offset...]))
                    }
                }
            }
        }
        for e in errors { error.merge(e) }
    }
}

extension WriteBehindSink {
    /// Kept tensors of a mapped input from this size on are written from the mapping, not copied.
    static let retainedWriteMinimum = 1 << 20

    /// Writes `tensor` of `reader` as it is and releases its mapped pages once written. A large
    /// one (an embedding) of a mapped input is handed to the stages straight from the mapping,
    /// behind the producer, and released when both are done with it; a small one (a norm, a bias)
    /// or one from a stream is copied, so that it shares the pool's buffers.
    func writeKept(_ tensor: TensorInfo, from reader: SafetensorsReader) throws {
        if let file = reader.mappedFile, tensor.byteCount >= Self.retainedWriteMinimum {
            let range = reader.mappedRange(of: tensor)
            try reader.withBytes(of: tensor) { try write(retaining: $0) { file.release(range) } }
        } else {
            try reader.withBytes(of: tensor) { try write($0) }
            reader.release(tensor)
        }
    }
}
