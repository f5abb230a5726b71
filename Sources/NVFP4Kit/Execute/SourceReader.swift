/// Reads planned tensors of one input shard in the dtype the codec and the writers read: the
/// stored bytes, or an FP8 weight's dequantization (``FP8Dequantizer``) into a buffer reused
/// from tensor to tensor.
///
/// An FP8 weight's scale may lie in this shard or in another (found through the index): other
/// shards are opened on demand. A stream is read front to back, so the scales it holds are
/// remembered as the executor passes them (``remember(_:)``); files safetensors writes put them
/// before their weights (larger dtypes first). A scale that follows its weight in a stream is an error.
final class SourceReader {
    let reader: SafetensorsReader
    let shard: Int
    let threads: Int
    private let open: (Int) throws -> SafetensorsReader
    private var others: [Int: SafetensorsReader] = [:]
    private var remembered: [String: [Float]] = [:]
    private var buffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    /// - Parameter open: Opens input shard `i` (random access) when a scale lies in another shard.
    init(reader: SafetensorsReader, shard: Int, threads: Int, open: @escaping (Int) throws -> SafetensorsReader) {
        self.reader = reader
        self.shard = shard
        self.threads = threads
        self.open = open
    }

    deinit { buffer.deallocate() }

    /// Gives `body` an FP8 weight `[N, K]` as an ``FP8Matrix`` (its codes in place, its scales read).
    func withFP8Matrix<R>(of entry: TensorPlan, _ body: (FP8Matrix) throws -> R) throws -> R {
        guard let fp8 = entry.fp8, entry.tensor.shape.count == 2 else { preconditionFailure("not a 2-D FP8 weight") }
        let scales = try scaleValues(fp8, weight: entry.tensor.name)
        return try reader.withBytes(of: entry.tensor) { codes in
            try body(FP8Matrix(codes: codes, rows: entry.tensor.shape[0], columns: entry.tensor.shape[1], scales: scales, scaling: fp8.scaling))
        }
    }

    /// The largest magnitude of a 2-D weight as the codec reads it (an FP8 weight's from its codes
    /// and scales, without dequantizing it).
    ///
    /// - Throws: ``FileError`` naming the first non-finite element.
    func magnitudeMaximum(of entry: TensorPlan, buffers: ChunkBuffers) throws -> Float {
        if entry.fp8 != nil { return try withFP8Matrix(of: entry) { try magnitudeMaximum(of: $0, name: entry.tensor.name, buffers: buffers) } }
        return try reader.withBytes(of: entry.tensor) { bytes in
            let matrix = DenseMatrix(bytes: bytes, dtype: entry.tensor.dtype, rows: entry.tensor.shape[0], columns: entry.tensor.shape[1])
            let (value, bad) = ParallelLoop.magnitudeMaximum(matrix, threads: threads)
            if let bad { throw nonFinite(entry.tensor.name, index: bad, columns: matrix.columns) }
            return value
        }
    }

    /// The largest magnitude of `matrix`, the FP8 weight `name`.
    ///
    /// - Throws: ``FileError`` naming the first non-finite element.
    func magnitudeMaximum(of matrix: FP8Matrix, name: String, buffers: ChunkBuffers) throws -> Float {
        let amax = matrix.magnitudeMaximum(threads: threads)
        if amax.isFinite { return amax }
        throw nonFinite(name, index: matrix.firstNonFinite(buffers: buffers) ?? 0, columns: matrix.columns)
    }

    private func nonFinite(_ name: String, index: Int, columns: Int) -> FileError {
        FileError(path: reader.displayPath, cause: WeightError.nonFinite(tensor: name, index: index, row: index / columns, column: index % columns))
    }

    /// Forgets the remembered scale of an FP8 weight once the weight is written.
    func finished(_ entry: TensorPlan) {
        if let fp8 = entry.fp8 { remembered[fp8.scale.name] = nil }
    }

    /// Gives `body` the bytes of `entry`'s tensor as ``TensorPlan/source`` describes them, and that
    /// description: the stored bytes, or a whole FP8 tensor's dequantization (3-D weights, kept weights).
    func withSourceBytes<R>(of entry: TensorPlan, _ body: (UnsafeRawBufferPointer, TensorInfo) throws -> R) throws -> R {
        guard let fp8 = entry.fp8 else { return try reader.withBytes(of: entry.tensor) { try body($0, entry.tensor) } }
        let scales = try scaleValues(fp8, weight: entry.tensor.name)
        let source = entry.source
        let out = dequantizedBuffer(byteCount: source.byteCount)
        try reader.withBytes(of: entry.tensor) { codes in
            let shape = entry.tensor.shape
            FP8Dequantizer.dequantize(
                codes: codes, matrices: shape.count == 3 ? shape[0] : 1, rows: shape[shape.count - 2], columns: shape[shape.count - 1],
                scales: scales, scaling: fp8.scaling, into: out, threads: threads)
        }
        return try body(UnsafeRawBufferPointer(out), source)
    }

    /// Reads a consumed scale now if this shard is a stream (its weight may come later).
    func remember(_ entry: TensorPlan) throws {
        guard !reader.isRandomAccess, FP8Dequantizer.scaleDTypes.contains(entry.tensor.dtype) else { return }
        remembered[entry.tensor.name] = try reader.withBytes(of: entry.tensor) { FP8Dequantizer.scaleValues($0, dtype: entry.tensor.dtype) }
    }

    private func scaleValues(_ fp8: FP8Source, weight: String) throws -> [Float] {
        if fp8.scaleShard == shard {
            if let values = remembered[fp8.scale.name] { return values }
            guard reader.isRandomAccess else {
                throw FileError(path: reader.displayPath, cause: FP8Error.scaleAfterWeight(weight: weight, scale: fp8.scale.name))
            }
            return try reader.withBytes(of: fp8.scale) { FP8Dequantizer.scaleValues($0, dtype: fp8.scale.dtype) }
        }
        let other: SafetensorsReader
        if let opened = others[fp8.scaleShard] {
            other = opened
        } else {
            other = try open(fp8.scaleShard)
            others[fp8.scaleShard] = other
        }
        return try other.withBytes(of: fp8.scale) { FP8Dequantizer.scaleValues($0, dtype: fp8.scale.dtype) }
    }

    /// At least `byteCount` bytes, grown only when a tensor needs more.
    private func dequantizedBuffer(byteCount: Int) -> UnsafeMutableRawBufferPointer {
        if buffer.count < byteCount {
            buffer.deallocate()
            buffer = .allocate(byteCount: max(byteCount, 1), alignment: 64)
        }
        return UnsafeMutableRawBufferPointer(rebasing: buffer[0..<byteCount])
    }
}
