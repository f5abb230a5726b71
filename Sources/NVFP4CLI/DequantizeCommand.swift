import NVFP4Kit

/// `nvfp4 dequantize`.
enum DequantizeCommand {
    static let spec = CommandSpec(
        name: "dequantize",
        overview: "Expand NVFP4 weights back to dense bf16 or f32 tensors.",
        usage: "nvfp4 dequantize <quantized> -o <output> [--dtype bf16|f32] [--threads <n>] [--io direct|buffered] [--force] [--quiet]",
        arguments: [("<quantized>", "An NVFP4 .safetensors file ('-' for stdin).")],
        options: [
            OptionSpec(names: ["--output", "-o"], valueName: "<output>", help: "Output file, or '-' for stdout."),
            OptionSpec(names: ["--dtype"], valueName: "<bf16|f32>", help: "Element type of the dense weights. (default: each weight's recorded original dtype)"),
            OptionSpec(names: ["--threads", "-j"], valueName: "<n>", help: "Worker threads; the output is identical for any n. (default: all cores)"),
            OptionSpec(names: ["--io"], valueName: "<direct|buffered>", help: "How the output file is written: around the page cache (O_DIRECT, where the file system allows it) or through it. (default: direct)"),
            OptionSpec(names: ["--force"], valueName: nil, help: "Replace an existing output file."),
            OptionSpec(names: ["--quiet", "-q"], valueName: nil, help: "Print nothing but errors."),
        ],
        discussion: "The values equal torchao's NVFP4Tensor.dequantize(dtype) bit for bit; other tensors are copied.")

    static func run(_ parsed: ParsedArguments, _ invocation: [String]) throws -> Int32 {
        let input = try positionals(parsed, ["quantized"], command: spec.name)[0]
        guard let output = parsed.value("--output") else { throw UsageError(message: "missing -o <output>; see 'nvfp4 dequantize --help'") }
        let dtype: DType? = try choice(parsed.value("--dtype"), option: "--dtype", ["bf16": .bf16, "f32": .f32], default: nil)
        let force = parsed.flag("--force")
        try refuseOverwritingInput(input: input, outputs: [output])
        if !force && output != "-" && fileExists(output) {
            throw UsageError(message: "\(output) already exists; use --force to replace it")
        }
        removeCrashLeftovers(near: [output], quiet: parsed.flag("--quiet"))
        let threads = try QuantizeCommand.threadCount(parsed)
        let io = try QuantizeCommand.outputIO(parsed)
        let reader = try SafetensorsReader.randomAccess(path: input)
        let sink = try OutputCompression.parse(nil, output: output).makeSink(path: output, replace: force, threads: threads, io: io)
        let names = try DequantizeJob.run(reader: reader, sink: sink, dtype: dtype, threads: threads)
        if !parsed.flag("--quiet") {
            Terminal.err("dequantized \(names.count) NVFP4 weights" + (output == "-" ? "\n" : " into \(output)\n"))
        }
        return ExitStatus.success
    }
}
