/// A llama.cpp importance matrix (`llama-imatrix`, `tools/imatrix/imatrix.cpp`), in either of
/// its two formats, reduced to what `--importance` needs: per GGUF weight, the mean square of
/// each input channel.
///
/// - GGUF (what `llama-imatrix` writes by default): `general.type = "imatrix"`, and per weight
///   `W` (e.g. `blk.0.attn_q.weight`) two `F32` tensors, `W.in_sum2` of shape `[K, n_mat]`
///   (sum of x² per channel, one row per matrix: 1 for a dense weight, one per expert for a
///   stacked `_exps` weight) and `W.counts` of shape `[1, n_mat]` (tokens per matrix). The mean
///   is `in_sum2 / counts`, as `llama-quantize` forms it; a matrix with count 0 saw no tokens.
///   Other tensors (`W.in_sum`) are ignored, as llama.cpp does.
/// - Legacy `.dat` (`--output-format dat`): `i32` entry count; per entry `i32` name length, the
///   name, `i32` ncall, `i32` nval, `nval` `f32` values already divided by the token count and
///   multiplied by ncall (so the mean is `value / ncall`; all experts of a weight share one
///   ncall and lie flat, expert after expert); then optionally `i32` chunk count, `i32` dataset
///   name length and the name.
struct LlamaImatrix: Equatable {
    /// Per GGUF weight name: the per-channel means of each matrix it holds (`nil` for a matrix
    /// that saw no tokens). A legacy file has one flat matrix per weight, experts included.
    var entries: [String: [[Float]?]]

    /// A bound on legacy entry names (GGUF names are under 64 bytes).
    static let maximumLegacyNameBytes = 4096

    /// Whether `bytes` look like a legacy `.dat` imatrix: a positive entry count and a first
    /// name of printable ASCII.
    static func sniffLegacy(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var cursor = LittleEndianCursor(bytes)
        guard let count = try? cursor.int32("count"), count > 0, let length = try? cursor.int32("length"),
              length > 0, Int(length) <= maximumLegacyNameBytes, let name = try? cursor.bytes(Int(length), "name") else { return false }
        return name.allSatisfy { (0x21...0x7E).contains($0) }
    }

    /// Reads a GGUF imatrix.
    ///
    /// - Throws: ``ImportanceStatistics/Problem`` naming the tensor: a sum without counts, a
    ///   size that does not divide, a negative or non-finite value, or a malformed GGUF file.
    init(gguf bytes: UnsafeRawBufferPointer) throws(ImportanceStatistics.Problem) {
        let file = try GGUFFile(bytes)
        var sums: [String: GGUFFile.Tensor] = [:]
        var counts: [String: GGUFFile.Tensor] = [:]
        for tensor in file.tensors {
            if tensor.name.hasSuffix(".in_sum2") {
                sums[String(tensor.name.dropLast(".in_sum2".count))] = tensor
            } else if tensor.name.hasSuffix(".counts") {
                counts[String(tensor.name.dropLast(".counts".count))] = tensor
            }
        }
        guard !sums.isEmpty else { throw ImportanceStatistics.Problem(reason: "GGUF file without any \"<weight>.in_sum2\" tensor: not an imatrix") }
        var entries: [String: [[Float]?]] = [:]
        for name in Set(sums.keys).union(counts.keys) {
            guard let sum = sums[name], let count = counts[name] else {
                throw ImportanceStatistics.Problem(reason: "tensor \"\(name)\" has \(sums[name] == nil ? "counts but no in_sum2" : "in_sum2 but no counts")")
            }
            let matrices = count.elementCount
            guard matrices > 0, sum.elementCount > 0, sum.elementCount % matrices == 0 else {
                throw ImportanceStatistics.Problem(reason: "tensor \"\(sum.name)\" has \(sum.elementCount) values, not a multiple of the \(matrices) counts in \"\(count.name)\"")
            }
            let values = try file.floats(sum)
            let tokens = try file.floats(count)
            let channels = values.count / matrices
            entries[name] = try (0..<matrices).map { m throws(ImportanceStatistics.Problem) -> [Float]? in
                let n = tokens[m]
                guard n.isFinite, n >= 0 else { throw ImportanceStatistics.Problem(reason: "tensor \"\(count.name)\" matrix \(m): count \(n) is not a finite non-negative number") }
                let row = values[(m * channels)..<((m + 1) * channels)]
                try LlamaImatrix.checkFinite(row, tensor: sum.name)
                guard n > 0 else { return nil }
                return row.map { $0 / n }
            }
        }
        self.entries = entries
    }

    /// Reads a legacy `.dat` imatrix.
    ///
    /// - Throws: ``ImportanceStatistics/Problem`` for a truncated file, a bad count or length, a
    ///   negative or non-finite value (naming the entry), or bytes after the trailer.
    init(legacy bytes: UnsafeRawBufferPointer) throws(ImportanceStatistics.Problem) {
        var cursor = LittleEndianCursor(bytes)
        do {
            let count = try cursor.int32("entry count")
            // Smallest entry: name length, 1-byte name, ncall, nval, one value.
            guard count > 0, Int(count) <= cursor.remaining / 17 else {
                throw ImportanceStatistics.Problem(reason: "legacy imatrix entry count \(count) is not positive or exceeds what the file can hold")
            }
            var entries: [String: [[Float]?]] = [:]
            for i in 0..<Int(count) {
                let length = try cursor.int32("name length of entry \(i)")
                guard length > 0, Int(length) <= LlamaImatrix.maximumLegacyNameBytes else {
                    throw ImportanceStatistics.Problem(reason: "entry \(i): name length \(length) is out of range 1…\(LlamaImatrix.maximumLegacyNameBytes)")
                }
                guard let name = String(validating: try cursor.bytes(Int(length), "name of entry \(i)"), as: UTF8.self), entries[name] == nil else {
                    throw ImportanceStatistics.Problem(reason: "entry \(i): name is not UTF-8 or repeats an earlier entry")
                }
                let calls = try cursor.int32("ncall of \(name)")
                let values = try cursor.int32("nval of \(name)")
                guard calls >= 0, values > 0 else {
                    throw ImportanceStatistics.Problem(reason: "tensor \"\(name)\": ncall \(calls) and nval \(values) must be non-negative and positive")
                }
                let stored = try cursor.floats(Int(values), "values of \(name)")
                try LlamaImatrix.checkFinite(stored[...], tensor: name)
                entries[name] = [calls > 0 ? stored.map { $0 / Float(calls) } : stored]
            }
            if cursor.remaining > 0 {
                _ = try cursor.int32("chunk count")
                if cursor.remaining > 0 {
                    let length = try cursor.int32("dataset name length")
                    guard length >= 0 else { throw ImportanceStatistics.Problem(reason: "dataset name length \(length) is negative") }
                    try cursor.skip(Int(length), "dataset name")
                }
            }
            guard cursor.remaining == 0 else {
                throw ImportanceStatistics.Problem(reason: "\(cursor.remaining) unexpected bytes after the legacy imatrix trailer")
            }
            self.entries = entries
        } catch let truncated as LittleEndianCursor.Truncated {
            throw ImportanceStatistics.Problem(reason: "truncated legacy imatrix: \(truncated.what) needs \(truncated.needed) bytes at offset \(truncated.offset), the file has \(bytes.count)")
        } catch let problem as ImportanceStatistics.Problem { throw problem } catch {
            throw ImportanceStatistics.Problem(reason: "\(error)")
        }
    }

    init(entries: [String: [[Float]?]]) { self.entries = entries }

    private static func checkFinite(_ values: ArraySlice<Float>, tensor: String) throws(ImportanceStatistics.Problem) {
        if let k = values.firstIndex(where: { !$0.isFinite || $0 < 0 }) {
            throw ImportanceStatistics.Problem(reason: "tensor \"\(tensor)\" channel \(k - values.startIndex): \(values[k]) is not a finite non-negative number")
        }
    }
}
