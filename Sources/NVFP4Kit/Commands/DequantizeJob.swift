/// Turns NVFP4 weights back into dense tensors, bit for bit as torchao's `NVFP4Tensor.dequantize`.
public enum DequantizeJob {
    /// Writes a dense copy of `reader`'s checkpoint.
    ///
    /// - Parameters:
    ///   - reader: A quantized checkpoint (random access).
    ///   - sink: The output; committed on success, aborted on failure.
    ///   - dtype: bf16 or f32; `nil` uses each weight's recorded `orig_dtype` (bf16 if none).
    /// - Returns: The names of the dequantized weights.
    public static func run(reader: SafetensorsReader, sink: any OutputSink, dtype: DType?) throws -> [String] {
        do {
            let names = try convert(reader: reader, sink: sink, dtype: dtype)
            return names
        } catch {
            sink.abort()
            throw error
        }
    }

    private enum Item {
        case plain(TensorInfo)
        case weight(NVFP4Weight, DType)
    }

    private static func convert(reader: SafetensorsReader, sink: any OutputSink, dtype: DType?) throws -> [String] {
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
                try reader.withBytes(of: t) { try sink.write($0) }
                reader.release(t)
            case .weight(let w, let d):
                try writeDense(w, dtype: d, reader: reader, sink: sink)
                w.parts.forEach(reader.release)
            }
        }
        _ = try reader.finish()
        _ = try sink.commit()
        return contents.weights.map(\.name)
    }

    private static func writeDense(_ weight: NVFP4Weight, dtype: DType, reader: SafetensorsReader, sink: any OutputSink) throws {
        let pts = try weight.perTensorScaleValue(in: reader)
        let rowBytes = weight.columns * (dtype == .f32 ? 4 : 2)
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, rowBytes), alignment: 64)
        defer { out.deallocate() }
        try reader.withBytes(of: weight.scales) { scales in
            try reader.withBytes(of: weight.packed) { packed in
                try weight.dequantize(packed: packed, scaleBytes: scales, perTensorScale: pts, rows: 0..<weight.rows) { _, values in
                    for (i, v) in values.enumerated() {
                        if dtype == .f32 {
                            out.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: i * 4, as: UInt32.self)
                        } else {
                            out.storeBytes(of: BFloat16.fromFloat(v).littleEndian, toByteOffset: i * 2, as: UInt16.self)
                        }
                    }
                    try sink.write(UnsafeRawBufferPointer(out))
                }
            }
        }
    }
}
