import NVFP4Kit

/// The lines that end a quantize run, file or folder, from its plan: kept weights by reason,
/// partners kept with an excluded module, fused groups and whether they share a scale, the
/// files written and their sizes, and the error measured.
enum QuantizeSummary {
    static func text(plan: QuantizePlan, reports: [TensorReport]?, bytesIn: UInt64, bytesOut: UInt64, written: String, manifest: String?) -> String {
        var text = ""
        for entry in plan.tensors where entry.tensor.name.hasSuffix(".weight") || entry.tensor.shape.count == 3 {
            if case .keep(let reason) = entry.decision, reason != .fusedPartnerKept { text += "kept \(entry.tensor.name): \(reason.rawValue)\n" }
        }
        for (kept, because) in plan.keptFusedPartners {
            text += "kept \(kept): its fused partner \(because.map(moduleName).joined(separator: ", ")) is kept, and fused layers are quantized together\n"
        }
        let quantized = plan.tensors.filter(\.isQuantized)
        text += "quantized \(quantized.count) of \(plan.tensors.count) tensors (\(plan.options.format.rawValue))"
        if let reports {
            var total = QuantizationError()
            for r in reports { if let e = r.error { total.merge(e) } }
            text += ", relative RMSE \(Format.fixed(total.relativeRMSE, 4)), SQNR \(Format.fixed(total.sqnrDB, 2)) dB"
        }
        let groups = plan.groups.filter(\.quantized)
        if !groups.isEmpty {
            let shared = groups.filter(\.sharesScale).count
            text += shared > 0
                ? "; \(shared) fused groups share a global scale"
                : "; \(groups.count) fused groups keep per-weight global scales (\(plan.options.format.rawValue))"
        }
        let files = plan.outputShards.count
        text += "; \(Format.bytes(bytesIn)) -> \(Format.bytes(bytesOut))"
        text += files == 1 ? " in \(written)" : " in \(files) shards in \(written)"
        if let manifest { text += "; manifest \(manifest)" }
        return text + "\n"
    }
}

/// `quantize --dry-run`: the plan as a table and its totals, or as JSON.
enum DryRun {
    /// Prints the plan and returns success; nothing is read beyond headers, nothing is written.
    static func print(_ plan: QuantizePlan, json: Bool, output: String) -> Int32 {
        let view = PlanView(plan, output: output)
        if json {
            Terminal.out(view.json.serialized(.pretty))
            return ExitStatus.success
        }
        var rows: [[String]] = [["TENSOR", "SHAPE", "DTYPE", "ACTION", "WHY / FUSED GROUP", "METHOD", "OUTPUT FILE"]]
        for r in view.rows {
            let why = r.reason ?? r.group.map { $0 + (r.sharesScale ? " (shared scale)" : "") } ?? r.kind
            rows.append([r.name, "[" + r.shape.map(String.init).joined(separator: ", ") + "]", r.dtype.shortName, r.action, why, r.method ?? "-", r.outputShard])
        }
        var text = Format.table(rows)
        let quantized = view.rows.filter { $0.reason == nil }.count
        text += "\nplan (\(view.format.rawValue)): quantize \(quantized) of \(view.rows.count) tensors"
        let kept = view.keptByReason.map { "\($0.names.count) \($0.reason)" }
        if !kept.isEmpty { text += "; keep " + kept.joined(separator: ", ") }
        let groups = plan.groups.filter(\.quantized)
        if !groups.isEmpty {
            text += "; \(groups.count) fused groups" + (groups.contains(where: \.sharesScale) ? " sharing a global scale" : " with per-weight scales")
        }
        text += "\n\(Format.bytes(UInt64(view.inputBytes))) of tensors in -> about \(Format.bytes(UInt64(view.outputBytes))) in \(view.outputFiles.count) file\(view.outputFiles.count == 1 ? "" : "s") in \(output); nothing written (--dry-run)\n"
        for pattern in view.unmatchedExcludes { text += "warning: --exclude '\(pattern)' matches no tensor\n" }
        Terminal.out(text)
        return ExitStatus.success
    }
}
