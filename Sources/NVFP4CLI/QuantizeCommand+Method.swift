import NVFP4Kit

extension QuantizeCommand {
    /// Reads `--method`, `--search-radius`, `--importance` and `--statistics`.
    static func parseMethod(_ parsed: ParsedArguments, into options: inout QuantizeOptions) throws {
        options.method = try choice(parsed.value("--method"), option: "--method", ["rtn": .rtn, "mse": .mse, "gptq": .gptq], default: .rtn)
        if let n = parsed.wholeNumber(.searchRadius) {
            guard options.method != .rtn else { throw UsageError(message: "--search-radius needs --method mse or gptq") }
            options.searchRadius = n
        }
        if let path = parsed.value("--importance") {
            guard options.method == .mse else { throw UsageError(message: "--importance needs --method mse") }
            options.importance = try ImportanceStatistics(path: path)
            options.importancePath = path
        }
        let statistics = parsed.value("--statistics")
        guard (statistics != nil) == (options.method == .gptq) else {
            throw UsageError(message: statistics == nil ? "--method gptq needs --statistics FILE (scripts/quality/collect_statistics.py writes it)" : "--statistics needs --method gptq")
        }
        if let statistics { options.statistics = try InputStatistics(path: statistics) }
    }

    /// A warning naming the quantized modules that had no statistics in the importance or statistics file.
    static func importanceWarning(_ reports: some Sequence<TensorReport>, options: QuantizeOptions) -> String? {
        if options.method == .gptq, let statistics = options.statistics {
            let plain = reports.filter { $0.decision == .quantize && !$0.errorFeedback }.map { ImportanceStatistics.moduleName(ofWeight: $0.name) }
            guard !plain.isEmpty else { return nil }
            let more = plain.count > 3 ? " and \(plain.count - 3) more" : ""
            return "warning: \(statistics.path) has no statistics for \(plain.count) quantized modules (\(plain.prefix(3).joined(separator: ", "))\(more)); they were quantized with RTN\n"
        }
        guard options.method == .mse, let path = options.importancePath else { return nil }
        let unweighted = reports.filter { $0.decision == .quantize && !$0.importanceWeighted }
            .map { ImportanceStatistics.moduleName(ofWeight: $0.name) }
        guard !unweighted.isEmpty else { return nil }
        let shown = unweighted.prefix(3).joined(separator: ", ")
        let more = unweighted.count > 3 ? " and \(unweighted.count - 3) more" : ""
        return "warning: \(path) has no statistics for \(unweighted.count) quantized modules (\(shown)\(more)); their block scales were searched unweighted\n"
    }
}
