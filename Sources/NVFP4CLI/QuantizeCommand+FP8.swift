import NVFP4Kit

/// The options about FP8 input and DeepSeek-family models.
extension QuantizeCommand {
    static let mlaAttentionOption = OptionSpec(
        names: ["--mla-attention"], valueName: "<keep|quantize>",
        help: "DeepSeek-family MLA attention (q_a/kv_a, q_b, o): keep in high precision, as NVIDIA's DeepSeek NVFP4 recipe, or quantize. kv_b_proj is always kept. (default: keep)")
    static let fp8BlockSizeOption = OptionSpec(
        names: ["--fp8-block-size"], valueName: "<rows>x<cols>",
        help: "Block of block-scaled FP8 weights in a bare file (no config.json), e.g. 128x128; a folder's config names it.")

    /// `--mla-attention` and `--fp8-block-size`.
    static func parseFP8(_ parsed: ParsedArguments, into options: inout QuantizeOptions) throws {
        options.mlaAttention = try choice(
            parsed.value("--mla-attention"), option: "--mla-attention",
            Dictionary(uniqueKeysWithValues: MLAAttentionPolicy.allCases.map { ($0.rawValue, $0) }), default: .keep)
        guard let text = parsed.value("--fp8-block-size") else { return }
        let parts = text.split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
        guard parts.count == 2, let rows = parts[0], let columns = parts[1], (1...65536).contains(rows), (1...65536).contains(columns) else {
            throw UsageError(message: "invalid value '\(text)' for --fp8-block-size; expected <rows>x<cols>, e.g. 128x128")
        }
        options.fp8BlockSize = [rows, columns]
    }
}
