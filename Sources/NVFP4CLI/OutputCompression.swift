import NVFP4Kit

/// `--compress zstd[:LEVEL]|none`, and the `.zst` output-name rule.
enum OutputCompression: Equatable {
    case none
    case zstd(level: Int)

    /// The compression for `output`, from `--compress` or else the output's name.
    static func parse(_ text: String?, output: String) throws(UsageError) -> OutputCompression {
        guard let text else { return output.hasSuffix(".zst") ? .zstd(level: zstdDefaultLevel) : .none }
        if text == "none" { return .none }
        if text == "zstd" { return .zstd(level: zstdDefaultLevel) }
        if text.hasPrefix("zstd:"), let level = Int(text.dropFirst(5)), zstdLevelRange.contains(level) {
            return .zstd(level: level)
        }
        throw UsageError(message: "invalid value '\(text)' for --compress; expected none, zstd or zstd:<level> with level \(zstdLevelRange.lowerBound)...\(zstdLevelRange.upperBound)")
    }

    /// Opens the output: a temporary file beside `path` (or stdout for `-`), compressed if asked.
    ///
    /// The sink does not hash: `quantize` hashes what it writes itself, before compression
    /// (``WriteBehindSink``), and `dequantize` records no hash.
    func makeSink(path: String, replace: Bool, threads: Int, io: OutputIO = .buffered) throws -> any OutputSink {
        let plain: any OutputSink = path == "-"
            ? StandardOutputSink(hashing: false) : try AtomicFileSink(path: path, replace: replace, hashing: false, io: io)
        switch self {
        case .none: return plain
        case .zstd(let level):
            do { return try ZstdCompressingSink(wrapping: plain, level: level, threads: threads, hashing: false) } catch {
                plain.abort()
                throw error
            }
        }
    }
}

/// `m.safetensors.zst` → `m.safetensors`; other names unchanged.
func droppingZstdSuffix(_ path: String) -> String {
    path.hasSuffix(".zst") ? String(path.dropLast(4)) : path
}
