import NVFP4Kit

/// `nvfp4 check`.
enum CheckCommand {
    static let spec = CommandSpec(
        name: "check",
        overview: "Audit an NVFP4 checkpoint for what makes engines load it wrongly.",
        arguments: [ArgumentSpec(name: "<checkpoint>", help: "A .safetensors file, '-' for stdin, a model folder (config.json, shards, index), or a model id in the local Hub cache (org/name[@revision]).")],
        options: [.tensorParallel, .skip, .json, .quiet, .progress],
        discussion: """
            Reads torchao, compressed-tensors (nvfp4-pack-quantized) and ModelOpt NVFP4 checkpoints, ours or \
            anyone's, without the original weights. Checks fused q/k/v, gate/up, w1/w3 and q_a/kv_a members \
            for unequal global or input scales; NaN, negative or zero block scales; invalid global and input \
            scales; missing input scales for W4A4; ignore/exclude entries that match quantized modules (ModelOpt \
            excludes match by substring in vLLM); kept Linear layers missing from the ignore list; K not a \
            multiple of 16; shapes against each other and against config.json; the quantization config; and \
            the shard index. Prints one line per finding: 'path: module: problem [rule]' (rules: docs/check.md).
            Exit 0 if clean, 1 if anything was found, 2 if the input cannot be read.
            """)

    static func run(_ parsed: ParsedArguments, _ invocation: [String]) throws -> Int32 {
        let path = try modelArguments(parsed, ["checkpoint"], command: spec.name)[0]
        let tensorParallel = try QuantizeCommand.tensorParallel(parsed)
        let source = try CheckpointSource(path: path)
        let display = ProgressDisplay(label: "check", parsed: parsed)
        let progress = display.job(fileCount: 1, bytesTotal: source.allTensors.reduce(0) { $0 + UInt64($1.info.byteCount) })
        progress?.startFile(path, bytes: 0)
        let audit = try CheckpointAudit(source: source, tensorParallel: tensorParallel, progress: progress)
        progress?.finishFile()
        display.finish()
        var skipped = Set<CheckRule>()
        // The parser accepts only rule names (the option table's choices).
        for name in parsed.all("--skip") { if let rule = CheckRule(rawValue: name) { skipped.insert(rule) } }
        let findings = audit.findings.filter { !skipped.contains($0.rule) }
        let skippedCount = audit.findings.count - findings.count
        if parsed.flag("--json") {
            Terminal.out(JSONReport.document([("findings", .array(findings.map(\.json))), ("skipped", .int(skippedCount))]).serialized(.pretty))
        } else {
            var text = ""
            for f in findings { text += f.description + "\n" }
            if parsed.flag("--quiet") {
                Terminal.out(text)
                return findings.isEmpty ? ExitStatus.success : ExitStatus.checkFailed
            }
            // Not an NVFP4 checkpoint: the finding says it all.
            if audit.model.modules.isEmpty && findings.count == 1 && findings[0].rule == .noNVFP4Weights {
                Terminal.out(text)
                return ExitStatus.checkFailed
            }
            let modules = audit.model.modules.count
            let layout = audit.model.layout.rawValue
            text += findings.isEmpty
                ? "ok: \(modules) NVFP4 modules (\(layout)) in \(source.shards.count) file\(source.shards.count == 1 ? "" : "s"), no findings\(skippedCount > 0 ? " (\(skippedCount) skipped)" : "")\n"
                : "\(findings.count) finding\(findings.count == 1 ? "" : "s") in \(modules) NVFP4 modules (\(layout)): \(byRule(findings))\n"
            Terminal.out(text)
        }
        return findings.isEmpty ? ExitStatus.success : ExitStatus.checkFailed
    }

    /// `4 fused-global-scale-mismatch, 1 config-invalid`, in rule order.
    static func byRule(_ findings: [CheckFinding]) -> String {
        var counts: [CheckRule: Int] = [:]
        for f in findings { counts[f.rule, default: 0] += 1 }
        return CheckRule.allCases.compactMap { rule in counts[rule].map { "\($0) \(rule.rawValue)" } }.joined(separator: ", ")
    }
}
