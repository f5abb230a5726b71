/// Per-module activation statistics for `--importance` (format: `docs/quality.md`).
///
/// The file is JSON: `{"format": "nvfp4-importance", "version": 1, "modules": {"<module>": [m₀, m₁, …]}}`
/// where `<module>` is a linear layer's name (a weight's name without `.weight`) and `m_k` the mean
/// square of input channel `k`'s activations. `scripts/quality/collect_importance.py` writes it.
/// llama.cpp imatrix files (GGUF and legacy `.dat`) are read as well (``LlamaImatrix``), and so is
/// a `--method gptq` statistics file (``InputStatistics``): its moments' diagonals are these means.
public struct ImportanceStatistics: Sendable {
    /// Mean squared activation per input channel, by module name.
    public var modules: [String: [Float]]

    /// Why an importance file cannot be used.
    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        public var reason: String
        public var description: String { reason }
    }

    public init(modules: [String: [Float]]) {
        self.modules = modules
    }

    /// Reads and validates an importance file, recognised by its content (never its name): this
    /// format (JSON), a llama.cpp GGUF imatrix, a legacy llama.cpp `.dat` imatrix, or a statistics
    /// file (safetensors, the diagonals of its moments); imatrix names are mapped to Hugging Face
    /// modules (``GGUFNameMapping``).
    ///
    /// - Throws: ``FileError`` naming `path` when it cannot be read, is in none of these formats,
    ///   or holds a negative or non-finite statistic.
    public init(path: String) throws(FileError) {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw FileError(path: path, cause: error) }
        if FormatSniffer.looksLikeSafetensors(file.bytes) {  // a --statistics file
            self = try InputStatistics(path: path).importance()
            return
        }
        do {
            self = try ImportanceStatistics(bytes: file.bytes)
        } catch let error as JSONSyntaxError {
            throw FileError(path: path, cause: error)
        } catch let error as Problem {
            throw FileError(path: path, cause: error)
        } catch {
            throw FileError(path: path, cause: Problem(reason: "\(error)"))
        }
    }

    /// Reads the statistics in `bytes`, in whichever of the three formats they are.
    ///
    /// - Throws: ``JSONSyntaxError`` for malformed JSON, else ``Problem`` naming what is wrong.
    public init(bytes: UnsafeRawBufferPointer) throws {
        if bytes.first(where: { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }) == UInt8(ascii: "{") {
            self = try ImportanceStatistics(json: JSONParser.parse(bytes))
        } else if GGUFFile.sniff(bytes) {
            self.init(modules: try GGUFNameMapping.modules(of: LlamaImatrix(gguf: bytes)))
        } else if LlamaImatrix.sniffLegacy(bytes) {
            self.init(modules: try GGUFNameMapping.modules(of: LlamaImatrix(legacy: bytes)))
        } else {
            throw Problem(reason: "not an importance file: expected nvfp4-importance JSON, a llama.cpp GGUF imatrix, a legacy llama.cpp .dat imatrix or an nvfp4-statistics safetensors file")
        }
    }

    /// Validates a parsed importance document.
    public init(json: JSONValue) throws(Problem) {
        guard json["format"]?.stringValue == "nvfp4-importance" else {
            throw Problem(reason: "not an importance file: expected \"format\": \"nvfp4-importance\"")
        }
        guard json["version"]?.unsignedValue == 1 else { throw Problem(reason: "unsupported importance file version; expected 1") }
        guard let members = json["modules"]?.objectValue else { throw Problem(reason: "\"modules\" must be an object") }
        var modules: [String: [Float]] = [:]
        for (name, value) in members {
            guard let array = value.arrayValue else { throw Problem(reason: "module \"\(name)\": expected an array of numbers") }
            var stats: [Float] = []
            stats.reserveCapacity(array.count)
            for (k, element) in array.enumerated() {
                guard let d = element.doubleValue, d.isFinite, d >= 0, Float(d).isFinite else {
                    throw Problem(reason: "module \"\(name)\": channel \(k) is not a finite non-negative number")
                }
                stats.append(Float(d))
            }
            modules[name] = stats
        }
        self.modules = modules
    }

    /// The module a weight belongs to: its name without the trailing `.weight`.
    public static func moduleName(ofWeight name: String) -> String {
        name.hasSuffix(".weight") ? String(name.dropLast(".weight".count)) : name
    }

    /// The search weights of a `[rows, columns]` weight tensor, or `nil` when its module has no
    /// statistics. Statistics are scaled to mean 1 and floored at 10⁻⁶ of the mean, so a channel
    /// that never fired still breaks ties; an all-zero module gives equal weights.
    ///
    /// - Throws: ``Problem`` naming the module when its channel count is not `columns`.
    public func weights(forTensor name: String, columns: Int) throws(Problem) -> [Float]? {
        let module = ImportanceStatistics.moduleName(ofWeight: name)
        guard let stats = modules[module] else { return nil }
        guard stats.count == columns else {
            throw Problem(reason: "module \"\(module)\" has \(stats.count) channels but tensor \"\(name)\" has \(columns) input columns")
        }
        return ImportanceStatistics.searchWeights(stats)
    }

    /// Per-channel statistics as search weights: scaled to mean 1 and floored at 10⁻⁶ of the
    /// mean; all equal when every statistic is zero.
    public static func searchWeights<C: Collection<Float>>(_ stats: C) -> [Float] {
        let mean = stats.reduce(0.0) { $0 + Double($1) } / Double(max(1, stats.count))
        guard mean > 0 else { return [Float](repeating: 1, count: stats.count) }
        return stats.map { Float(max(Double($0) / mean, 1e-6)) }
    }
}

/// Rejects an importance file whose statistics do not fit a weight that will be quantized,
/// before anything is written: every quantized 2-D weight, each expert slice by its own name.
enum ImportanceCheck {
    static func run(_ entries: some Sequence<TensorPlan>, options: QuantizeOptions) throws(FileError) {
        guard options.method == .mse, options.importance != nil else { return }
        for entry in entries where entry.isQuantized {
            let columns = entry.tensor.shape[entry.tensor.shape.count - 1]
            for name in entry.quantizedWeightNames {
                _ = try QuantizeJob.scaleSearch(forWeight: name, columns: columns, options: options)
            }
        }
    }
}

extension QuantizeJob {
    /// The search settings for one 2-D weight: `nil` for RTN; importance weights when its module has statistics.
    static func scaleSearch(forWeight name: String, columns: Int, options: QuantizeOptions) throws(FileError) -> ScaleSearch? {
        guard options.method == .mse else { return nil }
        var search = ScaleSearch(radius: options.searchRadius)
        if let importance = options.importance {
            do { search.importance = try importance.weights(forTensor: name, columns: columns) } catch {
                throw FileError(path: options.importancePath ?? "importance statistics", cause: error)
            }
        }
        return search
    }
}
