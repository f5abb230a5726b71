import NVFP4Kit

/// `nvfp4 quantize`.
enum QuantizeCommand {
    static let spec = CommandSpec(
        name: "quantize",
        overview: "Quantize the linear-layer weights of a safetensors checkpoint to NVFP4.",
        usage: "nvfp4 quantize <input> [-o <output>] [--format torchao|compressed-tensors|modelopt] [--manifest <path>] [--no-global-scale] [--numerics cuda|cpu] [--include <glob> ...] [--exclude <glob> ...] [--threads <n>] [--method rtn|mse] [--importance <stats.json>] [--hash all|output|none] [--io direct|buffered] [--compress <zstd[:level]|none>] [--weight-only] [--calibration <amax.json>] [--max-shard-size <size>] [--tensor-parallel <n>] [--shard <i>/<n>] [--force] [--follow-links] [--json] [--quiet]",
        arguments: [("<input>", "A .safetensors or .safetensors.zst file, '-' for stdin (plain or zstd), or a Hugging Face model folder (then -o names the output folder).")],
        options: [
            OptionSpec(names: ["--format"], valueName: "<torchao|compressed-tensors|modelopt>", help: "Checkpoint layout: torchao (default), compressed-tensors (llm-compressor nvfp4-pack-quantized) or modelopt."),
            OptionSpec(names: ["--calibration"], valueName: "<amax.json>", help: "Module name -> calibrated max |input| (JSON object): writes static input scales (W4A4). Without it, compressed-tensors and modelopt are weight-only."),
            OptionSpec(names: ["--max-shard-size"], valueName: "<size>", help: "Model folders: split output shards above this much tensor data (e.g. 5GB, 500MiB, 1000000). (default: the input's sharding)"),
            OptionSpec(names: ["--tensor-parallel"], valueName: "<n>", help: "Keep row-parallel layers (o_proj, down_proj, w2…) whose K/n is not a multiple of 16. (default: 1)"),
            OptionSpec(names: ["--shard"], valueName: "<i>/<n>", help: "Model folders: write only worker i's share of the output shards (0 <= i < n); then run 'nvfp4 merge <output>'."),
            OptionSpec(names: ["--output", "-o"], valueName: "<output>", help: "Output file, or '-' for stdout. (default: <input stem>.nvfp4.safetensors beside the input)"),
            OptionSpec(names: ["--manifest"], valueName: "<path>", help: "Where to write the manifest. (default: <output stem>.manifest.json; none with -o -)"),
            OptionSpec(names: ["--no-global-scale"], valueName: nil, help: "Single-level scaling: e4m3 block scales only (torchao use_dynamic_per_tensor_scale=False)."),
            OptionSpec(names: ["--numerics"], valueName: "<cuda|cpu>", help: "Reproduce torchao's bytes as computed on a GPU or on a CPU. (default: cuda)"),
            OptionSpec(names: ["--include"], valueName: "<glob>", help: "Quantize only matching tensors (name or module; repeatable).", repeatable: true),
            OptionSpec(names: ["--exclude"], valueName: "<glob>", help: "Keep matching tensors unquantized (repeatable; wins over --include).", repeatable: true),
            OptionSpec(names: ["--threads", "-j"], valueName: "<n>", help: "Worker threads; the output is identical for any n. (default: all cores)"),
            OptionSpec(names: ["--method"], valueName: "<rtn|mse>", help: "Block scales: rtn = round to nearest, torchao's bytes; mse = search the codes near RTN for the lowest block error (same format). (default: rtn)"),
            OptionSpec(names: ["--importance"], valueName: "<stats.json>", help: "With --method mse: weight the block error by per-channel activation statistics (scripts/quality/collect_importance.py)."),
            OptionSpec(names: ["--search-radius"], valueName: "<n>", help: "With --method mse: e4m3 codes searched on each side of the RTN code, 0 to 126. (default: 8)"),
            OutputCompression.option,
            OptionSpec(names: ["--hash"], valueName: "<all|output|none>", help: "Which SHA-256 sums the manifest records: the output's (what verify checks), also the input's (one more full read), or none. (default: output)"),
            OptionSpec(names: ["--io"], valueName: "<direct|buffered>", help: "How output files are written: direct = around the page cache (O_DIRECT, where the file system allows it), buffered = through it, as cp does, so the output stays cached. (default: direct)"),
            OptionSpec(names: ["--weight-only"], valueName: nil, help: "Describe the weights as torchao NVFP4WeightOnlyConfig (no activation quantization)."),
            OptionSpec(names: ["--force"], valueName: nil, help: "Replace an existing output file."),
            OptionSpec(names: ["--follow-links"], valueName: nil, help: "Model folders: follow symbolic links that leave the folder (refused by default; see docs/security.md)."),
            OptionSpec(names: ["--json"], valueName: nil, help: "Print the manifest as JSON on stdout (with --dry-run: the plan)."),
            OptionSpec(names: ["--dry-run"], valueName: nil, help: "Print the plan (each weight's decision, reason, fused group, method, output shard; totals) and write nothing."),
            OptionSpec(names: ["--quiet", "-q"], valueName: nil, help: "Print nothing but errors."),
        ],
        discussion: """
            Quantized: 2-D .weight tensors of linear layers whose dimensions are multiples of 16, in bf16, f16 \
            or f32. Kept as they are: embeddings, lm_head, norms, MoE routers, biases and 1-D tensors.
            Output: torchao's safetensors layout (<module>._weight_qdata, _weight_scale, _weight_per_tensor_scale),
            which torchao.prototype.safetensors.unflatten_tensor_state_dict loads as NVFP4Tensor; \
            --format compressed-tensors or modelopt writes the layouts vLLM, SGLang and TensorRT-LLM load.
            Model folders: 'nvfp4 quantize MODEL_DIR -o OUT_DIR' writes shards, index, config.json (with \
            quantization_config), copies the other files and writes OUT_DIR/nvfp4-manifest.json; fused layers \
            (q/k/v, gate/up, w1/w3) share one global scale. See docs/engines.md and docs/distributed.md.
            """)

    static func run(_ parsed: ParsedArguments, _ invocation: [String]) throws -> Int32 {
        let input = try modelArguments(parsed, ["input"], command: spec.name)[0]
        let options = try parseOptions(parsed)
        if input != "-" && isFolder(input) { return try QuantizeFolderCommand.run(parsed, invocation, input: input, options: options) }
        for option in ["--shard", "--max-shard-size"] where parsed.value(option) != nil {
            throw UsageError(message: "\(option) needs a model folder as input; a single file is written as one file")
        }
        if parsed.flag("--follow-links") { throw UsageError(message: "--follow-links needs a model folder as input") }
        let quiet = parsed.flag("--quiet")
        let force = parsed.flag("--force")

        let output: String
        if let o = parsed.value("--output") {
            output = o
        } else {
            guard input != "-" else { throw UsageError(message: "reading stdin needs -o <output> (a file, or '-' for stdout)") }
            output = defaultOutputPath(for: input)
        }
        let dryRun = parsed.flag("--dry-run")
        let manifestPath: String? = parsed.value("--manifest") ?? (output == "-" ? nil : defaultManifestPath(for: output))
        if !dryRun {
            if output == "-" && parsed.flag("--json") {
                throw UsageError(message: "--json prints to stdout, which -o - already uses for the checkpoint")
            }
            if let manifestPath, manifestPath == "-" && (output == "-" || parsed.flag("--json")) {
                throw UsageError(message: "--manifest - writes to stdout, which -o - or --json already uses")
            }
            if let manifestPath, manifestPath != "-", manifestPath == output
                || (FileIdentity.of(path: manifestPath) != nil && FileIdentity.of(path: manifestPath) == FileIdentity.of(path: output))
            {
                throw UsageError(message: "--manifest \(manifestPath) is the output file; choose another path")
            }
            try refuseOverwritingInput(input: input, outputs: [output, manifestPath].compactMap { $0 })
            if !force {
                for path in [output, manifestPath].compactMap({ $0 }) where path != "-" && fileExists(path) {
                    throw UsageError(message: "\(path) already exists; use --force to replace it")
                }
            }
        }
        if !dryRun { removeCrashLeftovers(near: [output, manifestPath].compactMap { $0 }, quiet: quiet) }
        let compression = try OutputCompression.parse(parsed.value("--compress"), output: output)
        // Formats whose fused layers share a global scale read those weights twice: a stream
        // (stdin, zstd) is then spooled to an unlinked temporary file first (a dry run reads headers only).
        let reader = options.format.names.sharesFusedScales && !dryRun
            ? try SafetensorsReader.randomAccess(path: input, hashing: options.hashes.hashesInput)
            : try SafetensorsReader(path: input, hashing: options.hashes.hashesInput)
        let plan = try QuantizePlan(
            file: reader, options: options, calibration: try calibration(parsed), calibrationPath: parsed.value("--calibration") ?? "calibration",
            tensorParallel: try tensorParallel(parsed), measure: !dryRun)
        if dryRun { return DryRun.print(plan, json: parsed.flag("--json"), output: output) }
        if !quiet { for pattern in plan.unmatchedExcludes { Terminal.err("warning: --exclude '\(pattern)' matches no tensor\n") } }
        // The executor hashes the output itself (options.hashes), on its own thread.
        let sink = try compression.makeSink(path: output, replace: force, threads: options.threads, io: options.outputIO)
        let progress = ProgressLine(label: "quantize", enabled: !quiet && Terminal.stderrIsTerminal)
        let result = try PlanExecutor.writeShard(0, of: plan, reader: reader, sink: sink, progress: progress.update)
        progress.finish()
        let manifest = Manifest.document(result: result, plan: plan, arguments: invocation)
        // Both files become visible only once both are complete: a failed manifest leaves no checkpoint.
        var manifestSink: (any OutputSink)?
        do {
            if let manifestPath { manifestSink = try sealedTextFile(manifest.serialized(.pretty), to: manifestPath, replace: force) }
            try sink.publish()
        } catch {
            sink.abort()
            manifestSink?.abort()
            throw error
        }
        try manifestSink?.publish()
        if parsed.flag("--json") { Terminal.out(manifest.serialized(.pretty)) }
        if !quiet, let warning = importanceWarning(result.tensors, options: options) { Terminal.err(warning) }
        if !quiet {
            Terminal.err(QuantizeSummary.text(plan: plan, reports: result.tensors, bytesIn: result.input.byteCount, bytesOut: result.output.byteCount,
                                              written: output == "-" ? "stdout" : output, manifest: manifestPath))
        }
        return ExitStatus.success
    }

    /// The options every quantize run takes, file or folder.
    static func parseOptions(_ parsed: ParsedArguments) throws -> QuantizeOptions {
        var options = QuantizeOptions()
        options.format = try choice(parsed.value("--format"), option: "--format",
                                    Dictionary(uniqueKeysWithValues: CheckpointFormat.allCases.map { ($0.rawValue, $0) }), default: .torchao)
        options.mode = parsed.flag("--no-global-scale") ? .singleLevel : .twoLevel
        options.numerics = try choice(parsed.value("--numerics"), option: "--numerics", ["cuda": .cuda, "cpu": .cpu], default: .cuda)
        options.selection = TensorSelection(include: parsed.all("--include"), exclude: parsed.all("--exclude"))
        options.dynamicActivations = !parsed.flag("--weight-only")
        options.hashes = try hashScope(parsed)
        options.outputIO = try outputIO(parsed)
        options.threads = try threadCount(parsed)
        try parseMethod(parsed, into: &options)
        if options.format != .torchao {
            if parsed.flag("--no-global-scale") {
                throw UsageError(message: "--no-global-scale is torchao-only; \(options.format.rawValue) needs the per-tensor scale")
            }
            if parsed.flag("--weight-only") {
                throw UsageError(message: "--weight-only is torchao-only; \(options.format.rawValue) is weight-only unless --calibration is given")
            }
        }
        return options
    }

    /// `--calibration <amax.json>`, read.
    static func calibration(_ parsed: ParsedArguments) throws -> [String: Float]? {
        try parsed.value("--calibration").map(CalibrationFile.read)
    }

    /// `--tensor-parallel <n>` (1...1024).
    static func tensorParallel(_ parsed: ParsedArguments) throws(UsageError) -> Int {
        guard let text = parsed.value("--tensor-parallel") else { return 1 }
        guard let n = Int(text), n >= 1, n <= 1024 else {
            throw UsageError(message: "invalid value '\(text)' for --tensor-parallel; expected a whole number from 1 to 1024")
        }
        return n
    }

    /// `--hash all|output|none`.
    static func hashScope(_ parsed: ParsedArguments) throws(UsageError) -> HashScope {
        try choice(
            parsed.value("--hash"), option: "--hash", Dictionary(uniqueKeysWithValues: HashScope.allCases.map { ($0.rawValue, $0) }),
            default: .output)
    }

    /// `--threads N` (1...1024), or all the cores this process may use.
    static func threadCount(_ parsed: ParsedArguments) throws(UsageError) -> Int {
        guard let text = parsed.value("--threads") else { return ParallelLoop.availableCores }
        guard let n = Int(text), n >= 1, n <= 1024 else {
            throw UsageError(message: "invalid value '\(text)' for --threads; expected a whole number from 1 to 1024")
        }
        return n
    }

    /// `--io direct|buffered`.
    static func outputIO(_ parsed: ParsedArguments) throws(UsageError) -> OutputIO {
        try choice(
            parsed.value("--io"), option: "--io", Dictionary(uniqueKeysWithValues: OutputIO.allCases.map { ($0.rawValue, $0) }),
            default: .direct)
    }

    /// `dir/model.safetensors` → `dir/model.nvfp4.safetensors`.
    static func defaultOutputPath(for input: String) -> String {
        let input = droppingZstdSuffix(input)
        let stem = input.hasSuffix(".safetensors") ? String(input.dropLast(".safetensors".count)) : input
        return stem + ".nvfp4.safetensors"
    }

    /// `dir/m.nvfp4.safetensors` → `dir/m.nvfp4.manifest.json`.
    static func defaultManifestPath(for output: String) -> String { VerifyManifest.defaultPath(forOutput: output) }
}

/// Shows `label NN%` on stderr, rewriting one line.
final class ProgressLine {
    private let label: String
    private let enabled: Bool
    private var lastPercent = -1

    init(label: String, enabled: Bool) {
        self.label = label
        self.enabled = enabled
    }

    func update(_ done: UInt64, _ total: UInt64) {
        guard enabled, total > 0 else { return }
        let percent = Int(done * 100 / total)
        guard percent != lastPercent else { return }
        lastPercent = percent
        Terminal.err("\r\(label) \(percent)%")
    }

    func finish() {
        if enabled && lastPercent >= 0 { Terminal.err("\r\u{1B}[K") }
    }
}
