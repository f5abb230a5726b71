/// The original checkpoint as `verify` compares it: every tensor as the quantizer read it.
///
/// An FP8 weight (found by the quantize plan's own rule, ``QuantizePlan/fp8Sources``) reads as
/// its dequantization (``FP8Dequantizer``, the arithmetic quantize uses), one `[N, K]` matrix at
/// a time; its scale and static input scale are consumed, as quantize consumes them. Any other
/// tensor reads as its stored bytes.
final class VerifyOriginal {
    let checkpoint: CheckpointSource
    let threads: Int
    /// FP8 weights by name.
    private let fp8: [String: FP8Source]
    /// Scales and static input scales of FP8 weights: they have no counterpart in the output.
    private let consumed: Set<String>
    /// The last dequantized matrix (the parts of one expert are compared one after another).
    private var buffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    private var held: (tensor: String, matrix: Int)?

    /// - Parameter fp8BlockSize: The block of block-scaled FP8 weights where no `config.json` names
    ///   it (`--fp8-block-size`, or the quantize manifest's `fp8_block_size`).
    /// - Throws: ``FileError`` (``FP8Error``) for an FP8 tensor quantize could not have converted.
    init(_ checkpoint: CheckpointSource, fp8BlockSize: [Int]?, threads: Int) throws {
        self.checkpoint = checkpoint
        self.threads = threads
        let shards = checkpoint.shards.map { QuantizePlan.Shard(name: $0.fileName, header: $0.reader.header) }
        let index = FP8Checkpoint.lookupIndex(shards.map(\.header))
        var options = QuantizeOptions()
        options.fp8BlockSize = fp8BlockSize
        (fp8, consumed) = try QuantizePlan.fp8Sources(
            shards: shards, index: index, config: checkpoint.config, options: options, path: { checkpoint.shards[$0].path })
    }

    deinit { buffer.deallocate() }

    /// The tensors to compare, shard by shard in file order (FP8 scales left out).
    var tensors: LocatedTensorSubset {
        let all = checkpoint.allTensors
        return all.subset(all.indices.compactMap { consumed.contains(all[$0].name) ? nil : Int32($0) })
    }

    /// `tensor` as the quantizer read it: an FP8 weight's dequantized dtype, else as stored.
    func info(of tensor: LocatedTensor) -> TensorInfo {
        guard let source = fp8[tensor.name] else { return tensor.info }
        var view = tensor.info
        view.dtype = source.scaling.target
        return view
    }

    /// Whether `tensor` is an FP8 weight read through its dequantization.
    func isFP8(_ tensor: LocatedTensor) -> Bool { fp8[tensor.name] != nil }

    /// Gives `body` matrix `matrix` (an expert of a 3-D tensor, else 0) of `tensor` as the
    /// quantizer read it (valid only inside `body`).
    func withMatrix<R>(_ tensor: LocatedTensor, matrix: Int, _ body: (DenseMatrix) throws -> R) throws -> R {
        let info = info(of: tensor)
        let shape = info.shape
        let (rows, columns) = (shape[shape.count - 2], shape[shape.count - 1])
        let matrixBytes = rows * columns * info.dtype.bitWidth / 8
        guard let source = fp8[tensor.name] else {
            return try checkpoint.withBytes(of: tensor) { bytes in
                try body(DenseMatrix(
                    bytes: UnsafeRawBufferPointer(rebasing: bytes[(matrix * matrixBytes)..<((matrix + 1) * matrixBytes)]),
                    dtype: info.dtype, rows: rows, columns: columns))
            }
        }
        let out = dequantizedBuffer(byteCount: matrixBytes)
        if held.map({ $0.tensor != tensor.name || $0.matrix != matrix }) ?? true {
            held = nil
            let scale = LocatedTensor(shard: source.scaleShard, info: source.scale)
            let all = try checkpoint.withBytes(of: scale) { FP8Dequantizer.scaleValues($0, dtype: source.scale.dtype) }
            let grid = source.scaling.grid(rows: rows, columns: columns)
            let perMatrix = grid.rows * grid.columns
            try checkpoint.withBytes(of: tensor) { codes in
                FP8Dequantizer.dequantize(
                    codes: UnsafeRawBufferPointer(rebasing: codes[(matrix * rows * columns)..<((matrix + 1) * rows * columns)]),
                    matrices: 1, rows: rows, columns: columns, scales: Array(all[(matrix * perMatrix)..<((matrix + 1) * perMatrix)]),
                    scaling: source.scaling, into: out, threads: threads)
            }
            held = (tensor.name, matrix)
        }
        return try body(DenseMatrix(bytes: UnsafeRawBufferPointer(out), dtype: info.dtype, rows: rows, columns: columns))
    }

    /// Whether `bytes` (a kept tensor of the output) equal `tensor` as the quantizer read it: the
    /// stored bytes, or an FP8 weight's dequantization, matrix by matrix.
    func equals(_ tensor: LocatedTensor, _ bytes: UnsafeRawBufferPointer) throws -> Bool {
        guard isFP8(tensor) else { return try checkpoint.withBytes(of: tensor) { $0.elementsEqual(bytes) } }
        let shape = tensor.info.shape
        let matrices = shape.count == 3 ? shape[0] : 1
        let matrixBytes = bytes.count / max(matrices, 1)
        for m in 0..<matrices {
            let same = try withMatrix(tensor, matrix: m) { $0.bytes.elementsEqual(bytes[(m * matrixBytes)..<((m + 1) * matrixBytes)]) }
            if !same { return false }
        }
        return true
    }

    /// Releases the mapped pages of `tensor` (and of an FP8 weight's scale) after it is compared.
    func release(_ tensor: LocatedTensor) {
        checkpoint.release(tensor)
        if let source = fp8[tensor.name] { checkpoint.release(LocatedTensor(shard: source.scaleShard, info: source.scale)) }
    }

    /// At least `byteCount` bytes, grown only when a matrix needs more.
    private func dequantizedBuffer(byteCount: Int) -> UnsafeMutableRawBufferPointer {
        if buffer.count < byteCount {
            held = nil
            buffer.deallocate()
            buffer = .allocate(byteCount: max(byteCount, 1), alignment: 64)
        }
        return UnsafeMutableRawBufferPointer(rebasing: buffer[0..<byteCount])
    }
}
