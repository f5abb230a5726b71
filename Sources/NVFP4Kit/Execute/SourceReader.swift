/// Reads planned tensors of one input shard as the codec and the writers read them: the stored
/// bytes, or an FP8 weight's codes and scales, dequantized (``FP8Dequantizer``) 128 rows at a
/// time as they are read, matrix by matrix (a stacked 3-D weight expert by expert).
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

    /// - Parameter open: Opens input shard `i` (random access) when a scale lies in another shard.
    init(reader: SafetensorsReader, shard: Int, threads: Int, open: @escaping (Int) throws -> SafetensorsReader) {
        self.reader = reader
        self.shard = shard
        self.threads = threads
        self.open = open
    }

    /// Gives `body` the matrices of `entry`'s tensor as the codec reads them, one `[N, K]` per
    /// expert of a 3-D tensor (else one): views of the stored bytes, or FP8 codes in place with
    /// their scales, dequantized 128 rows at a time into `buffers` as they are read.
    func withMatrices<R>(of entry: TensorPlan, buffers: ChunkBuffers, _ body: ([CodecRows]) throws -> R) throws -> R {
        let shape = entry.tensor.shape
        let matrices = shape.count == 3 ? shape[0] : 1
        let (rows, columns) = (shape[shape.count - 2], shape[shape.count - 1])
        guard let fp8 = entry.fp8 else {
            return try reader.withBytes(of: entry.tensor) { bytes in
                let size = rows * columns * entry.tensor.dtype.bitWidth / 8
                return try body((0..<matrices).map { e in
                    .dense(DenseMatrix(bytes: UnsafeRawBufferPointer(rebasing: bytes[(e * size)..<((e + 1) * size)]), dtype: entry.tensor.dtype, rows: rows, columns: columns))
                })
            }
        }
        let scales = try scaleValues(fp8, weight: entry.tensor.name)
        let grid = fp8.scaling.grid(rows: rows, columns: columns)
        let perMatrix = grid.rows * grid.columns
        return try reader.withBytes(of: entry.tensor) { codes in
            try body((0..<matrices).map { e in
                .fp8(FP8Matrix(
                    codes: UnsafeRawBufferPointer(rebasing: codes[(e * rows * columns)..<((e + 1) * rows * columns)]), rows: rows, columns: columns,
                    scales: Array(scales[(e * perMatrix)..<((e + 1) * perMatrix)]), scaling: fp8.scaling), buffers)
            })
        }
    }

    /// The largest magnitude of a 2-D weight as the codec reads it (an FP8 weight's from its codes
    /// and scales, without dequantizing it).
    ///
    /// - Throws: ``FileError`` naming the first non-finite element.
    func magnitudeMaximum(of entry: TensorPlan, buffers: ChunkBuffers) throws -> Float {
        try withMatrices(of: entry, buffers: buffers) { try $0[0].magnitudeMaximum(tensor: entry.tensor.name, threads: threads, path: reader.displayPath) }
    }

    /// Forgets the remembered scale of an FP8 weight once the weight is written.
    func finished(_ entry: TensorPlan) {
        if let fp8 = entry.fp8 { remembered[fp8.scale.name] = nil }
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
}
