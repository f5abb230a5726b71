import NVFP4Kit

/// The options about FP8 input and DeepSeek-family models.
extension QuantizeCommand {
    /// `--mla-attention` and `--fp8-block-size`.
    static func parseFP8(_ parsed: ParsedArguments, into options: inout QuantizeOptions) throws {
        options.mlaAttention = try choice(
            parsed.value("--mla-attention"), option: "--mla-attention",
            Dictionary(uniqueKeysWithValues: MLAAttentionPolicy.allCases.map { ($0.rawValue, $0) }), default: .keep)
        options.fp8BlockSize = try fp8BlockSize(parsed)
    }

    /// `--fp8-block-size <rows>x<cols>` (quantize and verify), or `nil` when not given.
    static func fp8BlockSize(_ parsed: ParsedArguments) throws -> [Int]? {
        guard let text = parsed.value("--fp8-block-size") else { return nil }
        let parts = text.split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
        guard parts.count == 2, let rows = parts[0], let columns = parts[1], (1...65536).contains(rows), (1...65536).contains(columns) else {
            throw UsageError(message: "invalid value '\(text)' for --fp8-block-size; expected <rows>x<cols>, e.g. 128x128")
        }
        return [rows, columns]
    }
}
