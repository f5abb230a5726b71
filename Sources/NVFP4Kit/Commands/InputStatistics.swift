import Synchronization

/// Per-input second moments for `--method gptq --statistics FILE` (format: `docs/quality.md`).
///
/// A safetensors file: one `F32 [K, K]` tensor per distinct linear input, named by the module
/// that consumes it (`model.layers.0.self_attn.q_proj`), holding `E[x xᵀ]` over the calibration
/// tokens. Modules that read the same input (q/k/v, gate/up) point to that tensor through the
/// metadata key `shared_inputs`, a JSON object `{"<module>": "<module with the tensor>"}`.
/// Metadata also carries `"format": "nvfp4-statistics"`, `"version": "1"` and `"tokens"`.
/// `scripts/quality/collect_statistics.py` writes it. The file is mapped, and one matrix is read
/// at a time, so memory is one `K × K` factor (plus its computation) whatever the model size.
public final class InputStatistics: @unchecked Sendable {
    /// The file as the user named it.
    public let path: String
    /// Calibration tokens the moments are averaged over.
    public let tokens: Int
    private let reader: SafetensorsReader
    /// Module → the module whose tensor holds its input's moments.
    private let sharedInputs: [String: String]
    /// The last factor computed (q, k and v come one after another and share it).
    private let cache = Mutex<(name: String, factor: FeedbackFactor)?>(nil)

    /// Why a statistics file cannot be used.
    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        public var reason: String
        public var description: String { reason }
    }

    /// Opens and validates a statistics file (header and names only; matrices are read when used).
    ///
    /// - Throws: ``FileError`` naming `path` when it is not a safetensors file in this format.
    public init(path: String) throws(FileError) {
        self.path = path
        do { reader = try SafetensorsReader.randomAccess(path: path) } catch let e as FileError { throw e } catch {
            throw FileError(path: path, cause: Problem(reason: "\(error)"))
        }
        let header = reader.header
        func fail(_ reason: String) -> FileError { FileError(path: path, cause: Problem(reason: reason)) }
        guard header.metadataValue("format") == "nvfp4-statistics" else {
            throw fail("not a statistics file: expected metadata \"format\": \"nvfp4-statistics\" (scripts/quality/collect_statistics.py writes it)")
        }
        guard header.metadataValue("version") == "1" else { throw fail("unsupported statistics file version; expected \"1\"") }
        guard let t = header.metadataValue("tokens").flatMap({ Int($0) }), t > 0 else {
            throw fail("metadata \"tokens\" must be a positive whole number")
        }
        tokens = t
        for tensor in header.tensors {
            guard tensor.dtype == .f32, tensor.shape.count == 2, tensor.shape[0] == tensor.shape[1], tensor.shape[0] > 0 else {
                throw fail("tensor \"\(tensor.name)\" must be F32 [K, K]; it is \(tensor.dtype.rawValue) \(tensor.shape)")
            }
        }
        var shared: [String: String] = [:]
        if let text = header.metadataValue("shared_inputs") {
            guard let object = (try? JSONParser.parse(Array(text.utf8)))?.objectValue else {
                throw fail("metadata \"shared_inputs\" must be a JSON object of module names")
            }
            for (module, value) in object {
                guard let target = value.stringValue, header.tensor(named: target) != nil else {
                    throw fail("metadata \"shared_inputs\": module \"\(module)\" points to no tensor of this file")
                }
                shared[module] = target
            }
        }
        sharedInputs = shared
    }

    /// The tensor holding the input moments of the module of weight `name`, if any.
    func tensor(forWeight name: String) -> TensorInfo? {
        let module = ImportanceStatistics.moduleName(ofWeight: name)
        return reader.header.tensor(named: sharedInputs[module] ?? module)
    }

    /// Whether weight `name` has statistics.
    ///
    /// - Throws: ``FileError`` when its statistics have a channel count other than `columns`.
    public func covers(weight name: String, columns: Int) throws(FileError) -> Bool {
        guard let tensor = tensor(forWeight: name) else { return false }
        guard tensor.shape[0] == columns else {
            throw FileError(path: path, cause: Problem(reason:
                "module \"\(ImportanceStatistics.moduleName(ofWeight: name))\" has statistics of \(tensor.shape[0]) channels (tensor \"\(tensor.name)\") but weight \"\(name)\" has \(columns) input columns"))
        }
        return true
    }

    /// The error-feedback factor of weight `name` (computed on up to `threads` threads), or `nil`
    /// when the file has no statistics for it.
    public func factor(forWeight name: String, columns: Int, threads: Int = 1) throws(FileError) -> FeedbackFactor? {
        guard try covers(weight: name, columns: columns), let tensor = tensor(forWeight: name) else { return nil }
        if let hit = cache.withLock({ $0 }), hit.name == tensor.name { return hit.factor }
        let moments = try withMatrix(tensor) { matrix in (0..<(columns * columns)).map(matrix.element) }
        let factor: FeedbackFactor
        do { factor = try moments.withUnsafeBufferPointer { try FeedbackFactor(secondMoments: $0, columns: columns, order: FeedbackFactor.defaultOrder, threads: threads) } } catch {
            throw FileError(path: path, cause: Problem(reason: "tensor \"\(tensor.name)\": \(error)"))
        }
        cache.withLock { $0 = (tensor.name, factor) }
        return factor
    }
}

extension InputStatistics {
    /// `body` applied to the `F32 [K, K]` matrix of `tensor`, read in place from the mapped file.
    private func withMatrix<T>(_ tensor: TensorInfo, _ body: (DenseMatrix) -> T) throws(FileError) -> T {
        let k = tensor.shape[0]
        do {
            return try reader.withBytes(of: tensor) { body(DenseMatrix(bytes: $0, dtype: .f32, rows: k, columns: k)) }
        } catch let e as FileError { throw e } catch { throw FileError(path: path, cause: Problem(reason: "\(error)")) }
    }

    /// Every module's per-channel mean square `E[x_k²]`: the diagonal of its input's moments, what
    /// `--method mse --importance` weighs channels by (modules sharing an input share it).
    ///
    /// - Throws: ``FileError`` when a diagonal entry is negative or not finite.
    public func importance() throws(FileError) -> ImportanceStatistics {
        var diagonals: [String: [Float]] = [:]
        for tensor in reader.header.tensors {
            let k = tensor.shape[0]
            let diagonal = try withMatrix(tensor) { matrix in (0..<k).map { matrix.element($0 * k + $0) } }
            if let bad = diagonal.firstIndex(where: { !($0.isFinite && $0 >= 0) }) {
                throw FileError(path: path, cause: Problem(reason: "tensor \"\(tensor.name)\": diagonal entry \(bad) is \(diagonal[bad]), not a finite non-negative mean square"))
            }
            diagonals[tensor.name] = diagonal
        }
        var modules = diagonals
        for (module, target) in sharedInputs { modules[module] = diagonals[target] }
        return ImportanceStatistics(modules: modules)
    }
}

/// Rejects a statistics file whose matrices do not fit a weight that will be quantized, before
/// anything is written: every quantized 2-D weight, each expert slice by its own name.
enum StatisticsCheck {
    static func run(_ entries: some Sequence<TensorPlan>, options: QuantizeOptions) throws(FileError) {
        guard options.method == .gptq, let statistics = options.statistics else { return }
        for entry in entries where entry.isQuantized {
            let columns = entry.tensor.shape[entry.tensor.shape.count - 1]
            for name in entry.quantizedWeightNames { _ = try statistics.covers(weight: name, columns: columns) }
        }
    }
}

extension QuantizeJob {
    /// The error-feedback settings for one 2-D weight: `nil` unless `.gptq` with statistics for it.
    static func errorFeedback(forWeight name: String, columns: Int, options: QuantizeOptions) throws(FileError) -> ErrorFeedback? {
        guard options.method == .gptq, let statistics = options.statistics,
              let factor = try statistics.factor(forWeight: name, columns: columns, threads: options.threads) else { return nil }
        return ErrorFeedback(factor: factor, scaleChoice: .search(radius: options.searchRadius), timing: ErrorFeedback.defaultTiming)
    }
}
