import NVFP4Kit

/// The lines that end a quantize run, file or folder, from its ``RunSummary``: kept tensors
/// grouped by reason (a few names each), partners kept with an excluded module, what was quantized
/// and its error, fused groups and whether they share a scale, the files written with sizes, the
/// wall time and rate.
enum QuantizeSummary {
    /// What `--json` prints: the manifest (as written to disk) with the run's summary as `run`.
    static func json(manifest: JSONValue, _ summary: RunSummary) -> JSONValue {
        .object((manifest.objectValue ?? []) + [("run", summary.json)])
    }

    static func text(_ summary: RunSummary, written: String, manifest: String?) -> String {
        var text = ""
        if !summary.keptByReason.isEmpty {
            let groups = summary.keptByReason.filter { $0.reason != KeepReason.fusedPartnerKept.rawValue }.map { reason, names in
                let shown = names.prefix(3).joined(separator: ", ") + (names.count > 3 ? ", … \(names.count - 3) more" : "")
                return "\(names.count) \(reason) (\(shown))"
            }
            if !groups.isEmpty { text += "kept: " + groups.joined(separator: "; ") + "\n" }
        }
        for (kept, because) in summary.keptForPartner {
            text += "kept \(kept): its fused partner \(because.map(moduleName).joined(separator: ", ")) is kept, and fused layers are quantized together\n"
        }
        text += "quantized \(summary.quantized) of \(summary.tensors) tensors (\(summary.format.rawValue))"
        if let e = summary.error { text += ", relative RMSE \(Format.fixed(e.relativeRMSE, 4)), SQNR \(Format.fixed(e.sqnrDB, 2)) dB" }
        if summary.sharedGroups > 0 { text += "; \(summary.sharedGroups) fused groups share a global scale" }
        if summary.perWeightGroups > 0 { text += "; \(summary.perWeightGroups) fused groups keep per-weight global scales (\(summary.format.rawValue))" }
        text += "\n"
        let files = summary.files.count
        let rate = summary.wallSeconds > 0 ? Double(summary.bytesIn) / summary.wallSeconds : 0
        text += "wrote \(files == 1 ? "" : "\(files) files, ")\(Format.bytes(summary.bytesIn)) -> \(Format.bytes(summary.bytesOut)) in \(Format.fixed(summary.wallSeconds, 1)) s (\(Format.bytes(UInt64(rate)))/s): \(written)"
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
        // One output file is named in the totals; several get a column.
        let manyFiles = view.outputFiles.count > 1
        var rows: [[String]] = [["TENSOR", "SHAPE", "DTYPE", "ACTION", "WHY / FUSED GROUP", "METHOD"] + (manyFiles ? ["OUTPUT FILE"] : [])]
        for r in view.rows {
            let why = r.reason ?? r.group.map { $0 + (r.sharesScale ? " (shared scale)" : "") } ?? (r.kind == TensorWriteKind.matrix.label ? "" : r.kind)
            rows.append([r.name, "[" + r.shape.map(String.init).joined(separator: ", ") + "]", r.dtype.shortName, r.action, why, r.method ?? "-"]
                        + (manyFiles ? [r.outputShard] : []))
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
