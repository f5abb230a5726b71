import Glibc

/// Why a checkpoint cannot be dequantized as asked.
public struct DequantizeError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "\(path): \(reason)" }
}

/// Turns an NVFP4 checkpoint in any layout back into the dense checkpoint it came from: every
/// quantized module becomes its original tensor (`<m>.weight`; torchao's stacked experts their
/// `[E, N, K]` tensor), every other tensor is copied byte for byte, and no quantization tensor is
/// left. Values equal torchao's `NVFP4Tensor.dequantize` bit for bit: code × (per-tensor scale ×
/// block scale), cast to the target dtype.
public enum DequantizeJob {
    /// What was written.
    public struct Result: Sendable {
        /// The original names of the dequantized tensors.
        public var dequantized: [String]
        /// Output files written (one for a file, the shards for a folder).
        public var files: [String]
    }

    /// The dtype a module's dense tensor is written in: `dtype`, else its recorded original dtype
    /// where that is bf16 or f32, else bf16.
    static func targetDtype(_ module: QuantizedModule, requested: DType?) -> DType {
        requested ?? (module.originalDtype == .f32 ? .f32 : .bf16)
    }

    /// Dequantizes a single-file checkpoint into `sink` (committed on success, aborted on failure).
    ///
    /// - Parameters:
    ///   - source: A quantized checkpoint file (random access).
    ///   - dtype: bf16 or f32; `nil` uses each weight's recorded `orig_dtype` (bf16 if none).
    ///   - threads: Worker threads; the output does not depend on them.
    /// - Throws: ``FileError`` for malformed NVFP4 tensors, ``DequantizeError`` for a folder.
    public static func run(
        source: CheckpointSource, sink: any OutputSink, dtype: DType?, threads: Int = ParallelLoop.availableCores, progress: JobProgress? = nil
    ) throws -> Result {
        guard !source.isFolder, source.shards.count == 1 else {
            sink.abort()
            throw DequantizeError(path: source.path, reason: "a model folder is dequantized into a folder, not a single file")
        }
        let model = try decodableModel(source)
        let behind = WriteBehindSink(wrapping: sink, hashing: false)
        do {
            let names = try writeShard(0, of: source, model: model, into: behind, dtype: dtype, threads: threads, progress: progress).dequantized
            _ = try behind.commit()
            return Result(dequantized: names, files: [sink.displayPath])
        } catch {
            behind.abort()  // waits for the writer, then aborts `sink`
            throw error
        }
    }

    /// Dequantizes a model folder into a new folder `output`: the shards under their names,
    /// the index rewritten with the dense names and sizes, `config.json` without
    /// `quantization_config`, every other file copied except `hf_quant_config.json` and the
    /// quantize manifest. The folder appears complete or not at all.
    ///
    /// - Throws: ``FileError`` for malformed NVFP4 tensors or unreadable files; ``SystemError``
    ///   when `output` exists (without `replace`) or cannot be written.
    public static func runFolder(
        source: CheckpointSource, output: String, replace: Bool, dtype: DType?, threads: Int = ParallelLoop.availableCores,
        io: OutputIO = .buffered, progress: JobProgress? = nil
    ) throws -> Result {
        let model = try decodableModel(source)
        let otherFiles = try ModelFolder(path: source.path).otherFiles
        let folder = try TemporaryFolder(destination: output, replace: replace)
        do {
            var dequantized: [String] = []
            var weightMap: [(tensor: String, shard: String)] = []
            var totalSize = 0
            for (index, shard) in source.shards.enumerated() {
                let sink = WriteBehindSink(wrapping: try AtomicFileSink(path: folder.file(shard.fileName), replace: true, hashing: false, io: io), hashing: false)
                do {
                    progress?.startFile(shard.fileName, bytes: shard.reader.header.dataByteCount)
                    let written = try writeShard(index, of: source, model: model, into: sink, dtype: dtype, threads: threads, progress: progress)
                    _ = try sink.commit()
                    progress?.finishFile()
                    dequantized += written.dequantized
                    weightMap += written.tensors.map { ($0, shard.fileName) }
                    totalSize += written.dataBytes
                } catch {
                    sink.abort()
                    throw error
                }
            }
            try writeFolderFiles(source: source, otherFiles: otherFiles, weightMap: weightMap, totalSize: totalSize, into: folder)
            try folder.publish()
            return Result(dequantized: dequantized, files: source.shards.map { "\(output)/\($0.fileName)" })
        } catch {
            folder.abort()
            throw error
        }
    }

    /// The files of a dense folder besides its shards.
    static func writeFolderFiles(
        source: CheckpointSource, otherFiles: [String], weightMap: [(tensor: String, shard: String)], totalSize: Int, into folder: TemporaryFolder
    ) throws {
        var texts: [(name: String, text: String)] = []
        if source.index != nil || source.shards.count > 1 {
            let index: JSONValue = .object([
                ("metadata", .object([("total_size", .int(totalSize))])),
                ("weight_map", .object(weightMap.sorted { $0.tensor < $1.tensor }.map { ($0.tensor, JSONValue.string($0.shard)) })),
            ])
            texts.append((ModelFolder.indexFileName, index.serialized(.pretty)))
        }
        if let config = source.config {
            let members = (config.objectValue ?? []).filter { $0.key != "quantization_config" }
            texts.append(("config.json", JSONValue.object(members).serialized(.pretty)))
        }
        for (name, text) in texts { try sealedTextFile(text, to: folder.file(name), replace: true).publish() }
        let dropped: Set<String> = [EngineLayoutNames.ConfigStrings.hfQuantConfigFile, FolderQuantizeJob.manifestFileName]
        for name in otherFiles where !dropped.contains(name) && !texts.contains(where: { $0.name == name }) {
            try FolderQuantizeJob.copyFile(from: "\(source.path)/\(name)", to: folder.file(name))
        }
    }

    /// The model of `source`, refusing malformed NVFP4 tensors.
    static func decodableModel(_ source: CheckpointSource) throws -> CheckpointModel {
        let model = CheckpointModel(source: source)
        try model.requireDecodable(in: source)
        guard !model.modules.isEmpty else {
            throw DequantizeError(path: source.path, reason: "no NVFP4 weights in any layout (torchao, compressed-tensors, ModelOpt): nothing to dequantize")
        }
        return model
    }

    private enum Item {
        case plain(LocatedTensor)
        case module(QuantizedModule, DType)
    }

    /// Writes the dense version of shard `index` (header and data) into `sink`, without committing.
    static func writeShard(
        _ index: Int, of source: CheckpointSource, model: CheckpointModel, into sink: WriteBehindSink, dtype: DType?, threads: Int,
        progress: JobProgress? = nil
    ) throws -> (dequantized: [String], tensors: [String], dataBytes: Int) {
        let reader = source.shards[index].reader
        var items: [(offset: UInt64, item: Item)] = model.plain.filter { $0.shard == index }.map { ($0.info.dataOffsets.lowerBound, .plain($0)) }
        for m in model.modules where m.packed.shard == index {
            items.append((m.packed.info.dataOffsets.lowerBound, .module(m, targetDtype(m, requested: dtype))))
        }
        items.sort { $0.offset < $1.offset }
        let planned = items.map { _, item in
            switch item {
            case .plain(let t): return PlannedTensor(name: t.name, dtype: t.info.dtype, shape: t.info.shape)
            case .module(let m, let d): return PlannedTensor(name: m.originalName, dtype: d, shape: m.logicalShape)
            }
        }
        // torchao describes every stored tensor in `__metadata__`; the dense file needs none of it.
        let described = Set(reader.header.tensors.map(\.name) + model.modules.map(\.originalName) + ["tensor_names"])
        let plan = SafetensorsLayoutPlan(tensors: planned, metadata: reader.header.metadata.filter { !described.contains($0.key) })
        try sink.write(plan.headerBytes)
        var dequantized: [String] = []
        for (_, item) in items {
            switch item {
            case .plain(let t):
                try sink.writeKept(t.info, from: reader)
                progress?.advance(UInt64(t.info.byteCount), item: t.name)
            case .module(let m, let d):
                try writeDense(m, dtype: d, source: source, sink: sink, threads: threads)
                m.tensors.forEach(source.release)
                dequantized.append(m.originalName)
                progress?.advance(m.tensors.reduce(0) { $0 + UInt64($1.info.byteCount) }, item: m.originalName)
            }
        }
        try sink.flush()  // kept tensors may still be read from the mapping until then
        _ = try reader.finish()
        return (dequantized, planned.map(\.name), plan.dataByteCount)
    }

    /// Expands each matrix of `module` in waves of 128-row chunks (about 8 MiB of output each),
    /// computed on `threads` threads straight into a buffer of the write-behind pool.
    private static func writeDense(_ module: QuantizedModule, dtype: DType, source: CheckpointSource, sink: WriteBehindSink, threads: Int) throws {
        let matrix = module.matrix
        let scalesByMatrix = module.perTensorScales(in: source)
        if module.globalScale != nil && scalesByMatrix == nil {
            throw FileError(path: source.path(of: module.globalScale!), cause: LayoutProblem(tensor: module.globalScale!.name, reason: "the per-tensor scale cannot be read"))
        }
        let rowBytes = matrix.columns * dtype.bitWidth / 8
        let chunkRows = QuantizeJob.rowsPerChunk
        let waveRows = max(chunkRows, (8 << 20) / max(1, rowBytes) / chunkRows * chunkRows)
        try source.withBytes(of: module.blockScales!) { allScales in
            try source.withBytes(of: module.packed) { allPacked in
                for e in 0..<module.matrixCount {
                    let ranges = module.byteRanges(ofMatrix: e)
                    let packed = UnsafeRawBufferPointer(rebasing: allPacked[ranges.packed])
                    let scales = UnsafeRawBufferPointer(rebasing: allScales[ranges.scales])
                    let pts = scalesByMatrix?[e]
                    for first in stride(from: 0, to: matrix.rows, by: waveRows) {
                        let rows = first..<min(matrix.rows, first + waveRows)
                        let wave = try sink.reserve(byteCount: rows.count * rowBytes)
                        ParallelLoop.run(iterations: ceilDiv(rows.count, chunkRows), threads: threads) { chunk in
                            let start = rows.lowerBound + chunk * chunkRows
                            matrix.dequantize(
                                packed: packed, scaleBytes: scales, perTensorScale: pts, rows: start..<min(rows.upperBound, start + chunkRows)
                            ) { row, values in
                                store(values, as: dtype, to: wave.baseAddress! + (row - rows.lowerBound) * rowBytes)
                            }
                        }
                        sink.commit(byteCount: wave.count)
                    }
                }
            }
        }
    }

    /// Writes fp32 values as little-endian f32 or bf16 (round to nearest even, as torch casts).
    private static func store(_ values: UnsafeBufferPointer<Float>, as dtype: DType, to out: UnsafeMutableRawPointer) {
        for (i, v) in values.enumerated() {
            if dtype == .f32 {
                out.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: i * 4, as: UInt32.self)
            } else {
                out.storeBytes(of: BFloat16.fromFloat(v).littleEndian, toByteOffset: i * 2, as: UInt16.self)
            }
        }
    }
}
