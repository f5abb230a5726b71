/// Turns NVFP4 weights back into dense tensors, bit for bit as torchao's `NVFP4Tensor.dequantize`.
public enum DequantizeJob {
    /// Writes a dense copy of `reader`'s checkpoint.
    ///
    /// - Parameters:
    ///   - reader: A quantized checkpoint (random access).
    ///   - sink: The output; committed on success, aborted on failure.
    ///   - dtype: bf16 or f32; `nil` uses each weight's recorded `orig_dtype` (bf16 if none).
    ///   - threads: Worker threads; the output does not depend on them.
    /// - Returns: The names of the dequantized weights.
    public static func run(
        reader: SafetensorsReader, sink: any OutputSink, dtype: DType?, threads: Int = ParallelLoop.availableCores
    ) throws -> [String] {
        // Rows are expanded straight into the pool's buffers; the writing runs behind, on its own thread.
        let behind = WriteBehindSink(wrapping: sink, hashing: false)
        do {
            return try convert(reader: reader, sink: behind, dtype: dtype, threads: threads)
        } catch {
            behind.abort()  // waits for the writer, then aborts `sink`
            throw error
        }
    }

    private enum Item {
        case plain(TensorInfo)
        case weight(NVFP4Weight, DType)
    }

    private static func convert(reader: SafetensorsReader, sink: WriteBehindSink, dtype: DType?, threads: Int) throws -> [String] {
        let contents: CheckpointContents
        do { contents = try CheckpointContents(header: reader.header) } catch {
            throw FileError(path: reader.displayPath, cause: error)
        }
        var items: [(offset: UInt64, item: Item)] = contents.plain.map { ($0.dataOffsets.lowerBound, .plain($0)) }
        for weight in contents.weights {
            let target = dtype ?? (weight.originalDtype == .f32 ? .f32 : .bf16)
            items.append((weight.parts[0].dataOffsets.lowerBound, .weight(weight, target)))
        }
        items.sort { $0.offset < $1.offset }
        var planned: [PlannedTensor] = []
        for (_, item) in items {
            switch item {
            case .plain(let t): planned.append(PlannedTensor(name: t.name, dtype: t.dtype, shape: t.shape))
            case .weight(let w, let d): planned.append(PlannedTensor(name: w.name, dtype: d, shape: w.logicalShape))
            }
        }
        let described = Set(reader.header.tensors.map(\.name) + contents.weights.map(\.name) + ["tensor_names"])
        let metadata = reader.header.metadata.filter { !described.contains($0.key) }
        let plan = SafetensorsLayoutPlan(tensors: planned, metadata: metadata)
        try sink.write(plan.headerBytes)
        for (_, item) in items {
            switch item {
            case .plain(let t):
                try sink.writeKept(t, from: reader)
            case .weight(let w, let d):
                try writeDense(w, dtype: d, reader: reader, sink: sink, threads: threads)
                w.parts.forEach(reader.release)
            }
        }
        try sink.flush()  // kept tensors may still be read from the mapping until then
        _ = try reader.finish()
        _ = try sink.commit()
        return contents.weights.map(\.name)
    }

    /// Expands `weight` in waves of 128-row chunks (about 8 MiB of output each), computed on
    /// `threads` threads straight into a buffer of the write-behind pool.
    private static func writeDense(
        _ weight: NVFP4Weight, dtype: DType, reader: SafetensorsReader, sink: WriteBehindSink, threads: Int
    ) throws {
        let pts = try weight.perTensorScaleValue(in: reader)
        let rowBytes = weight.columns * (dtype == .f32 ? 4 : 2)
        let chunkRows = QuantizeJob.rowsPerChunk
        let waveRows = max(chunkRows, (8 << 20) / max(1, rowBytes) / chunkRows * chunkRows)
        try reader.withBytes(of: weight.scales) { scales in
            try reader.withBytes(of: weight.packed) { packed in
                for first in stride(from: 0, to: weight.rows, by: waveRows) {
                    let rows = first..<min(weight.rows, first + waveRows)
                    let wave = try sink.reserve(byteCount: rows.count * rowBytes)
                    ParallelLoop.run(iterations: ceilDiv(rows.count, chunkRows), threads: threads) { chunk in
                        let start = rows.lowerBound + chunk * chunkRows
                        weight.dequantize(
                            packed: packed, scaleBytes: scales, perTensorScale: pts, rows: start..<min(rows.upperBound, start + chunkRows)
                        ) { row, values in
                            let out = wave.baseAddress! + (row - rows.lowerBound) * rowBytes
                            for (i, v) in values.enumerated() {
                                if dtype == .f32 {
                                    out.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: i * 4, as: UInt32.self)
                                } else {
                                    out.storeBytes(of: BFloat16.fromFloat(v).littleEndian, toByteOffset: i * 2, as: UInt16.self)
                                }
                            }
                        }
                    }
                    sink.commit(byteCount: wave.count)
                }
            }
        }
    }
}
