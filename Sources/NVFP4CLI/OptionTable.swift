import NVFP4Kit

/// Every option of the tool, defined once: the parser, help, USAGE lines, shell completions and the
/// man page all read these. A command's `spec` lists the ones it takes (adding its own default where
/// it has one); an option means the same thing on every command that takes it.
extension OptionSpec {
    // MARK: Shared by several commands

    static let output = OptionSpec(
        names: ["--output", "-o"], value: .path(placeholder: "<output>"),
        help: "Output file ('-' for stdout), or output folder when the input is a model folder.")
    static let manifest = OptionSpec(
        names: ["--manifest"], value: .path(placeholder: "<path>"),
        help: "A single file's quantize manifest ('-' for stdout or stdin): quantize writes it there; verify checks both files' size and SHA-256 against it.")
    static let threads = OptionSpec(
        names: ["--threads", "-j"], value: .wholeNumber(placeholder: "<n>", range: 1...1024),
        help: "Worker threads; the output is identical for any n.", defaultText: "all cores")
    static let io = OptionSpec(
        names: ["--io"], value: .choice(OutputIO.allCases.map(\.rawValue)),
        help: "How output files are written: direct = around the page cache (O_DIRECT, where the file system allows it), buffered = through it, as cp does, so the output stays cached.",
        defaultText: OutputIO.direct.rawValue)
    static let force = OptionSpec(
        names: ["--force"], value: .none, help: "Replace an existing output (a folder only if nvfp4 wrote it).")
    static let json = OptionSpec(
        names: ["--json"], value: .none, help: "Print the result as one JSON document on stdout (with a schema_version member).")
    static let quiet = OptionSpec(
        names: ["--quiet", "-q"], value: .none, help: "Print only errors and failures: no summary, no progress, no passing rows.")
    static let progress = OptionSpec(
        names: ["--progress"], value: .none, help: "Print one progress line per file even when stderr is not a terminal.")
    static let tensorParallel = OptionSpec(
        names: ["--tensor-parallel", "--tp"], value: .wholeNumber(placeholder: "<n>", range: 1...1024),
        help: "The engine's tensor-parallel degree: row-parallel layers (o_proj, down_proj, w2…) need K/n to be a multiple of 16; quantize keeps those that are not, check reports them.",
        defaultText: "1")

    // MARK: quantize

    static let dryRun = OptionSpec(
        names: ["--dry-run"], value: .none,
        help: "Print the plan (each weight's decision, reason, fused group, method, output shard; totals) and write nothing.")
    static let mlaAttention = OptionSpec(
        names: ["--mla-attention"], value: .choice(MLAAttentionPolicy.allCases.map(\.rawValue)),
        help: "DeepSeek-family MLA attention (q_a/kv_a, q_b, o): keep in high precision, as NVIDIA's DeepSeek NVFP4 recipe, or quantize. kv_b_proj is always kept.",
        defaultText: "keep")
    static let fp8BlockSize = OptionSpec(
        names: ["--fp8-block-size"], value: .text(placeholder: "<rows>x<cols>"),
        help: "Block of block-scaled FP8 weights in a bare file (no config.json), e.g. 128x128; a folder's config names it.")
    static let followLinks = OptionSpec(
        names: ["--follow-links"], value: .none,
        help: "Model folders: follow symbolic links that leave the folder (refused by default; see docs/security.md).")
    static let format = OptionSpec(
        names: ["--format"], value: .choice(CheckpointFormat.allCases.map(\.rawValue)),
        help: "Checkpoint layout: torchao, compressed-tensors (llm-compressor nvfp4-pack-quantized) or modelopt.",
        defaultText: CheckpointFormat.torchao.rawValue)
    static let calibration = OptionSpec(
        names: ["--calibration"], value: .path(placeholder: "<amax.json>"),
        help: "Module name -> calibrated max |input| (JSON object): writes static input scales (W4A4). Without it, compressed-tensors and modelopt are weight-only.")
    static let maxShardSize = OptionSpec(
        names: ["--max-shard-size"], value: .text(placeholder: "<size>"),
        help: "Model folders: split output shards above this much tensor data (e.g. 5GB, 500MiB, 1000000).",
        defaultText: "the input's sharding")
    static let shard = OptionSpec(
        names: ["--shard"], value: .text(placeholder: "<i>/<n>"),
        help: "Model folders: write only worker i's share of the output shards (0 <= i < n); then run 'nvfp4 merge <output>'.")
    static let noGlobalScale = OptionSpec(
        names: ["--no-global-scale"], value: .none,
        help: "Single-level scaling: e4m3 block scales only (torchao use_dynamic_per_tensor_scale=False).")
    static let numerics = OptionSpec(
        names: ["--numerics"], value: .choice(DivisionNumerics.allCases.map(\.rawValue)),
        help: "Reproduce torchao's bytes as computed on a GPU or on a CPU.", defaultText: DivisionNumerics.cuda.rawValue)
    static let include = OptionSpec(
        names: ["--include"], value: .text(placeholder: "<glob>"),
        help: "Quantize only matching tensors (name or module; repeatable).", repeatable: true)
    static let exclude = OptionSpec(
        names: ["--exclude"], value: .text(placeholder: "<glob>"),
        help: "Keep matching tensors unquantized (repeatable; wins over --include).", repeatable: true)
    static let method = OptionSpec(
        names: ["--method"], value: .choice(QuantizationMethod.allCases.map(\.rawValue)),
        help: "Block scales: rtn = round to nearest, torchao's bytes; mse = search the codes near RTN for the lowest block error; gptq = error feedback from input statistics (--statistics). Same format.",
        defaultText: QuantizationMethod.rtn.rawValue)
    static let importance = OptionSpec(
        names: ["--importance"], value: .path(placeholder: "<file>"),
        help: "With --method mse: weight the block error by per-channel activation statistics: scripts/quality/collect_importance.py's JSON, a llama.cpp imatrix (GGUF or legacy .dat), or a --statistics file (the diagonals of its moments).")
    static let statistics = OptionSpec(
        names: ["--statistics"], value: .path(placeholder: "<stats.safetensors>"),
        help: "With --method gptq: the inputs' second moments (scripts/quality/collect_statistics.py).")
    static let searchRadius = OptionSpec(
        names: ["--search-radius"], value: .wholeNumber(placeholder: "<n>", range: 0...126),
        help: "With --method mse or gptq: e4m3 codes searched on each side of the RTN code.", defaultText: "8")
    static let compress = OptionSpec(
        names: ["--compress"], value: .text(placeholder: "<zstd[:level]|none>", suggestions: ["none", "zstd"]),
        help: "Compress the output with zstd at LEVEL (1-19, up to \(zstdLevelRange.upperBound); negative is faster), on libzstd's worker threads.",
        defaultText: "zstd:\(zstdDefaultLevel) when the output name ends in .zst, else none")
    static let hash = OptionSpec(
        names: ["--hash"], value: .choice(HashScope.allCases.map(\.rawValue)),
        help: "Which SHA-256 sums the manifest records: the output's (what verify checks), also the input's (one more full read), or none.",
        defaultText: HashScope.output.rawValue)
    static let weightOnly = OptionSpec(
        names: ["--weight-only"], value: .none,
        help: "Describe the weights as torchao NVFP4WeightOnlyConfig (no activation quantization).")

    // MARK: verify

    static let tolerance = OptionSpec(
        names: ["--tolerance"], value: .text(placeholder: "<t>"),
        help: "Largest relative RMS error allowed per tensor.", defaultText: "\(VerifyTolerance.standard); \(VerifyTolerance.errorFeedback) for a gptq output, by its manifest")
    static let compareMethod = OptionSpec(
        names: ["--compare-method"], value: .choice(ComparableMethod.allCases.map(\.rawValue)),
        help: "Also quantize each original 2-D weight with this method in memory and show the error change against it.")

    // MARK: dequantize

    static let dtype = OptionSpec(
        names: ["--dtype"], value: .choice(["bf16", "f32"]),
        help: "Element type of the dense weights.", defaultText: "each weight's recorded original dtype, else bf16")

    // MARK: check

    static let skip = OptionSpec(
        names: ["--skip"], value: .choice(CheckRule.allCases.map(\.rawValue), placeholder: "<rule>"),
        help: "Do not report findings of this rule (repeatable; rules: docs/check.md).", repeatable: true)

    // MARK: the tool itself

    static let help = OptionSpec(names: ["--help", "-h"], value: .none, help: "Show help information.")
    static let version = OptionSpec(names: ["--version", "-V"], value: .none, help: "Show the version.")
}
