import NVFP4Kit

extension QuantizeCommand {
    /// Reads `--method`, `--search-radius` and `--importance`.
    static func parseMethod(_ parsed: ParsedArguments, into options: inout QuantizeOptions) throws {
        options.method = try choice(parsed.value("--method"), option: "--method", ["rtn": .rtn, "mse": .mse], default: .rtn)
        if let n = parsed.wholeNumber(.searchRadius) {
            guard options.method == .mse else { throw UsageError(message: "--search-radius needs --method mse") }
            options.searchRadius = n
        }
        if let path = parsed.value("--importance") {
            guard options.method == .mse else { throw UsageError(message: "--importance needs --method mse") }
            options.importance = try ImportanceStatistics(path: path)
            options.importancePath = path
        }
    }

    /// A warning naming the quantized modules that had no statistics in the importance file.
    static func importanceWarning(_ reports: [TensorReport], options: QuantizeOptions) -> String? {
        guard options.method == .mse, let path = options.importancePath else { return nil }
        let unweighted = reports.filter { $0.decision == .quantize && !$0.importanceWeighted }
            .map { ImportanceStatistics.moduleName(ofWeight: $0.name) }
        guard !unweighted.isEmpty else { return nil }
        let shown = unweighted.prefix(3).joined(separator: ", ")
        let more = unweighted.count > 3 ? " and \(unweighted.count - 3) more" : ""
        return "warning: \(path) has no statistics for \(unweighted.count) quantized modules (\(shown)\(more)); their block scales were searched unweighted\n"
    }
}
