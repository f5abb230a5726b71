import NVFP4Kit

/// `nvfp4 quantize`.
enum QuantizeCommand {
    static let spec = CommandSpec(
        name: "quantize",
        overview: "Quantize the linear-layer weights of a safetensors checkpoint to NVFP4.",
        arguments: [ArgumentSpec(name: "<input>", help: "A .safetensors or .safetensors.zst file, '-' for stdin (plain or zstd), a Hugging Face model folder, or a model id in the local Hub cache (org/name[@revision]); for a folder, -o names the output folder.")],
        options: [
            .output.defaulting("<input stem>.nvfp4.safetensors beside the input"),
            .format, .method, .searchRadius, .importance, .statistics, .calibration, .include, .exclude, .noGlobalScale, .weightOnly, .numerics,
            .tensorParallel, .maxShardSize, .shard,
            .manifest.defaulting("<output stem>.manifest.json; none with -o -"), .hash, .compress, .io, .threads,
            .mlaAttention, .fp8BlockSize, .followLinks, .dryRun, .force, .json, .quiet, .progress,
        ],
        discussion: """
            Quantized: 2-D .weight tensors of linear layers whose dimensions are multiples of 16, in bf16, f16 \
            or f32, or FP8 (F8_E4M3 with its block, channel or tensor scales: dequantized exactly as the \
            reference does, then quantized; see docs/fp8.md). Kept as they are: embeddings, lm_head, norms, \
            MoE routers, biases and 1-D tensors.
            Output: torchao's safetensors layout (<module>._weight_qdata, _weight_scale, _weight_per_tensor_scale), \
            which torchao.prototype.safetensors.unflatten_tensor_state_dict loads as NVFP4Tensor; \
            --format compressed-tensors or modelopt writes the layouts vLLM, SGLang and TensorRT-LLM load.
            Model folders: 'nvfp4 quantize MODEL_DIR -o OUT_DIR' writes shards, index, config.json (with \
            quantization_config), copies the other files and writes OUT_DIR/nvfp4-manifest.json; fused layers \
            (q/k/v, gate/up, w1/w3) share one global scale. See docs/engines.md and docs/distributed.md.
            """,
        binaryOutput: .output)

    static func run(_ parsed: ParsedArguments, _ invocation: [String]) throws -> Int32 {
        let started = JobProgress.now()
        let input = try modelArguments(parsed, ["input"], command: spec.name)[0]
        let options = try parseOptions(parsed)
        if options.format == .modelopt && !parsed.flag("--quiet") && !parsed.flag("--dry-run") {
            Terminal.err("note: transformers cannot load ModelOpt checkpoints (it re-initializes their linear weights); load this output with vLLM, SGLang or TensorRT-LLM\n")
        }
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
            try refuseExistingOutputs([output, manifestPath].compactMap { $0 }, force: force, singleFile: true)
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
        if dryRun {
            warnExistingOutputs([output, manifestPath].compactMap { $0 }, force: force, quiet: quiet)
            return DryRun.print(plan, json: parsed.flag("--json"), output: output)
        }
        if !quiet { for pattern in plan.unmatchedExcludes { Terminal.err("warning: --exclude '\(pattern)' matches no tensor\n") } }
        // The executor hashes the output itself (options.hashes), on its own thread.
        let sink = try compression.makeSink(path: output, replace: force, threads: options.threads, io: options.outputIO)
        let display = ProgressDisplay(label: "quantize", parsed: parsed)
        let progress = display.job(fileCount: 1, bytesTotal: plan.inputBytes(ofOutputShard: 0))
        progress?.startFile(output == "-" ? "stdout" : output, bytes: plan.inputBytes(ofOutputShard: 0))
        let result = try PlanExecutor.writeShard(0, of: plan, reader: reader, sink: sink, progress: progress)
        progress?.finishFile()
        display.finish()
        // Both files become visible only once both are complete: a failed manifest leaves no checkpoint.
        var manifestSink: (any OutputSink)?
        do {
            if let manifestPath { manifestSink = try Manifest.write(result: result, plan: plan, arguments: invocation, to: manifestPath, replace: force) }
            try sink.publish()
        } catch {
            sink.abort()
            manifestSink?.abort()
            throw error
        }
        try manifestSink?.publish()
        let summary = RunSummary(
            plan: plan, reports: result.tensors, files: [RunSummary.File(name: output, bytesIn: result.input.byteCount, bytesOut: result.output.byteCount)],
            wallSeconds: JobProgress.now() - started)
        if parsed.flag("--json") {
            let manifest = Manifest.document(result: result, plan: plan, arguments: invocation)
            Terminal.out(QuantizeSummary.json(manifest: manifest, summary).serialized(.pretty))
        }
        if !quiet, let warning = importanceWarning(result.tensors, options: options) { Terminal.err(warning) }
        if !quiet { Terminal.err(QuantizeSummary.text(summary, written: output == "-" ? "stdout" : output, manifest: manifestPath)) }
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
        try parseFP8(parsed, into: &options)
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
        parsed.wholeNumber(.tensorParallel) ?? 1
    }

    /// `--hash all|output|none`.
    static func hashScope(_ parsed: ParsedArguments) throws(UsageError) -> HashScope {
        try choice(
            parsed.value("--hash"), option: "--hash", Dictionary(uniqueKeysWithValues: HashScope.allCases.map { ($0.rawValue, $0) }),
            default: .output)
    }

    /// `--threads N` (1...1024), or all the cores this process may use.
    static func threadCount(_ parsed: ParsedArguments) throws(UsageError) -> Int {
        parsed.wholeNumber(.threads) ?? ParallelLoop.availableCores
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
