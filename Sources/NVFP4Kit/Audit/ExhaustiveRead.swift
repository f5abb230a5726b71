/// Reads a whole safetensors input the way the read commands do, for fuzzing and its regression
/// tests: with random access, NVFP4 modules of any layout are grouped (``CheckpointModel``) and the
/// first rows of each matrix dequantized; then every tensor's bytes are read and the reader
/// finished (coverage and hash checks). Hostile input must make this throw, never crash or hang.
public enum ExhaustiveRead {
    /// Runs the walk on `reader`.
    ///
    /// - Parameter rowsPerMatrix: Rows dequantized per NVFP4 matrix.
    /// - Returns: A checksum of what was touched, so that no read can be optimized away.
    @discardableResult
    public static func run(_ reader: SafetensorsReader, rowsPerMatrix: Int = 4) throws -> UInt8 {
        var checksum: UInt8 = 0
        if reader.isRandomAccess {
            let source = try CheckpointSource(singleFile: reader, path: reader.displayPath)
            let model = CheckpointModel(source: source)
            if (try? model.requireDecodable(in: source)) != nil {
                for m in model.modules { try dequantizeFirstRows(of: m, in: source, rows: rowsPerMatrix, checksum: &checksum) }
            }
        }
        for t in reader.header.tensors { try reader.withBytes(of: t) { checksum ^= $0.first ?? 0 } }
        _ = try reader.finish()
        return checksum
    }

    private static func dequantizeFirstRows(of m: QuantizedModule, in source: CheckpointSource, rows: Int, checksum: inout UInt8) throws {
        guard let blockScales = m.blockScales else { return }
        let scales = m.perTensorScales(in: source)
        var sum = checksum
        try source.withBytes(of: blockScales) { allScales in
            try source.withBytes(of: m.packed) { allPacked in
                for e in 0..<m.matrixCount {
                    let r = m.byteRanges(ofMatrix: e)
                    let s = UnsafeRawBufferPointer(rebasing: allScales[r.scales])
                    _ = m.matrix.invalidScaleCodes(s)
                    m.matrix.dequantize(
                        packed: UnsafeRawBufferPointer(rebasing: allPacked[r.packed]), scaleBytes: s, perTensorScale: scales?[e],
                        rows: 0..<min(m.rows, rows)
                    ) { _, values in sum ^= UInt8(truncatingIfNeeded: values.count) }
                }
            }
        }
        checksum = sum
    }
}
