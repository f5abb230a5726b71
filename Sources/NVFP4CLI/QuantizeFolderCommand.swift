import Glibc
import NVFP4Kit

/// Whether `path` is (or links to) a folder.
func isFolder(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}

/// `nvfp4 quantize MODEL_DIR -o OUT_DIR`: a whole Hugging Face folder.
enum QuantizeFolderCommand {
    static func run(_ parsed: ParsedArguments, _ invocation: [String], input: String, options: QuantizeOptions) throws -> Int32 {
        let started = JobProgress.now()
        guard let output = parsed.value("--output"), output != "-" else {
            throw UsageError(message: "a model folder needs -o <output folder>")
        }
        if parsed.value("--compress") != nil {
            throw UsageError(message: "--compress is for single files; a model folder is written as plain safetensors shards, as the engines load them")
        }
        if parsed.value("--manifest") != nil {
            throw UsageError(message: "--manifest is for single files; a folder's manifest is <output>/\(FolderQuantizeJob.manifestFileName)")
        }
        if parsed.flag("--json") && parsed.value("--shard") != nil {
            throw UsageError(message: "--json prints the manifest, which a --shard worker does not write; use it with 'nvfp4 merge'")
        }
        var share: WorkerShare?
        if let text = parsed.value("--shard") {
            guard let s = WorkerShare(text) else {
                throw UsageError(message: "invalid value '\(text)' for --shard; expected <i>/<n> with 0 <= i < n")
            }
            share = s
        }
        let force = parsed.flag("--force")
        let quiet = parsed.flag("--quiet")
        let followLinks = parsed.flag("--follow-links")
        let dryRun = parsed.flag("--dry-run")
        if dryRun {
            let plan = try QuantizePlan(
                folder: try ModelFolder(path: input, followLinks: followLinks), options: options, calibration: try QuantizeCommand.calibration(parsed),
                calibrationPath: parsed.value("--calibration") ?? "calibration", maxShardSize: try parsed.value("--max-shard-size").map(parseSize),
                tensorParallel: try QuantizeCommand.tensorParallel(parsed), measure: false)
            if share == nil { warnExistingOutputs([output], force: force, quiet: quiet) }
            return DryRun.print(plan, json: parsed.flag("--json"), output: output)
        }
        try refuseOverwritingInput(input: input, outputs: [output])
        if share == nil, fileExists(output) {
            try refuseExistingOutputs([output], force: force, singleFile: false)
            try OutputGuard.checkReplaceableFolder(output, manifestName: FolderQuantizeJob.manifestFileName)
            if !quiet, let what = OutputGuard.describeExisting(output, manifestName: FolderQuantizeJob.manifestFileName) {
                Terminal.err("replacing \(output): \(what)\n")
            }
        }
        removeCrashLeftovers(near: [output], quiet: quiet)
        let folder = try ModelFolder(path: input, followLinks: followLinks)
        let plan = try QuantizePlan(
            folder: folder, options: options, calibration: try QuantizeCommand.calibration(parsed),
            calibrationPath: parsed.value("--calibration") ?? "calibration",
            maxShardSize: try parsed.value("--max-shard-size").map(parseSize), tensorParallel: try QuantizeCommand.tensorParallel(parsed))
        if !quiet { for pattern in plan.unmatchedExcludes { Terminal.err("warning: --exclude '\(pattern)' matches no tensor\n") } }
        let display = ProgressDisplay(label: "quantize", parsed: parsed)
        if let share {
            let mine = plan.outputShards.indices.filter { share.owns(shardAt: $0) }
            let progress = display.job(fileCount: mine.count, bytesTotal: mine.reduce(0) { $0 + plan.inputBytes(ofOutputShard: $1) })
            try FolderQuantizeJob.runWorker(plan: plan, share: share, output: output, progress: progress)
            display.finish()
            if !quiet { Terminal.err("worker \(share.index)/\(share.count): wrote its shards and \(share.partFileName) in \(output)\n") }
            return ExitStatus.success
        }
        let progress = display.job(fileCount: plan.outputShards.count, bytesTotal: plan.outputShards.indices.reduce(0) { $0 + plan.inputBytes(ofOutputShard: $1) })
        let run = try FolderQuantizeJob.run(plan: plan, output: output, replace: force, invocation: invocation, progress: progress)
        display.finish()
        let files = run.records.enumerated().map { i, r in RunSummary.File(name: r.name, bytesIn: plan.inputBytes(ofOutputShard: i), bytesOut: r.output.byteCount) }
        let summary = RunSummary(plan: plan, reports: run.records.flatMap(\.reports), files: files, wallSeconds: JobProgress.now() - started)
        if parsed.flag("--json") { Terminal.out(QuantizeSummary.json(manifest: run.manifest, summary).serialized(.pretty)) }
        if !quiet, let warning = QuantizeCommand.importanceWarning(run.records.flatMap(\.reports), options: options) { Terminal.err(warning) }
        if !quiet {
            for entry in folder.skippedEntries { Terminal.err("not copied: \(entry) (only regular files at the top of the folder are copied)\n") }
            Terminal.err(QuantizeSummary.text(summary, written: output, manifest: "\(output)/\(FolderQuantizeJob.manifestFileName)"))
        }
        return ExitStatus.success
    }
}

/// `5GB` (10^9), `500MiB` (2^20), `1000` bytes; as `save_pretrained(max_shard_size=)` spells them.
func parseSize(_ text: String) throws(UsageError) -> Int {
    let units: [(String, Int)] = [
        ("KIB", 1 << 10), ("MIB", 1 << 20), ("GIB", 1 << 30), ("TIB", 1 << 40),
        ("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000), ("B", 1),
    ]
    let upper = text.uppercased()
    var number = Substring(upper)
    var factor = 1
    if let (suffix, f) = units.first(where: { upper.hasSuffix($0.0) }) {
        number = upper.dropLast(suffix.count)
        factor = f
    }
    guard let value = Double(number), value.isFinite, value >= 1, value * Double(factor) < 9e18,
        number.allSatisfy({ $0.isNumber || $0 == "." })
    else {
        throw UsageError(message: "invalid value '\(text)' for --max-shard-size; expected a size such as 5GB, 500MiB or 1000000")
    }
    return Int(value * Double(factor))
}

/// `nvfp4 merge OUT_DIR`.
enum MergeCommand {
    static let spec = CommandSpec(
        name: "merge",
        overview: "Finish a folder written by 'nvfp4 quantize --shard i/n' workers: index, config and manifest.",
        arguments: [ArgumentSpec(name: "<output folder>", help: "The folder the workers wrote into (their common -o).")],
        options: [.json, .quiet, .progress],
        discussion: """
            Checks that every worker's nvfp4-part-<i>-of-<n>.json is present, from the same run, and that each \
            shard file has the size its worker recorded; then writes model.safetensors.index.json, config.json \
            (and hf_quant_config.json), copies the other files, writes nvfp4-manifest.json and removes the part \
            files. The result is byte-identical to a single run apart from the manifest's recorded invocation.
            """)

    static func run(_ parsed: ParsedArguments, _ invocation: [String]) throws -> Int32 {
        let output = try positionals(parsed, ["output folder"], command: spec.name)[0]
        removeCrashLeftovers(near: [output], quiet: parsed.flag("--quiet"))
        // Progress per shard checked (sizes against the workers' records), then the folder files.
        let display = ProgressDisplay(label: "merge", parsed: parsed)
        let manifest = try FolderQuantizeJob.merge(output: output, invocation: invocation) { shards in display.job(fileCount: shards, bytesTotal: 0) }
        display.finish()
        if parsed.flag("--json") { Terminal.out(manifest.serialized(.pretty)) }
        if !parsed.flag("--quiet") { Terminal.err("merged \(manifest["shards"]?.arrayValue?.count ?? 0) shard(s) in \(output)\n") }
        return ExitStatus.success
    }
}
